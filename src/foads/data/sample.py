"""The records every dataset reader produces: one image on disk and its ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One image of a category: where it is, whether it is defective, where its mask is.

    ``mask_path`` is one file, or a tuple of files whose union is the mask (a defect drawn
    in several mask files). ``region`` makes the sample a tile of its file: (left, top,
    right, bottom) in pixels of the file, right and bottom exclusive; the image and the
    mask are cropped to it when read (``load_sample_image``, ``load_sample_mask``).
    ``mask_threshold``: a mask pixel above it is a defect; None means the default (127),
    0 means any non-zero pixel (datasets whose masks hold small label values, e.g. VisA).
    """

    path: Path
    label: int  # 0 = good, 1 = anomalous
    # None: the image is good, or its dataset has no masks; a tuple: the union of its files.
    mask_path: Path | tuple[Path, ...] | None = None
    defect_type: str = "good"
    region: tuple[int, int, int, int] | None = None  # None: the whole file
    mask_threshold: int | None = None  # None: images.MASK_THRESHOLD

    def mask_paths(self) -> tuple[Path, ...]:
        """The mask files of this sample (none, one, or several whose union is the mask)."""
        if self.mask_path is None:
            return ()
        if isinstance(self.mask_path, tuple):
            return self.mask_path
        return (self.mask_path,)


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
