"""Reader for MVTec AD and for any dataset written in its layout (e.g. the synthetic one)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.images import list_images
from foads.data.sample import CategoryData, Sample

MVTEC_CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)

GOOD = "good"

MVTEC_LAYOUT = """\
<root>/
  <category>/                        e.g. bottle
    train/good/*.png                 good training images
    test/good/*.png                  good test images
    test/<defect>/*.png              defective test images, one folder per defect type
    ground_truth/<defect>/<stem>_mask.png"""


class MVTecAD(DatasetReader):
    """MVTec AD: good training images, a test set of good and defective ones with masks.

    ``known_categories`` replaces the 15 MVTec names, so datasets written in the same layout
    (the synthetic textures) reuse this reader.
    """

    def __init__(
        self,
        root: str | Path,
        category: str = "bottle",
        known_categories: Sequence[str] | None = None,
    ) -> None:
        super().__init__(root, category)
        self._known = list(MVTEC_CATEGORIES if known_categories is None else known_categories)

    def categories(self) -> list[str]:
        return list(self._known)

    def layout(self) -> str:
        return MVTEC_LAYOUT

    def _read(self, category: str) -> CategoryData:
        category_dir = self.root / category
        train_dir = category_dir / "train" / GOOD
        test_dir = category_dir / "test"
        train = [Sample(path, 0) for path in list_images(train_dir)]
        test: list[Sample] = []
        defect_dirs = (
            sorted(d for d in test_dir.iterdir() if d.is_dir()) if test_dir.is_dir() else []
        )
        for defect_dir in defect_dirs:
            defect = defect_dir.name
            for path in list_images(defect_dir):
                if defect == GOOD:
                    test.append(Sample(path, 0))
                else:
                    mask = category_dir / "ground_truth" / defect / f"{path.stem}_mask.png"
                    test.append(Sample(path, 1, mask, defect))
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=category_dir,
            extra={"train_dir": train_dir, "test_dir": test_dir},
        )
