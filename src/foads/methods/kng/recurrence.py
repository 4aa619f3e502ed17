"""Recurrence: a label-free acceptance rule that lets the stream widen a node's radius.

The paper's rule learns only the patches within a node's radius T_k. Normal variation that
the ten shots did not show lands just outside the radius of the same nodes in image after
image; a defect is rare, and each one is different. So a patch between T_k and
`radius` x T_k of its nearest node k is learned too when patches of at least a share
`images` of the last `window` stream images landed in that band of node k (the current
batch included). The share is taken over the whole window, so early in the stream, before
`window` images have been seen, a band must be visited by proportionally more images.

State: the last `window` images' band visits, a (window, K) boolean array (about 0.6 MB for
200 images and 3136 nodes). It starts afresh when the graph changes size (growth).
"""

from __future__ import annotations

import torch


class NodeRecurrence:
    """Which out-of-radius patches lie in a node band that many recent images visit."""

    def __init__(self, window: int, radius: float = 1.5, images: float = 0.2) -> None:
        if window < 1:
            raise ValueError(f"recurrence_window must be at least 1 image, got {window}")
        if radius <= 1.0:
            raise ValueError(f"recurrence_radius must exceed 1 (a band beyond T_k), got {radius}")
        if not 0.0 < images <= 1.0:
            raise ValueError(f"recurrence_images must lie in (0, 1], got {images}")
        self.window = window
        self.radius = radius
        self.images = images
        self.visits = torch.zeros(0, 0, dtype=torch.bool)

    def __call__(
        self, s1: torch.Tensor, distance: torch.Tensor, thresholds: torch.Tensor, batch: int
    ) -> torch.Tensor:
        """(N,) bool: the patches to learn besides those within T_k. Rows of s1/distance are
        the batch's patches image by image (N = batch x patches per image)."""
        k = thresholds.shape[0]
        t = thresholds[s1].to(distance)
        band = (distance >= t) & (distance < self.radius * t)
        image = torch.arange(batch, device=s1.device).repeat_interleave(s1.shape[0] // batch)
        visits = torch.zeros(batch * k, dtype=torch.bool, device=s1.device)
        visits[(image * k + s1)[band]] = True
        if self.visits.shape[1] != k:
            self.visits = torch.zeros(0, k, dtype=torch.bool, device=s1.device)
        self.visits = torch.cat([self.visits.to(s1.device), visits.view(batch, k)])[-self.window :]
        recurrent = self.visits.sum(0) >= self.images * self.window
        return band & recurrent[s1]

    def state(self) -> torch.Tensor:
        return self.visits.cpu()

    def load_state(self, visits: torch.Tensor) -> None:
        self.visits = visits.bool()
