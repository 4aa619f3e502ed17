"""A toy method added from outside foads (docs/extending.md): each grid position keeps the
mean of the patch embeddings it has seen, and a patch scores its Euclidean distance to its
position's mean. It learns online from what the shared acceptance rules let through, like
every feature-based baseline, so `gate=paper | fair` work for it unchanged."""

from __future__ import annotations

import torch

from foads.baselines.image_gated import ImageGatedMethod
from foads.components.state import GrowingState
from foads.features.backbones import FeatureBackbone
from foads.features.extractor import PatchEmbedder


class PositionMeans(GrowingState):
    """Per grid position: how many patches were seen and their mean (exact running mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("counts", torch.empty(0))
        self.register_buffer("means", torch.empty(0))

    def state_elements(self) -> int:
        return self.counts.numel() + self.means.numel()

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """x (N, d, h, w): the shots' patch embeddings."""
        self.counts = torch.full(x.shape[2:], float(x.shape[0]), device=x.device)
        self.means = x.mean(dim=0)

    @torch.no_grad()
    def update(self, x: torch.Tensor, allowed: torch.Tensor) -> None:
        """Merge the allowed patches (allowed: (B, h, w) bool) into their positions' means."""
        w = allowed.to(x.dtype)
        added = w.sum(dim=0)
        total = self.counts + added
        self.means = (self.means * self.counts + (x * w[:, None]).sum(dim=0)) / total.clamp(min=1)
        self.counts = total

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) -> (B, h, w): each patch's distance to its position's mean."""
        return (x - self.means).norm(dim=1)


class MeanDistanceModule(ImageGatedMethod):
    name = "mean_distance"

    def __init__(
        self,
        backbone: FeatureBackbone,
        feature_dim: int = 100,
        sigma: float = 4.0,
        seed: int = 0,
        acceptance: dict | None = None,
    ) -> None:
        super().__init__(sigma, acceptance)
        self.embedder = PatchEmbedder(backbone, feature_dim, None, seed)
        self.model = PositionMeans()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedder(images)  # (B, d, h, w)

    def _leave_one_out(self, features: torch.Tensor) -> torch.Tensor:
        """Each shot's image score by the means of the other shots (the published gate)."""
        scores = []
        for i in range(features.shape[0]):
            model = PositionMeans()
            model.fit(torch.cat([features[:i], features[i + 1 :]]))
            scores.append(self._map_max(model.score(features[i : i + 1])))
        return torch.cat(scores)
