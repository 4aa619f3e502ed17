"""Backbone maps of a category's images, computed once and replayed (`python -m foads.replay`).

A replay runs the real protocol and the real method: only the frozen backbone's forward pass
and the reading of images and masks are replaced by rows of this cache. The cache holds the
backbone's three maps of every image of the category (shots pool and test set alike), so
one cache serves every seed, split, channel subset (`feature_dim`) and rule. It also holds
each image's pooled final-stage vector (SPADE's image feature, `FeatureBackbone`'s
`last_stage` output). In a replay an image is a constant tensor whose value is its row in
the cache; `CachedBackbone` reads the row back and returns that image's stored maps. Stored
in float32 the maps are bit for bit what the backbone gave, so a replay reproduces the run.

A cache written before the pooled vectors were stored (format 1) is still read: the pooled
vectors are then computed from its deepest maps by the real final stage, which is what the
backbone does with the same maps.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from foads.data.sample import Sample
from foads.features.backbones import FeatureBackbone

log = logging.getLogger(__name__)

FORMAT = 2  # 2: with the pooled final-stage vectors; 1 (still read): without
READABLE_FORMATS = (1, 2)
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def sample_key(sample: Sample) -> str:
    """A sample's identity in the cache: its file (resolved, so that the same file reached
    from another working directory is the same sample), and its tile where it is one."""
    path = Path(sample.path).resolve()
    return str(path) if sample.region is None else f"{path}@{','.join(map(str, sample.region))}"


@dataclass
class FeatureCache:
    """Maps (a tensor per backbone stage, (N, C, h, w)), the final stage's pooled vectors
    (N, C') (None in a format-1 file) and masks (N, H, W) of N images."""

    keys: list[str]
    maps: list[torch.Tensor]
    masks: torch.Tensor
    errors: dict[int, str]  # row -> why that image could not be read
    meta: dict
    pooled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self._rows = {k: i for i, k in enumerate(self.keys)}

    def row(self, sample: Sample) -> int:
        key = sample_key(sample)
        if key not in self._rows:
            raise KeyError(f"{key} is not in the feature cache ({self.meta.get('path')})")
        return self._rows[key]

    def nbytes(self) -> int:
        tensors = [*self.maps] + ([] if self.pooled is None else [self.pooled])
        return sum(t.numel() * t.element_size() for t in tensors) + self.masks.numel()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(
            {
                "format": FORMAT,
                "keys": self.keys,
                "maps": self.maps,
                "pooled": self.pooled,
                "masks": self.masks,
                "errors": self.errors,
                "meta": self.meta,
            },
            tmp,
        )
        tmp.replace(path)  # a run killed while writing never leaves a half cache behind

    @classmethod
    def load(cls, path: Path) -> FeatureCache:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{path} is not a foads feature cache (format {READABLE_FORMATS})")
        return cls(
            blob["keys"],
            blob["maps"],
            blob["masks"],
            blob["errors"],
            blob["meta"],
            blob.get("pooled"),
        )


@torch.no_grad()
def build_cache(
    samples: Sequence[Sample],
    backbone: FeatureBackbone,
    loader: Callable[[Sequence[Sample]], DataLoader],
    ground_truth: Callable[[Sample], torch.Tensor],
    dtype: str = "float32",
    meta: dict | None = None,
) -> FeatureCache:
    """Run the backbone once over every sample (through the run's own image loader, so the
    images are exactly the run's) and keep its maps, its final stage's pooled vectors (when
    the backbone has a final stage) and each sample's ground truth."""
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    samples = list(samples)
    parts: list[list[torch.Tensor]] = []
    rows: list[int] = []
    errors: dict[int, str] = {}
    device = next(backbone.parameters(), torch.empty(0)).device
    # A copy of the final stage, not the backbone's own: building a cache must not change
    # the backbone a method is given (nor its parameter count).
    stage = backbone.build_last_stage() if hasattr(backbone, "build_last_stage") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable images are recorded, and warned at replay
        for batch in loader(samples):
            errors.update(dict(batch["skipped"]))
            if batch["image"].numel() == 0:
                continue
            maps = list(backbone(batch["image"].to(device)))
            if stage is not None:
                maps.append(backbone.pool(stage, maps[-1]))
            parts.append([m.to("cpu", DTYPES[dtype]) for m in maps])
            rows.extend(batch["index"].tolist())
    if not parts:
        raise ValueError("no image of the category could be read; nothing to cache")
    stacked = [torch.cat(stage) for stage in zip(*parts, strict=True)]
    first = ground_truth(samples[rows[0]])
    masks = torch.stack(
        [torch.zeros_like(first) if i in errors else ground_truth(s) for i, s in enumerate(samples)]
    ).bool()
    maps = [torch.zeros(len(samples), *m.shape[1:], dtype=m.dtype) for m in stacked]
    index = torch.tensor(rows)
    for full, part in zip(maps, stacked, strict=True):
        full[index] = part
    pooled = maps.pop() if stage is not None else None
    keys = [sample_key(s) for s in samples]
    return FeatureCache(keys, maps, masks, errors, dict(meta or {}), pooled)


class CachedBackbone(nn.Module):
    """Stands in for a `FeatureBackbone` in a replay: returns the cached maps of the images
    whose rows the input tensors carry. It keeps the real backbone (never called) so that
    channel counts, name and parameter count are the real ones."""

    def __init__(self, backbone: FeatureBackbone, cache: FeatureCache) -> None:
        super().__init__()
        self.real = backbone
        self.caches = [cache]  # more are added for drifted streams (`add`)
        self.channels = backbone.channels
        self.name = getattr(backbone, "name", "")

    def enable_last_stage(self) -> None:
        """As the real backbone's: it then holds (and counts) its final stage, which also
        computes the pooled vectors that a format-1 cache lacks."""
        self.real.enable_last_stage()

    @property
    def cache(self) -> FeatureCache:
        return self.caches[0]

    def add(self, cache: FeatureCache) -> int:
        """Serve another cache too (a drifted stream's); returns its id for `CachedImages`."""
        self.caches.append(cache)
        return len(self.caches) - 1

    def forward(self, images: torch.Tensor, last_stage: bool = False) -> list[torch.Tensor]:
        """The cached maps of the images' rows; with `last_stage`, then their pooled vectors
        (from the cache, or computed from the cached deepest maps where it has none)."""
        rows = images[:, 0, 0, 0].round().long().cpu()
        ids = images[:, 1, 0, 0].round().long().cpu()
        used = [self.caches[c] for c in ids.unique().tolist()]
        maps = self._gather(rows, ids, lambda cache: cache.maps, images.device)
        if not last_stage:
            return maps
        if all(cache.pooled is not None for cache in used):
            pooled = self._gather(rows, ids, lambda cache: [cache.pooled], images.device)[0]
        else:
            pooled = self.real.pool_last_stage(maps[-1])
        return [*maps, pooled]

    def _gather(self, rows, ids, tensors, device) -> list[torch.Tensor]:
        """Rows of each tensor of `tensors(cache)`, each image from the cache its id names."""
        if bool((ids == 0).all()):
            return [t[rows].to(device, torch.float32) for t in tensors(self.cache)]
        out = [torch.empty(len(rows), *t.shape[1:]) for t in tensors(self.cache)]
        for cid in ids.unique().tolist():
            pick = ids == cid
            for full, t in zip(out, tensors(self.caches[cid]), strict=True):
                full[pick] = t[rows[pick]].float()
        return [t.to(device) for t in out]


class CachedImages(Dataset):
    """The replay's stand-in for `ImageSequence`: item = {"image": a constant (3, H, W) tensor
    holding the sample's cache row, "index"}; an image that could not be read when the cache
    was made is {"index", "error"}, dropped from its batch as in a run."""

    def __init__(
        self,
        samples: Sequence[Sample],
        cache: FeatureCache,
        size: int,
        offset: int = 0,
        cache_id: int = 0,
    ) -> None:
        self.rows = [cache.row(s) for s in samples]
        self.cache = cache
        self.size = size
        self.offset = offset
        self.cache_id = cache_id  # which of the `CachedBackbone`'s caches holds the rows

    def __len__(self) -> int:
        return len(self.rows) - self.offset

    def __getitem__(self, i: int) -> dict:
        index = i + self.offset
        row = self.rows[index]
        if row in self.cache.errors:
            return {"index": index, "error": self.cache.errors[row]}
        image = torch.tensor([float(row), float(self.cache_id), 0.0]).view(3, 1, 1)
        image = image.expand(3, self.size, self.size)
        return {"image": image, "index": index}
