"""PatchCore's model: locally aware patch features and a greedy-coreset memory bank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foads.components.coreset import greedy_coreset
from foads.components.nearest import knn
from foads.components.state import GrowingState
from foads.features.backbones import FeatureBackbone
from foads.features.extractor import random_channel_index


class LocallyAwareFeatures(nn.Module):
    """Layer-2 and layer-3 maps, each averaged over 3x3 neighbourhoods, on the layer-2 grid,
    concatenated, then a fixed random subset of d channels (the same d as every method)."""

    channel_index: torch.Tensor

    def __init__(self, backbone: FeatureBackbone, feature_dim: int = 100, seed: int = 0) -> None:
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


# PatchCore's image score: the largest patch distance (its released code), that distance
# reweighted by how isolated its nearest bank patch is (the paper's eq. 7), or the maximum of
# the smoothed, upsampled map (this code's former score).
IMAGE_SCORES = ("max_patch", "reweighted", "map_max")


class PatchCoreModel(GrowingState):
    """Memory bank of coreset patches and the shot each came from (for leave-one-out).

    `coreset_projection` p: the greedy coreset (fit, online additions and shrinking) selects
    on distances after a seeded sparse random projection to p dimensions, as PatchCore's
    approximate greedy coreset (p = 128); None: exact distances."""

    def __init__(
        self,
        coreset_ratio: float = 0.1,
        seed: int = 0,
        max_bank: int | None = None,
        coreset_projection: int | None = 128,
    ) -> None:
        super().__init__()
        if max_bank is not None and max_bank < 1:
            raise ValueError(f"method.max_bank must be at least 1 (or null), got {max_bank}")
        if coreset_projection is not None and coreset_projection < 1:
            raise ValueError(
                f"method.coreset_projection must be at least 1 (or null), got {coreset_projection}"
            )
        self.coreset_ratio = coreset_ratio
        self.seed = seed
        self.max_bank = max_bank
        self.coreset_projection = coreset_projection
        self.register_buffer("bank", torch.empty(0))
        self.register_buffer("origin", torch.empty(0, dtype=torch.long))

    def state_elements(self) -> int:
        return self.bank.numel()

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        rows = _rows(x)
        image = torch.arange(x.shape[0], device=x.device).repeat_interleave(x.shape[2] * x.shape[3])
        keep = self._coreset(rows, self.coreset_ratio)
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
        keep = self._coreset(rows, self.coreset_ratio, existing=self.bank)
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
            keep = self._coreset(self.bank, 1.0, count=size)
        else:
            stream = torch.nonzero(self.origin < 0)[:, 0]
            picked = self._coreset(
                self.bank[stream], 1.0, existing=self.bank[shots], count=size - shots.numel()
            )
            keep = torch.cat([shots, stream[picked]])
        self.bank, self.origin = self.bank[keep], self.origin[keep]

    def _coreset(self, x, ratio, existing=None, count=None) -> torch.Tensor:
        return greedy_coreset(
            x, ratio, existing, seed=self.seed, count=count, projection=self.coreset_projection
        )

    def _bank(self, exclude_origin: int | None) -> torch.Tensor:
        """The bank, without the patches of shot `exclude_origin` (leave-one-out)."""
        return self.bank if exclude_origin is None else self.bank[self.origin != exclude_origin]

    @torch.no_grad()
    def nearest(
        self, x: torch.Tensor, exclude_origin: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d, h, w) -> (B, h, w) distance of each patch to its nearest bank patch, and
        that patch's row in the bank (without shot `exclude_origin`'s patches, if given)."""
        b, _, h, w = x.shape
        idx, dist = knn(_rows(x), self._bank(exclude_origin), 1)
        return dist[:, 0].view(b, h, w), idx[:, 0].view(b, h, w)

    @torch.no_grad()
    def score(self, x: torch.Tensor, exclude_origin: int | None = None) -> torch.Tensor:
        """(B, d, h, w) -> (B, h, w) distance of each patch to its nearest bank patch."""
        return self.nearest(x, exclude_origin)[0]

    @torch.no_grad()
    def image_scores(
        self,
        x: torch.Tensor,
        distance: torch.Tensor,
        nearest: torch.Tensor,
        reweight_neighbours: int | None = None,
        exclude_origin: int | None = None,
    ) -> torch.Tensor:
        """(B,) image scores from the patch distances (B, h, w) and nearest bank rows
        (B, h, w) that `nearest` gave for x (with the same `exclude_origin`).

        reweight_neighbours None: s* = the largest patch distance (PatchCore's released
        code). b: the paper's eq. 7, s = (1 - exp(||m_test* - m*||) / sum over the b nearest
        bank patches m of m* (m* itself included) of exp(||m_test* - m||)) s*, where m_test*
        is the patch of largest distance s* and m* its nearest bank patch: a patch whose
        nearest bank patch sits in a dense region of the bank counts less."""
        b = x.shape[0]
        flat = distance.reshape(b, -1)
        worst = flat.argmax(dim=1)
        rows = torch.arange(b, device=flat.device)
        s_star = flat[rows, worst]
        if reweight_neighbours is None:
            return s_star
        bank = self._bank(exclude_origin)
        d = x.shape[1]
        m_test = x.permute(0, 2, 3, 1).reshape(b, -1, d)[rows, worst]  # (B, d)
        m_star = bank[nearest.reshape(b, -1)[rows, worst]]  # (B, d)
        support = knn(m_star, bank, min(int(reweight_neighbours), bank.shape[0]))[0]  # (B, k)
        to_support = (m_test[:, None] - bank[support]).norm(dim=-1)  # (B, k)
        to_star = (m_test - m_star).norm(dim=-1)
        weight = 1.0 - torch.exp(to_star - torch.logsumexp(to_support, dim=1))
        return weight * s_star
