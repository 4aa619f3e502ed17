"""The FOADS split: a few good shots for the initial fit, everything else in one stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foads.data.errors import DatasetError
from foads.data.sample import CategoryData, Sample


@dataclass
class FoadsSplit:
    """Shots for the initial fit and the shuffled, unlabelled-to-the-method stream."""

    category: str
    shots: list[Sample]
    stream: list[Sample]


def few_shot_split(
    data: CategoryData,
    shots: int,
    split_seed: int,
    stream_seed: int,
    anomaly_rate: float | None = None,
) -> FoadsSplit:
    """Choose `shots` good training images at random; the other good training images join the
    test images in the stream, which is shuffled with `stream_seed` (docs/protocol.md).

    Split and stream seeds are separate so that one can vary while the other stays fixed.
    `anomaly_rate` (a fraction in (0, 1), default: the dataset's own) subsamples the stream,
    seeded by `stream_seed`, so that defective images make up that fraction of it: the
    contamination experiment of issue 5. Every image of the scarcer class is kept.
    """
    pool = sorted(data.train, key=lambda s: str(s.path))
    if shots < 1:
        raise DatasetError(f"protocol.shots must be at least 1, got {shots}")
    if shots > len(pool):
        where = pool[0].path.parent if pool else data.root
        raise DatasetError(
            f"protocol.shots={shots} but category {data.name!r} has only {len(pool)} good "
            f"training images (in {where}); lower protocol.shots"
        )
    chosen = np.random.default_rng(split_seed).permutation(len(pool))
    shot_set = [pool[i] for i in sorted(chosen[:shots])]
    moved = [pool[i] for i in sorted(chosen[shots:])]
    stream = moved + sorted(data.test, key=lambda s: str(s.path))
    order = np.random.default_rng(stream_seed).permutation(len(stream))
    stream = [stream[i] for i in order]
    if anomaly_rate is not None:
        stream = _with_anomaly_rate(stream, anomaly_rate, stream_seed, data.name)
    return FoadsSplit(data.name, shot_set, stream)


def _with_anomaly_rate(stream: list[Sample], rate: float, seed: int, name: str) -> list[Sample]:
    """The stream, in its order, without some images of one class so that the defective
    images are `rate` of it."""
    if not 0.0 < rate < 1.0:
        raise DatasetError(f"protocol.anomaly_rate must lie strictly between 0 and 1, got {rate}")
    bad = [i for i, s in enumerate(stream) if s.label == 1]
    good = [i for i, s in enumerate(stream) if s.label == 0]
    if not bad or not good:
        raise DatasetError(
            f"protocol.anomaly_rate={rate} needs good and defective stream images; category "
            f"{name!r} has {len(good)} good and {len(bad)} defective"
        )
    if len(bad) / len(stream) < rate:  # too few defects: drop good images
        keep_good = round(len(bad) * (1 - rate) / rate)
        good = _choose(good, keep_good, seed)
    else:  # too many: drop defective ones
        keep_bad = round(len(good) * rate / (1 - rate))
        bad = _choose(bad, keep_bad, seed)
    kept = set(good) | set(bad)
    return [s for i, s in enumerate(stream) if i in kept]


def _choose(indices: list[int], count: int, seed: int) -> list[int]:
    """`count` of the indices (at least one), drawn without replacement."""
    count = max(1, min(len(indices), count))
    pick = np.random.default_rng(seed + 1).choice(len(indices), size=count, replace=False)
    return [indices[i] for i in pick]
