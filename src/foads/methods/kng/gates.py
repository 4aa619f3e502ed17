"""K-NG's image gate and patch gate (what the online update may learn from before the node
radius rule), and their calibration on held-out shots (docs/kng.md, "The online update").

The image gate drops whole images: `shots`, a threshold from the shots' held-out image
scores; `stream`, a quantile of the last stream image scores. The patch gate drops patches
scoring above a limit (`shots`: from the held-out shots' patch scores; `image`: each image's
median + k MAD; `batch`: a quantile of the batch) and, with `reject_dilation`, their
neighbours. The functions they share with every method are in components/acceptance.py.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from foads.components.acceptance import (
    StreamGate,
    accepted_images,
    gate_threshold,
    patch_limits,
    rejected_patches,
    resolve_image_gate,
)
from foads.components.anomaly_map import smooth_anomaly_map
from foads.methods.kng.options import KNGAcceptance
from foads.methods.kng.torch_model import KNGModel

# K-NG's published rule has no image gate (the node radius rule alone decides).
PAPER_IMAGE_GATE = None


class KNGGates(nn.Module):
    """The gates of `acceptance` and their state: `gate` (the image gate as it stands; inf
    without one) and `patch_limit` (the `shots` patch gate's limit)."""

    gate: torch.Tensor
    patch_limit: torch.Tensor

    def __init__(self, acceptance: KNGAcceptance) -> None:
        super().__init__()
        self.options = acceptance
        self.image_gate = resolve_image_gate(acceptance.image_gate, PAPER_IMAGE_GATE)
        self.patch_gate = acceptance.patch_gate
        self.stream = StreamGate(
            acceptance.gate_window, acceptance.gate_quantile, acceptance.gate_margin
        )
        self.register_buffer("gate", torch.tensor(float("inf")))
        self.register_buffer("patch_limit", torch.tensor(float("inf")))

    @property
    def needs_held_out_shots(self) -> bool:
        return self.image_gate == "shots" or self.patch_gate == "shots"

    def calibrate(self, image_scores: torch.Tensor, patch_scores: torch.Tensor) -> None:
        """A new fit: the `shots` thresholds from the held-out shots' scores."""
        o = self.options
        if self.image_gate == "shots":
            threshold = gate_threshold(image_scores, o.gate_quantile) * o.gate_margin
            self.gate = torch.tensor(threshold, device=self.gate.device)
        if self.patch_gate == "shots":
            limit = gate_threshold(patch_scores, o.patch_gate_quantile) * o.patch_gate_margin
            self.patch_limit = torch.tensor(limit, device=self.patch_limit.device)

    def allowed(
        self, image_scores: torch.Tensor, patch_scores: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, h, w) bool: the patches the gates let through (None: all, no gate), and (B,)
        bool: the images the image gate let through (None: no image gate)."""
        if self.image_gate is None and self.patch_gate is None:
            return None, None
        o = self.options
        allowed = torch.ones_like(patch_scores, dtype=torch.bool)
        if self.patch_gate is not None:
            limit = patch_limits(
                self.patch_gate,
                patch_scores,
                o.patch_gate_k,
                o.patch_gate_quantile,
                self.patch_limit,
            )
            allowed &= ~rejected_patches(patch_scores, limit, o.reject_dilation)
        keep = None
        if self.image_gate is not None:
            keep = self._images(image_scores)
            allowed &= keep[:, None, None]
        return allowed, keep

    def _images(self, image_scores: torch.Tensor) -> torch.Tensor:
        """(B,) bool: images below the gate. `shots`: the fixed threshold from the shots;
        `stream`: the gate_quantile of the last gate_window stream image scores, this batch
        included (self-calibrating as the score scale moves)."""
        if self.image_gate == "shots":
            return accepted_images(image_scores, self.gate)
        keep = self.stream(image_scores)
        self.gate = torch.tensor(self.stream.threshold).to(self.gate)
        return keep

    def decision_threshold(self) -> float | None:
        """The image gate as it stands (for `stream`: after the last batch), if one is set."""
        if self.image_gate is None or not torch.isfinite(self.gate):
            return None
        return float(self.gate)

    def state(self) -> dict:
        return {
            "gate": self.gate,
            "patch_limit": self.patch_limit,
            "recent_scores": self.stream.recent,
        }

    def load_state(self, state: dict) -> None:
        self.gate = state["gate"].to(self.gate.device)
        self.patch_limit = state["patch_limit"].to(self.patch_limit.device)
        self.stream.recent = state["recent_scores"].cpu()
        self.stream.threshold = float(self.gate)

    def summary(self) -> dict:
        out = {}
        if self.image_gate is not None:
            out["gate_threshold"] = float(self.gate)
        if self.patch_gate == "shots":
            out["patch_gate_threshold"] = float(self.patch_limit)
        return out


def held_out_scores(
    model: KNGModel,
    embeddings: torch.Tensor,
    grid: tuple[int, int],
    image_size: tuple[int, int],
    folds: int,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image score and patch scores of every shot by a copy of `model` fitted on the other
    folds: `folds` fits (the shots split into that many folds, in order), so that each shot is
    scored as a normal image the model has not seen, which is what the stream brings.
    `embeddings`: the shots' rows, image by image, grid[0] x grid[1] rows per image."""
    per_image = grid[0] * grid[1]
    num_shots = embeddings.shape[0] // per_image
    used = min(folds, num_shots)
    if used < 2:
        raise ValueError(
            f"a gate from the shots needs held-out shots: gate_folds={folds} and "
            f"{num_shots} shots give {used} fold(s); use at least 2 of each"
        )
    images = embeddings.view(num_shots, per_image, -1)
    fold_of = torch.arange(num_shots) % used
    scores = torch.empty(num_shots, dtype=torch.float32)
    patches = torch.empty(num_shots, per_image, dtype=torch.float32)
    for f in range(used):
        held = fold_of == f
        fold_model = copy.deepcopy(model)
        try:
            fold_model.fit(images[~held].reshape(-1, images.shape[-1]))
        except ValueError as err:
            raise ValueError(
                f"the image gate fits K-NG on {int((~held).sum())} of the {num_shots} "
                f"shots ({used} folds): {err}"
            ) from err
        patch = fold_model.score(images[held].reshape(-1, images.shape[-1])).view(-1, *grid)
        maps = smooth_anomaly_map(patch, image_size, sigma)
        scores[held] = maps.amax(dim=(1, 2)).float().cpu()
        patches[held] = patch.reshape(patch.shape[0], -1).float().cpu()
    return scores, patches.flatten()
