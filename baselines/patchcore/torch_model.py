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


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class PatchCoreModel(GrowingState):
    """Memory bank of coreset patches and the shot each came from (for leave-one-out)."""

    def __init__(self, coreset_ratio: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        self.coreset_ratio = coreset_ratio
        self.seed = seed
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
    def add(self, x: torch.Tensor) -> None:
        """Continue the coreset over new patches: each pick is the new patch farthest from
        the bank and from the picks before it (so outliers are the first to get in)."""
        rows = _rows(x)
        keep = greedy_coreset(rows, self.coreset_ratio, existing=self.bank)
        self.bank = torch.cat([self.bank, rows[keep]])
        self.origin = torch.cat([self.origin, self.origin.new_full((keep.numel(),), -1)])

    @torch.no_grad()
    def score(self, x: torch.Tensor, exclude_origin: int | None = None) -> torch.Tensor:
        """(B, d, h, w) -> (B, h, w) distance of each patch to its nearest bank patch."""
        b, _, h, w = x.shape
        bank = self.bank if exclude_origin is None else self.bank[self.origin != exclude_origin]
        return knn(_rows(x), bank, 1)[1][:, 0].view(b, h, w)
