"""The records every dataset reader produces: one image on disk and its ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One image of a category: where it is, whether it is defective, where its mask is."""

    path: Path
    label: int  # 0 = good, 1 = anomalous
    mask_path: Path | None = None  # None: the image is good, or its dataset has no masks
    defect_type: str = "good"


@dataclass
class CategoryData:
    """A category as its dataset defines it: a pool of good training images and a test set.

    The FOADS split (shots, moved normals, stream order) is made from this by the protocol,
    never by a reader.
    """

    name: str
    train: list[Sample]
    test: list[Sample]
    has_masks: bool = True
    root: Path | None = None
    extra: dict = field(default_factory=dict)
