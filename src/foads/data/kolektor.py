"""Readers for the Kolektor surface-defect datasets: KolektorSDD and KolektorSDD2.

Both label an image by its mask: an image whose mask has a non-zero pixel is defective,
every other one is good. The masks are read once here to label their images, and every
non-zero pixel is a defect in the ground truth too (``Sample.mask_threshold`` 0), so the
labels and the masks agree.
"""

from __future__ import annotations

import logging
from pathlib import Path

from foads.data.base import SingleCategoryReader
from foads.data.errors import DatasetError
from foads.data.images import find_mask, image_size, list_images, load_mask
from foads.data.sample import CategoryData, Sample

log = logging.getLogger(__name__)

KOLEKTORSDD_CATEGORY = "kolektorsdd"
KOLEKTORSDD2_CATEGORY = "kolektorsdd2"
DEFECT = "defect"

KOLEKTORSDD_LAYOUT = """\
<root>/
  kos01/ .. kos50/                   one folder per electrical commutator
    Part0.jpg .. Part7.jpg           its surface images
    Part0_label.bmp .. Part7_label.bmp   their masks (non-empty: a defective part)"""

KOLEKTORSDD2_LAYOUT = """\
<root>/
  train/<id>.png                     images of the training split
  train/<id>_GT.png                  their masks (non-empty: a defective image)
  test/<id>.png, test/<id>_GT.png    the same for the test split"""


def _mask_of(image: Path, suffix: str, ext: str) -> Path:
    """The mask beside an image: ``<stem><suffix><ext>``, another image type accepted."""
    expected = image.with_name(f"{image.stem}{suffix}{ext}")
    if expected.is_file():
        return expected
    other = find_mask(image.parent, image.stem, suffix)
    if other.is_file():
        return other
    raise DatasetError(f"mask for {image} not found: expected {expected}")


def _is_defective(image: Path, mask: Path) -> bool:
    return bool(load_mask(mask, image_size(image), image_path=image, threshold=0).any())


def _images(folder: Path, mask_suffix: str) -> list[Path]:
    """The images of a folder without its masks (files whose stem ends with the suffix)."""
    return [p for p in list_images(folder) if not p.stem.endswith(mask_suffix)]


class KolektorSDD(SingleCategoryReader):
    """KolektorSDD (Tabernik et al., J. Intell. Manuf. 2019): one category, ``kolektorsdd``,
    from the 50 ``kos<NN>`` folders of 8 parts each (399 images; one folder has 7).

    The dataset has no train/test split, so, as for Magnetic Tile (``mtd``): ``train``
    holds ALL good parts (empty mask) and ``test`` all defective ones (defect type
    ``defect``, the mask ``<part>_label.bmp``). The protocol draws the shots from the good
    parts and moves every other good part into the stream. A part without its label file
    is a ``DatasetError`` naming both.
    """

    MASK_SUFFIX = "_label"

    CATEGORY = KOLEKTORSDD_CATEGORY
    LAYOUT = KOLEKTORSDD_LAYOUT

    def part_dirs(self) -> list[Path]:
        """The ``kos<NN>`` folders of the root, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(d for d in self.root.iterdir() if d.is_dir() and d.name.startswith("kos"))

    def category_exists(self, category: str) -> bool:
        return category == KOLEKTORSDD_CATEGORY and bool(self.part_dirs())

    def _read(self, category: str) -> CategoryData:
        train: list[Sample] = []
        test: list[Sample] = []
        for folder in self.part_dirs():
            for path in _images(folder, self.MASK_SUFFIX):
                mask = _mask_of(path, self.MASK_SUFFIX, ".bmp")
                if _is_defective(path, mask):
                    test.append(Sample(path, 1, mask, DEFECT, mask_threshold=0))
                else:
                    train.append(Sample(path, 0))
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=self.root,
            extra={
                "train_dir": f"{self.root}/kos<NN> (parts with empty masks)",
                "test_dir": f"{self.root}/kos<NN> (parts with defects)",
                "good_images": len(train),
                "defective_images": len(test),
            },
        )


class KolektorSDD2(SingleCategoryReader):
    """KolektorSDD2 (Božič et al., Computers in Industry 2021): one category,
    ``kolektorsdd2``, from ``train/`` and ``test/``, each image ``<id>.png`` with its mask
    ``<id>_GT.png``.

    ``train`` holds the good images of ``train/`` (the shots come from them); ``test`` holds
    every image of ``test/`` and the defective images of ``train/`` (a defective image
    cannot be a shot, and the stream takes every image that is not one). Defect type
    ``defect``. ``extra["splits"]`` counts the good and defective images of each split. An
    image without its mask is a ``DatasetError`` naming both.
    """

    MASK_SUFFIX = "_GT"
    SPLITS = ("train", "test")

    CATEGORY = KOLEKTORSDD2_CATEGORY
    LAYOUT = KOLEKTORSDD2_LAYOUT

    def category_exists(self, category: str) -> bool:
        return category == KOLEKTORSDD2_CATEGORY and any(
            (self.root / split).is_dir() for split in self.SPLITS
        )

    def _read(self, category: str) -> CategoryData:
        missing = [split for split in self.SPLITS if not (self.root / split).is_dir()]
        if missing:
            raise self.layout_error(
                f"KolektorSDD2 split folder(s) {', '.join(missing)} not found under {self.root}"
            )
        train: list[Sample] = []
        test: list[Sample] = []
        counts: dict[str, dict[str, int]] = {}
        for split in self.SPLITS:
            good = defective = 0
            for path in _images(self.root / split, self.MASK_SUFFIX):
                mask = _mask_of(path, self.MASK_SUFFIX, ".png")
                if _is_defective(path, mask):
                    test.append(Sample(path, 1, mask, DEFECT, mask_threshold=0))
                    defective += 1
                elif split == "train":
                    train.append(Sample(path, 0))
                    good += 1
                else:
                    test.append(Sample(path, 0))
                    good += 1
            counts[split] = {"good": good, "defective": defective}
        if counts["train"]["defective"]:
            log.info(
                "KolektorSDD2: the %d defective images of %s go to the test set",
                counts["train"]["defective"],
                self.root / "train",
            )
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=self.root,
            extra={
                "train_dir": f"{self.root / 'train'} (images with empty masks)",
                "test_dir": self.root / "test",
                "splits": counts,
            },
        )
