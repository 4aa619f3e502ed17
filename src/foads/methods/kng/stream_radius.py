"""The node radius that follows the stream: widened when the whole stream moves away.

The paper's rule absorbs a patch only within its node's radius T_k. When the good appearance
drifts (light, focus, a new batch), every patch of every image moves outside its radius
together and the rule learns nothing more, so the model goes stale. A defect is different:
it moves some patches of some images. `StreamRadius` measures how far the typical patch of
each image lies from its node, in radii (the image's median of distance / T_k), and keeps
the median of that over the last `window` images. The first `window` images fix the
reference; afterwards the radius is scaled by recent / reference when that exceeds one (it
never narrows the paper's rule). A stream that stays as it began keeps the paper's rule;
one that moves as a whole is followed, while an image's outlying patches (defects) still lie
beyond the widened radius.
"""

from __future__ import annotations

import torch


class StreamRadius:
    """Scale of the node radius from the stream's typical patch distance (see module doc)."""

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"radius_window must be at least 1 image, got {window}")
        self.window = int(window)
        self.recent = torch.empty(0)  # per-image median distance / radius, last `window`
        self.first = torch.empty(0)  # the same for the first `window` images (the reference)

    def __call__(self, distance: torch.Tensor, radius: torch.Tensor, images: int) -> float:
        """Scale (>= 1) for this batch; distance and radius (N,) for its images' N patches."""
        ratio = (distance / radius.clamp_min(1e-12)).view(images, -1)
        typical = ratio.median(dim=1).values.float().cpu()
        if self.first.numel() < self.window:
            self.first = torch.cat([self.first, typical])[: self.window]
        self.recent = torch.cat([self.recent, typical])[-self.window :]
        if self.first.numel() < self.window:
            return 1.0
        return max(1.0, float(self.recent.median() / self.first.median().clamp_min(1e-12)))

    def state(self) -> dict:
        return {"recent": self.recent, "first": self.first}

    def load_state(self, state: dict) -> None:
        self.recent, self.first = state["recent"].cpu(), state["first"].cpu()
