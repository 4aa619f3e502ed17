"""Patch embeddings: multi-scale backbone features on the stride-4 grid, a fixed channel subset."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foads.features.backbones import FeatureBackbone

# How coarser backbone maps are brought to the embedding grid.
UPSAMPLE = ("bilinear", "nearest")


def random_channel_index(total: int, feature_dim: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted random subset of ``feature_dim`` channel indices out of ``total`` (all if None)."""
    if feature_dim is None:
        return torch.arange(total)
    if not 0 < feature_dim <= total:
        raise ValueError(
            f"feature_dim={feature_dim} must lie in 1..{total}, the backbone's total channel count"
        )
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:feature_dim].sort().values


class PatchEmbedder(nn.Module):
    """Frozen extractor of d-dimensional patch embeddings on the stride-4 grid (docs/kng.md).

    Each of the backbone's three maps is bilinearly resized (align_corners=False) to the
    stride-4 grid, ``(H // 4, W // 4)`` or ``feature_size``, the maps are concatenated and a
    fixed random subset of ``feature_dim`` channels is kept. The subset is the buffer
    ``channel_index`` (drawn from ``seed``), so it travels with the state dict. The module
    is always in eval mode and has no trainable parameters.

    ``aggregation`` p > 1 first averages each map over p x p neighbourhoods at its own
    resolution (stride 1, edges padded by replication), as PatchCore aggregates local
    neighbourhoods, so that a patch also describes its surroundings. 1 (the paper): off.

    ``upsample`` is how the coarser maps reach the grid: ``bilinear`` (K-NG, docs/kng.md)
    or ``nearest`` (each coarse cell copied over the fine cells it covers, which is what
    PaDiM's released ``embedding_concat`` does with unfold/fold).
    """

    channel_index: torch.Tensor

    def __init__(
        self,
        backbone: FeatureBackbone,
        feature_dim: int | None = 100,
        feature_size: int | tuple[int, int] | None = None,
        seed: int = 0,
        aggregation: int = 1,
        upsample: str = "bilinear",
    ) -> None:
        super().__init__()
        if aggregation < 1 or aggregation % 2 == 0:
            raise ValueError(
                f"aggregation must be an odd neighbourhood size >= 1 (1 = off), got {aggregation}"
            )
        if upsample not in UPSAMPLE:
            raise ValueError(f"method.upsample must be one of {UPSAMPLE}, got {upsample!r}")
        self.aggregation = aggregation
        self.upsample = upsample
        self.backbone = backbone
        self.total_channels = sum(backbone.channels)
        self.feature_size = feature_size
        self.register_buffer(
            "channel_index", random_channel_index(self.total_channels, feature_dim, seed)
        )
        self.requires_grad_(False)
        self.train(False)

    @property
    def feature_dim(self) -> int:
        return int(self.channel_index.numel())

    def train(self, mode: bool = True) -> PatchEmbedder:
        """Stay in eval mode whatever is asked: BatchNorm statistics must never move."""
        return super().train(False)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Grid size (h, w) of the embeddings for an input of ``height`` x ``width`` pixels."""
        if self.feature_size is None:
            return height // 4, width // 4
        if isinstance(self.feature_size, int):
            return self.feature_size, self.feature_size
        height, width = self.feature_size
        return height, width

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embed ImageNet-normalised images (B, 3, H, W) into (B, feature_dim, h, w)."""
        return self.embed_maps(self.backbone(images), images.shape[-2:])

    @torch.no_grad()
    def embed_maps(self, maps: list[torch.Tensor], image_size) -> torch.Tensor:
        """The embedding of backbone maps already computed (for methods that also use the
        maps themselves, such as SPADE's pooled features)."""
        size = self.output_size(*image_size)
        parts = []
        offset = 0
        for fmap in maps:
            channels = fmap.shape[1]
            # Selecting before resizing gives the same result (resizing is per channel, the
            # index is sorted) and upsamples only the kept channels.
            index = self.channel_index
            local = index[(index >= offset) & (index < offset + channels)] - offset
            offset += channels
            if local.numel() == 0:
                continue
            fmap = fmap.index_select(1, local)
            if self.aggregation > 1:
                fmap = _neighbourhood_mean(fmap, self.aggregation)
            if fmap.shape[-2:] != size:
                fmap = _resize(fmap, size, self.upsample)
            parts.append(fmap)
        if offset != self.total_channels:
            raise RuntimeError(
                f"backbone returned {offset} channels, expected {self.total_channels}"
            )
        return torch.cat(parts, dim=1)


def _resize(fmap: torch.Tensor, size, mode: str) -> torch.Tensor:
    if mode == "nearest":
        # Output cell i reads input cell floor(i * in / out): for an integer factor s, each
        # coarse cell fills an s x s block, as PaDiM's unfold/fold concatenation.
        return F.interpolate(fmap, size=size, mode="nearest")
    return F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)


def _neighbourhood_mean(fmap: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over size x size neighbourhoods, stride 1, the map's edges replicated."""
    pad = size // 2
    padded = F.pad(fmap, (pad, pad, pad, pad), mode="replicate")
    return F.avg_pool2d(padded, size, stride=1)
