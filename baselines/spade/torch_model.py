"""SPADE's model: a gallery of pooled image features and patch embeddings that only grows."""

from __future__ import annotations

import torch

from foads.components.coreset import greedy_coreset
from foads.components.nearest import knn
from foads.components.state import GrowingState


class SPADEModel(GrowingState):
    """Gallery of (pooled feature, patch embeddings) per normal image."""

    def __init__(self, top_k: int = 50, max_gallery: int | None = None) -> None:
        super().__init__()
        if max_gallery is not None and max_gallery < 1:
            raise ValueError(f"method.max_gallery must be at least 1 (or null), got {max_gallery}")
        self.top_k = top_k
        self.max_gallery = max_gallery
        self.register_buffer("pooled", torch.empty(0))
        self.register_buffer("patches", torch.empty(0))
        self.register_buffer("shots", torch.tensor(0))  # the first `shots` images: the shots
        # (N, h*w) bool: the gallery patches a patch gate let in (the others are never matched)
        self.register_buffer("valid", torch.empty(0, 0, dtype=torch.bool))

    def state_elements(self) -> int:
        return self.pooled.numel() + self.patches.numel()

    def fit(self, pooled: torch.Tensor, patches: torch.Tensor) -> None:
        self.pooled, self.patches = pooled.clone(), patches.clone()
        self.shots = torch.tensor(pooled.shape[0])
        self.valid = self._all_valid(patches)

    @staticmethod
    def _all_valid(patches: torch.Tensor) -> torch.Tensor:
        b, _, h, w = patches.shape
        return torch.ones(b, h * w, dtype=torch.bool, device=patches.device)

    def add(
        self, pooled: torch.Tensor, patches: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> None:
        """Add images to the gallery; with `allowed` (B, h, w) bool, only those of their
        patches are ever matched (the image still joins the image-level kNN)."""
        valid = self._all_valid(patches) if allowed is None else allowed.flatten(1)
        self.pooled = torch.cat([self.pooled, pooled])
        self.patches = torch.cat([self.patches, patches])
        self.valid = torch.cat([self.valid, valid.to(self.valid.device)])
        if self.max_gallery is not None and self.pooled.shape[0] > self.max_gallery:
            self._shrink(self.max_gallery)

    @torch.no_grad()
    def _shrink(self, size: int) -> None:
        """Keep `size` gallery images: the shots (while they fit), then the stream images
        whose pooled features the greedy coreset picks to cover the rest best."""
        shots = int(self.shots)
        if shots >= size:
            keep = greedy_coreset(self.pooled, 1.0, count=size).sort().values
        else:
            picked = greedy_coreset(
                self.pooled[shots:], 1.0, existing=self.pooled[:shots], count=size - shots
            )
            keep = torch.cat([torch.arange(shots, device=picked.device), shots + picked])
            keep = keep.sort().values
        self.pooled, self.patches = self.pooled[keep], self.patches[keep]
        self.valid = self.valid[keep]
        self.shots = (keep < shots).sum().cpu()

    @torch.no_grad()
    def neighbours(self, pooled: torch.Tensor, exclude_self: bool = False):
        """The k nearest gallery images of each query (SPADE's image score is their mean
        distance); with exclude_self, query i is gallery image i and is left out."""
        k = min(self.top_k, self.pooled.shape[0] - int(exclude_self))
        if not exclude_self:
            return knn(pooled, self.pooled, k)
        dist = torch.cdist(pooled, self.pooled)
        dist.fill_diagonal_(float("inf"))
        d, idx = torch.topk(dist, k, dim=1, largest=False)
        return idx, d

    @torch.no_grad()
    def patch_scores(self, patches: torch.Tensor, neighbour_idx: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) -> (B, h, w): distance of each patch to its nearest patch among the
        gallery images chosen for its image."""
        b, d, h, w = patches.shape
        rows = patches.permute(0, 2, 3, 1).reshape(b, h * w, d)
        bank = self.patches.permute(0, 2, 3, 1).reshape(self.patches.shape[0], h * w, d)
        out = torch.empty(b, h * w, dtype=patches.dtype, device=patches.device)
        for i in range(b):  # one search per image: its own k gallery images
            candidates = bank[neighbour_idx[i]].reshape(-1, d)
            candidates = candidates[self.valid[neighbour_idx[i]].reshape(-1)]
            out[i] = knn(rows[i], candidates, 1)[1][:, 0]
        return out.view(b, h, w)
