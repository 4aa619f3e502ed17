"""`python -m foads.replay <the overrides of a run>`: the run, on cached backbone maps.

The first replay of a category runs the backbone once over all its images (shots pool and
test set) and writes the maps and masks to `replay.cache_dir`; every later replay of that
category, whatever the seed, split, channel subset, method or rule, reads them back instead
of decoding images and running the backbone. Everything else is the real run: the same
split, stream, method code, evaluator and outputs (summary.json, sessions.csv, the report).
With `replay.dtype=float32` (the default) the maps are the backbone's own, so a replay
gives the run's numbers; `float16` halves the cache at a small cost in agreement.

A drifted stream (`protocol.drift`) gets a cache of its own: one backbone pass over the
stream images as the run drifts them, one file per scenario, strength and stream order.

Methods that learn their own networks (DRAEM) have no backbone maps to cache: `CacheOpener`
refuses them, and `python -m foads.replay` runs them from the images as `foads.run` does (so
one replayed multirun, e.g. `sweep=comparison`, still covers every method).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from foads.data.sample import CategoryData
from foads.data.transforms import ImageTransform
from foads.features.cache import FeatureCache, build_cache, sample_key
from foads.protocol.drift import Drift
from foads.protocol.inputs import CachedInputs, FileInputs
from foads.registry import CONF_DIR
from foads.run import main_job, method_class, refuse_renamed_overrides

log = logging.getLogger(__name__)


class CacheOpener:
    """Gives `run` the cached inputs of a category, making the cache on first use."""

    def __init__(self, cfg: DictConfig) -> None:
        if not method_class(cfg).uses_backbone:
            raise ValueError(
                f"replay needs a method that embeds with the pretrained backbone (K-NG, PaDiM, "
                f"SPADE, PatchCore); {cfg.method._target_} learns its own networks: use "
                "python -m foads.run"
            )
        self.root = Path(cfg.replay.cache_dir)
        self.dtype = cfg.replay.dtype
        self.batch_size = int(cfg.replay.get("batch_size", 16))
        # Whatever changes the images or the maps changes the file name: the dataset's
        # options (a synthetic dataset regenerates from them), the backbone, the geometry.
        fingerprint = {
            "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
            "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
            "resize": cfg.protocol.resize,
            "crop": cfg.protocol.crop,
            "dtype": self.dtype,
        }
        fingerprint["dataset"].pop("category", None)
        # The same folder reached from another working directory is the same data.
        if "root" in fingerprint["dataset"]:
            fingerprint["dataset"]["root"] = str(Path(fingerprint["dataset"]["root"]).resolve())
        self.fingerprint = fingerprint
        self.digest = hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
        self.dataset = str(cfg.dataset.get("name", "dataset"))
        self.backbone_name = str(cfg.backbone.get("name", "backbone"))

    def path(self, category: str) -> Path:
        name = f"{self.backbone_name}-{self.digest[:12]}.pt"
        return self.root / self.dataset / category / name

    def __call__(
        self, category: str, data: CategoryData, transform: ImageTransform, backbone
    ) -> CachedInputs:
        samples = list(data.train) + list(data.test)
        path = self.path(category)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Jobs of a multirun side by side: the first makes the cache, the others wait for it.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cache = self._cache(path, category, samples, transform, backbone)

        def drifted(stream: list, drift: Drift, length: int) -> FeatureCache:
            return self._drifted(category, stream, drift, length, transform, backbone)

        return CachedInputs(transform, backbone, cache, drifted)

    def _drifted(self, category, stream, drift, length, transform, backbone) -> FeatureCache:
        """The maps of a drifted stream: one backbone pass over the stream's images as the
        run drifts them (each by its position), cached under the drift and the stream order
        (so one file per scenario, strength and seed); masks are the undrifted ones (the
        evaluator moves them with the drift, as in a run)."""
        key = {
            "cache": self.digest,
            "drift": drift.describe(),
            "length": length,
            "stream": [sample_key(s) for s in stream],
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        path = self.path(category).with_name(
            f"{self.backbone_name}-{self.digest[:12]}-{drift.name}-{digest}.pt"
        )
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.is_file():
                return FeatureCache.load(path)
            files = FileInputs(transform, backbone)
            log.info("caching the %s-drifted stream of %s into %s", drift.name, category, path)
            cache = build_cache(
                stream,
                backbone,
                lambda s: files.loader(
                    s, self.batch_size, skip_unreadable=True, drift=drift, stream_length=length
                ),
                lambda s: torch.zeros(1, 1, dtype=torch.bool),  # masks: from the main cache
                self.dtype,
                {**key, "category": category, "path": str(path)},
            )
            cache.save(path)
            return cache

    def _cache(self, path: Path, category: str, samples: list, transform, backbone):
        """The category's cache from disk, or made now (and written) if absent or stale."""
        if path.is_file():
            cache = FeatureCache.load(path)
            if {sample_key(s) for s in samples} <= set(cache.keys):
                return cache
            log.warning("feature cache %s lacks images of %s: rebuilding", path, category)
        files = FileInputs(transform, backbone)
        log.info("caching backbone maps of %d images of %s into %s", len(samples), category, path)
        cache = build_cache(
            samples,
            backbone,
            lambda s: files.loader(s, self.batch_size, skip_unreadable=True),
            files.ground_truth,
            self.dtype,
            {**self.fingerprint, "category": category, "path": str(path)},
        )
        cache.save(path)
        log.info("feature cache: %.1f MiB", cache.nbytes() / 2**20)
        return cache


def open_inputs(cfg: DictConfig) -> CacheOpener | None:
    """The cached inputs of the run, or None (read the images) for a method without a
    pretrained backbone, which has no maps to cache."""
    if not method_class(cfg).uses_backbone:
        log.warning(
            "%s learns its own networks: nothing to replay, it runs from the images",
            cfg.method._target_,
        )
        return None
    return CacheOpener(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    return main_job(cfg, open_inputs(cfg))


def main() -> None:
    """`python -m foads.replay <overrides>` (and `foads replay`)."""
    refuse_renamed_overrides(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
