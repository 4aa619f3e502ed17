"""PaDiM under the FOADS protocol: offline, or online with the image gate."""

from __future__ import annotations

import torch

from baselines.image_gated import ImageGatedMethod
from baselines.padim.torch_model import PaDiMModel
from foads.features.extractor import PatchEmbedder


class PaDiMModule(ImageGatedMethod):
    """Layers 1-3, the same random d channels as K-NG, Mahalanobis distance per position.

    ``upsample``: ``nearest`` (PaDiM's embedding_concat copies each coarse cell over the
    fine cells it covers) or ``bilinear`` (this code's former choice, K-NG's)."""

    name = "padim"

    def __init__(
        self,
        backbone: torch.nn.Module,
        feature_dim: int = 100,
        feature_size: int | None = None,
        eps: float = 0.01,
        sigma: float = 4.0,
        seed: int = 0,
        upsample: str = "nearest",
        covariance_shrinkage: float = 0.0,
        **acceptance,
    ) -> None:
        super().__init__(sigma, **acceptance)
        self.embedder = PatchEmbedder(backbone, feature_dim, feature_size, seed, upsample=upsample)
        self.model = PaDiMModel(eps, covariance_shrinkage)

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
