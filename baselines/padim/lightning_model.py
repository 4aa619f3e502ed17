"""PaDiM under the FOADS protocol: offline, or online with the image gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from foads.baselines.image_gated import ImageGatedMethod
from foads.baselines.padim.torch_model import PaDiMModel
from foads.components.options import Covariance, options_of
from foads.features.backbones import FeatureBackbone
from foads.features.extractor import PatchEmbedder


class PaDiMModule(ImageGatedMethod):
    """Layers 1-3, the same random d channels as K-NG, Mahalanobis distance per position.

    ``upsample``: ``nearest`` (PaDiM's embedding_concat copies each coarse cell over the
    fine cells it covers) or ``bilinear`` (this code's former choice, K-NG's)."""

    name = "padim"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        cls._covariance(options.get("covariance"))

    @staticmethod
    def _covariance(given) -> Covariance:
        """The `covariance` group, checked (by `check_options` before a run and by the
        constructor): PaDiM's Gaussians take shrinkage and eps, not a fading prior."""
        covariance = options_of(Covariance, given, "covariance")
        if covariance.prior:
            raise ValueError("PaDiM has no method.covariance.prior (only shrinkage and eps)")
        return covariance

    def __init__(
        self,
        backbone: FeatureBackbone,
        feature_dim: int = 100,
        feature_size: int | None = None,
        sigma: float = 4.0,
        seed: int = 0,
        upsample: str = "nearest",
        covariance: Covariance | dict | None = None,
        acceptance: dict | None = None,
        **renamed,
    ) -> None:
        super().__init__(sigma, acceptance, **renamed)
        covariance = self._covariance(covariance)
        self.embedder = PatchEmbedder(backbone, feature_dim, feature_size, seed, upsample=upsample)
        self.model = PaDiMModel(covariance.eps, covariance.shrinkage)

    def _features(self, images):
        return self.embedder(images)

    def _leave_one_out(self, features):
        scores = []
        for i in range(features.shape[0]):  # K refits of K-1 shots (K is ten)
            others = torch.cat([features[:i], features[i + 1 :]])
            model = PaDiMModel(self.model.eps, self.model.covariance_shrinkage)
            model.fit(others)
            scores.append(self._map_max(model.score(features[i : i + 1])))
        return torch.cat(scores)
