"""PatchCore's model: locally aware patch features and a greedy-coreset memory bank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foads.components.coreset import greedy_coreset
from foads.components.nearest import knn
from foads.components.state import GrowingState
from foads.features.extractor import random_channel_index


class LocallyAwareFeatures(nn.Module):
    """Layer-2 and layer-3 maps, each averaged over 3x3 neighbourhoods, on the layer-2 grid,
    concatenated, then a fixed random subset of d channels (the same d as every method)."""

    def __init__(self, backbone: nn.Module, feature_dim: int = 100, seed: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        total = backbone.channels[1] + backbone.channels[2]
        self.register_buffer("channel_index", random_channel_index(total, feature_dim, seed))
        self.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, layer2, layer3 = self.backbone(images)
        layer2 = F.avg_pool2d(layer2, 3, stride=1, padding=1)
        layer3 = F.avg_pool2d(layer3, 3, stride=1, padding=1)
        layer3 = F.interpolate(layer3, size=layer2.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([layer2, layer3], dim=1).index_select(1, self.channel_index)


# A full bank (or gallery) is shrunk to this share of its bound, so that the greedy selection
# runs once per several batches rather than after each.
PRUNE_TO = 0.8


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class PatchCoreModel(GrowingState):
    """Memory bank of coreset patches and the shot each came from (for leave-one-out)."""

    def __init__(
        self, coreset_ratio: float = 0.1, seed: int = 0, max_bank: int | None = None
    ) -> None:
        super().__init__()
        if max_bank is not None and max_bank < 1:
            raise ValueError(f"method.max_bank must be at least 1 (or null), got {max_bank}")
        self.coreset_ratio = coreset_ratio
        self.seed = seed
        self.max_bank = max_bank
        self.register_buffer("bank", torch.empty(0))
        self.register_buffer("origin", torch.empty(0, dtype=torch.long))

    def state_elements(self) -> int:
        return self.bank.numel()

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        rows = _rows(x)
        image = torch.arange(x.shape[0], device=x.device).repeat_interleave(x.shape[2] * x.shape[3])
        keep = greedy_coreset(rows, self.coreset_ratio, seed=self.seed)
        self.bank, self.origin = rows[keep], image[keep]

    @torch.no_grad()
    def add(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> None:
        """Continue the coreset over new patches: each pick is the new patch farthest from
        the bank and from the picks before it (so outliers are the first to get in, which is
        why a patch gate matters here); with `allowed` (B, h, w) bool, only its patches."""
        rows = _rows(x)
        if allowed is not None:
            rows = rows[allowed.reshape(-1).to(rows.device)]
        if rows.shape[0] == 0:
            return
        keep = greedy_coreset(rows, self.coreset_ratio, existing=self.bank)
        self.bank = torch.cat([self.bank, rows[keep]])
        self.origin = torch.cat([self.origin, self.origin.new_full((keep.numel(),), -1)])
        if self.max_bank is not None and self.bank.shape[0] > self.max_bank:
            self._shrink(int(self.max_bank * PRUNE_TO))

    @torch.no_grad()
    def _shrink(self, size: int) -> None:
        """Keep `size` bank patches: the shots' own coreset first (while it fits), then the
        stream patches that the greedy coreset picks to cover the rest best. Shrinking below
        max_bank (to PRUNE_TO of it) spaces the shrinks out: the bank never exceeds max_bank.
        """
        size = max(1, size)
        shots = torch.nonzero(self.origin >= 0)[:, 0]
        if shots.numel() >= size:
            keep = greedy_coreset(self.bank, 1.0, seed=self.seed, count=size)
        else:
            stream = torch.nonzero(self.origin < 0)[:, 0]
            picked = greedy_coreset(
                self.bank[stream], 1.0, existing=self.bank[shots], count=size - shots.numel()
            )
            keep = torch.cat([shots, stream[picked]])
        self.bank, self.origin = self.bank[keep], self.origin[keep]

    @torch.no_grad()
    def score(self, x: torch.Tensor, exclude_origin: int | None = None) -> torch.Tensor:
        """(B, d, h, w) -> (B, h, w) distance of each patch to its nearest bank patch."""
        b, _, h, w = x.shape
        bank = self.bank if exclude_origin is None else self.bank[self.origin != exclude_origin]
        return knn(_rows(x), bank, 1)[1][:, 0].view(b, h, w)
