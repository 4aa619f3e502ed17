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


def few_shot_split(data: CategoryData, shots: int, split_seed: int, stream_seed: int) -> FoadsSplit:
    """Choose `shots` good training images at random; the other good training images join the
    test images in the stream, which is shuffled with `stream_seed` (KNG.md section 7).

    Split and stream seeds are separate so that one can vary while the other stays fixed.
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
    return FoadsSplit(data.name, shot_set, [stream[i] for i in order])
