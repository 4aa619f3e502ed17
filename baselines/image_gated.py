"""What the feature-based baselines share: shot collection, patch embeddings, the image gate.

Each baseline learns online from an image only when its image score is below a threshold
taken from leave-one-out scores of the shots (foads.components.image_gate).
"""

from __future__ import annotations

import torch

from foads.components.anomaly_map import smooth_anomaly_map
from foads.components.image_gate import accepted_images, gate_threshold
from foads.protocol.method import Scored, StreamingMethod, Updated


class ImageGatedMethod(StreamingMethod):
    """Base of PaDiM, SPADE and PatchCore: subclasses set `self.model` (a GrowingState with
    `state_elements`) and provide `_features` and `_leave_one_out`; `_fit`, `_patch_scores`
    and `_learn` default to the model's `fit`, `score` and `update` (and `_cat`, `_select`,
    `_image_scores` to one feature tensor and the map's maximum)."""

    def __init__(self, sigma: float = 4.0, gate_quantile: float = 1.0) -> None:
        super().__init__()
        self.sigma = sigma
        self.gate_quantile = gate_quantile
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

    def _learn(self, features) -> None:
        self.model.update(features)

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
        self.threshold = torch.tensor(
            gate_threshold(self._leave_one_out(features), self.gate_quantile),
            device=self.threshold.device,
        )
        self._fit(features)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> Scored:
        features = self._features(images)
        patch = self._patch_scores(features)
        maps = smooth_anomaly_map(patch, tuple(images.shape[-2:]), self.sigma)
        return Scored(maps, self._image_scores(features, maps), cache=(features, patch.shape))

    @torch.no_grad()
    def update(
        self, images: torch.Tensor, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        features, (b, h, w) = scored.cache
        keep = accepted_images(scored.image_scores, self.threshold, learn)
        if bool(keep.any()):
            self._learn(self._select(features, keep))
        accepted = keep[:, None, None].expand(b, h, w).cpu()
        return Updated(accepted=accepted, accepted_images=keep.cpu())

    def decision_threshold(self) -> float | None:
        """The image gate from the shots' leave-one-out scores (fixed over the stream)."""
        return float(self.threshold) if torch.isfinite(self.threshold) else None

    # --------------------------------------------------------------- state (self.model)
    def stream_state(self) -> dict:
        return {"model": self.model.state_dict(), "threshold": self.threshold}

    def load_stream_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.threshold = state["threshold"].to(self.threshold.device)

    def state_summary(self) -> dict:
        return {"gate_threshold": float(self.threshold)}
