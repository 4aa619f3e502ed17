"""What the feature-based baselines share: shot collection, patch embeddings, acceptance.

Online, a baseline learns from what the label-free acceptance rules of
foads.components.acceptance let through. Its published rule (`image_gate=paper`, paper
section 4.4) is an image gate at a quantile of the shots' leave-one-out image scores; the
same stream-relative image gate and patch gate K-NG has are available too (`gate=fair`).
"""

from __future__ import annotations

import torch

from foads.components.acceptance import (
    StreamGate,
    accepted_images,
    check_gate_options,
    gate_threshold,
    patch_limits,
    rejected_patches,
    resolve_image_gate,
)
from foads.components.anomaly_map import smooth_anomaly_map
from foads.protocol.method import Scored, StreamingMethod, Updated

# The baselines' published online rule: learn from an image scoring below a threshold from
# the shots' leave-one-out scores (paper section 4.4).
PAPER_IMAGE_GATE = "shots"
# The shots' leave-one-out scores are image scores only: no `shots` patch gate here.
PATCH_GATES = (None, "image", "batch")


class ImageGatedMethod(StreamingMethod):
    """Base of PaDiM, SPADE and PatchCore: subclasses set `self.model` (a GrowingState with
    `state_elements`) and provide `_features` and `_leave_one_out`; `_fit`, `_patch_scores`
    and `_learn` default to the model's `fit`, `score` and `update` (and `_cat`, `_select`,
    `_image_scores` to one feature tensor and the map's maximum).

    Acceptance options (components/acceptance.py): `image_gate` (paper = shots | stream |
    null), `gate_quantile`, `gate_margin`, `gate_window`, `patch_gate` (null | image |
    batch), `patch_gate_k`, `patch_gate_quantile`, `reject_dilation`."""

    def __init__(
        self,
        sigma: float = 4.0,
        image_gate: str | None = "paper",
        gate_quantile: float = 1.0,
        gate_margin: float = 1.0,
        gate_window: int = 20,
        patch_gate: str | None = None,
        patch_gate_k: float = 3.0,
        patch_gate_quantile: float = 0.999,
        reject_dilation: int = 0,
    ) -> None:
        super().__init__()
        check_gate_options(
            image_gate, patch_gate, gate_quantile, gate_margin, gate_window, reject_dilation,
            patch_gates=PATCH_GATES,
        )
        self.sigma = sigma
        self.image_gate = resolve_image_gate(image_gate, PAPER_IMAGE_GATE)
        self.gate_quantile = gate_quantile
        self.gate_margin = gate_margin
        self.stream_gate = StreamGate(gate_window, gate_quantile, gate_margin)
        self.patch_gate = patch_gate
        self.patch_gate_k = patch_gate_k
        self.patch_gate_quantile = patch_gate_quantile
        self.reject_dilation = reject_dilation
        self.register_buffer("threshold", torch.tensor(float("inf")))
        self._shots: list = []

    # --------------------------------------------------------------- subclass hooks
    def _features(self, images: torch.Tensor):
        raise NotImplementedError

    def _fit(self, features) -> None:
        self.model.fit(features)

    def _patch_scores(self, features) -> torch.Tensor:
        """(B, h, w) patch scores."""
        return self.model.score(features)

    def _image_scores(self, features, maps: torch.Tensor) -> torch.Tensor:
        return maps.amax(dim=(1, 2))

    def _learn(self, features, allowed: torch.Tensor | None) -> None:
        """Learn from the kept images' features; `allowed` (B, h, w) bool: the patches the
        patch gate let through (None: all of them)."""
        self.model.update(features, allowed)

    def _leave_one_out(self, features) -> torch.Tensor:
        """(K,) image scores of each shot by the model fitted without it, made as `score`
        makes them (see `_map_max`)."""
        raise NotImplementedError

    def _cat(self, parts: list):
        """Join the shot batches' features (a tensor by default; SPADE's are a pair)."""
        return torch.cat(parts)

    def _select(self, features, keep: torch.Tensor):
        """The features of the kept images."""
        return features[keep]

    # --------------------------------------------------------------- protocol
    def _map_max(self, patch_scores: torch.Tensor) -> torch.Tensor:
        """Image scores as `score` makes them: smoothed image-sized map, then its maximum."""
        maps = smooth_anomaly_map(patch_scores, self._image_size, self.sigma)
        return maps.amax(dim=(1, 2))

    @torch.no_grad()
    def collect(self, images: torch.Tensor) -> None:
        self._image_size = tuple(images.shape[-2:])
        self._shots.append(self._features(images))

    @torch.no_grad()
    def fit_shots(self) -> None:
        features = self._cat(self._shots)
        self._shots = []
        self.stream_gate.reset()
        held_out = self._leave_one_out(features)  # PatchCore builds its bank here too
        threshold = float("inf")
        if self.image_gate == "shots":
            threshold = gate_threshold(held_out, self.gate_quantile) * self.gate_margin
        self.threshold = torch.tensor(threshold, device=self.threshold.device)
        self._fit(features)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> Scored:
        features = self._features(images)
        patch = self._patch_scores(features)
        maps = smooth_anomaly_map(patch, tuple(images.shape[-2:]), self.sigma)
        return Scored(maps, self._image_scores(features, maps), cache=(features, patch))

    @torch.no_grad()
    def update(
        self, images: torch.Tensor, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        features, patch = scored.cache
        keep = self._kept_images(scored.image_scores, learn)
        allowed = keep.to(patch.device)[:, None, None].expand(patch.shape).clone()
        gated = learn is None and self.patch_gate is not None
        if gated:
            limit = patch_limits(
                self.patch_gate, patch, self.patch_gate_k, self.patch_gate_quantile
            )
            allowed &= ~rejected_patches(patch, limit, self.reject_dilation)
            keep = keep & allowed.flatten(1).any(dim=1).to(keep.device)  # nothing left: not learned
        if bool(allowed.any()):
            kept = keep.to(patch.device)
            self._learn(self._select(features, kept), allowed[kept] if gated else None)
        return Updated(accepted=allowed.cpu(), accepted_images=keep.cpu())

    def _kept_images(self, image_scores: torch.Tensor, learn: torch.Tensor | None):
        """(B,) bool: the images the image gate lets through (the oracle's `learn` as given)."""
        if learn is not None or self.image_gate == "shots":
            return accepted_images(image_scores, self.threshold, learn)
        if self.image_gate == "stream":
            keep = self.stream_gate(image_scores)
            self.threshold = torch.tensor(self.stream_gate.threshold).to(self.threshold)
            return keep
        return torch.ones_like(image_scores, dtype=torch.bool)

    def decision_threshold(self) -> float | None:
        """The image gate as it stands (`shots`: fixed over the stream; `stream`: after the
        last batch), if there is one."""
        return float(self.threshold) if torch.isfinite(self.threshold) else None

    # --------------------------------------------------------------- state (self.model)
    def stream_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "threshold": self.threshold,
            "stream_gate": self.stream_gate.state(),
        }

    def load_stream_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.threshold = state["threshold"].to(self.threshold.device)
        if "stream_gate" in state:
            self.stream_gate.load_state(state["stream_gate"])

    def state_summary(self) -> dict:
        return {"gate_threshold": float(self.threshold)}
