"""What the feature-based baselines share: shot collection, patch embeddings, acceptance.

Online, a baseline learns from what the label-free acceptance rules of
foads.components.acceptance let through. Its published rule (`image_gate=paper`, paper
section 4.4) is an image gate at a quantile of the shots' leave-one-out image scores; the
same stream-relative image gate and patch gate K-NG has are available too (`gate=fair`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from foads.components.acceptance import Acceptance
from foads.components.anomaly_map import smooth_anomaly_map
from foads.components.options import refuse_renamed
from foads.protocol.method import Scored, StreamingMethod, Updated

# The baselines' published online rule: learn from an image scoring below a threshold from
# the shots' leave-one-out scores (paper section 4.4).
PAPER_IMAGE_GATE = "shots"


class ImageGatedMethod(StreamingMethod):
    """Base of PaDiM, SPADE and PatchCore: subclasses set `self.model` (a GrowingState with
    `state_elements`) and provide `_features` and `_leave_one_out`; `_fit`, `_patch_scores`
    and `_learn` default to the model's `fit`, `score` and `update` (and `_cat`, `_select`,
    `_image_scores` to one feature tensor and the map's maximum).

    Acceptance options, the group `method.acceptance` (components/acceptance.py):
    `image_gate` (paper = shots | stream | null), `gate_quantile`, `gate_margin`,
    `gate_window`, `patch_gate` (null | image | batch), `patch_gate_k`,
    `patch_gate_quantile`, `reject_dilation`."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        Acceptance.from_options(cls.name, PAPER_IMAGE_GATE, options.get("acceptance"))

    def __init__(self, sigma: float = 4.0, acceptance: Mapping | None = None, **renamed) -> None:
        super().__init__()
        refuse_renamed(self.name, renamed)
        self.sigma = sigma
        # The shots' leave-one-out scores are image scores only: no `shots` patch gate here.
        self.acceptance = Acceptance.from_options(self.name, PAPER_IMAGE_GATE, acceptance)
        self._shots: list = []
        self._image_size: tuple[int, int] = (0, 0)

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

    def _learn(self, features, allowed: torch.Tensor) -> None:
        """Learn from the kept images' features; `allowed` (B, h, w) bool: the patches the
        patch gate let through."""
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
        self._image_size = (images.shape[-2], images.shape[-1])
        self._shots.append(self._features(images))

    @torch.no_grad()
    def fit_shots(self) -> None:
        features = self._cat(self._shots)
        self._shots = []
        self.acceptance.calibrate(self._leave_one_out(features))  # PatchCore's bank too
        self._fit(features)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> Scored:
        features = self._features(images)
        patch = self._patch_scores(features)
        maps = smooth_anomaly_map(patch, (images.shape[-2], images.shape[-1]), self.sigma)
        return Scored(maps, self._image_scores(features, maps), cache=(features, patch))

    @torch.no_grad()
    def update(
        self, images: torch.Tensor, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        features, patch = scored.cache
        allowed, keep = self.acceptance.allowed(patch, scored.image_scores, learn)
        if bool(keep.any()):
            self._learn(self._select(features, keep), allowed[keep])
        return Updated(accepted=allowed.cpu(), accepted_images=keep.cpu())

    def decision_threshold(self) -> float | None:
        """The image gate as it stands (`shots`: fixed over the stream; `stream`: after the
        last batch), if there is one."""
        return self.acceptance.decision_threshold()

    # --------------------------------------------------------------- state (self.model)
    def stream_state(self) -> dict:
        return {"model": self.model.state_dict(), **self.acceptance.stream_state()}

    def load_stream_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.acceptance.load_stream_state(state)

    def state_summary(self) -> dict:
        return {"gate_threshold": float(self.acceptance.threshold)}
