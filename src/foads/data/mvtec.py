"""Reader for MVTec AD and for any dataset written in its layout (e.g. the synthetic one)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from foads.data.base import ALL, DatasetReader
from foads.data.errors import DatasetError
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
# known_categories="discover": the categories are the root's sub-folders in this layout.
DISCOVER = "discover"

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
    (the synthetic textures) reuse this reader. ``known_categories="discover"`` (config
    ``dataset=mvtec_layout``) takes as categories the sub-folders of the root that hold
    ``train/good/`` (hidden ones left out), so any folder in the MVTec layout is read (MPDD
    as released, your own data); a category that is not there is an error naming the root
    and the categories found.
    """

    def __init__(
        self,
        root: str | Path,
        category: str = "bottle",
        known_categories: Sequence[str] | str | None = None,
    ) -> None:
        super().__init__(root, category)
        if isinstance(known_categories, str) and known_categories != DISCOVER:
            raise DatasetError(
                f"known_categories={known_categories!r}; expected a list of category names "
                f"or {DISCOVER!r} (the sub-folders of the root holding train/good/)"
            )
        self.discover = known_categories == DISCOVER
        self._known = (
            []
            if self.discover
            else list(MVTEC_CATEGORIES if known_categories is None else known_categories)
        )

    def categories(self) -> list[str]:
        if self.discover:
            return self.discovered()
        return list(self._known)

    def discovered(self) -> list[str]:
        """The sub-folders of the root in the MVTec layout (``<category>/train/good/``)."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name
            for d in self.root.iterdir()
            if not d.name.startswith(".") and (d / "train" / GOOD).is_dir()
        )

    def category_exists(self, category: str) -> bool:
        if self.discover:
            return (self.root / category / "train" / GOOD).is_dir()
        return super().category_exists(category)

    def resolve_categories(self, category: str | Sequence[str] | None = None) -> list[str]:
        category = self.category if category is None else category
        if self.discover and category == ALL:
            self.require_root()
            if not self.discovered():
                raise self.layout_error(
                    f"no category in the MVTec layout under {self.root}: no sub-folder of it "
                    "holds train/good/"
                )
        return super().resolve_categories(category)

    def _check_known(self, category: str) -> None:
        if not self.discover:
            super()._check_known(category)
            return
        self.require_root()
        if self.category_exists(category):
            return
        found = self.discovered()
        raise self.layout_error(
            f"category {category!r} not found under {self.root}: there is no "
            f"{self.root / category / 'train' / GOOD}; categories found there (sub-folders "
            f"holding train/good/): {', '.join(found) if found else 'none'}"
        )

    def layout(self) -> str:
        return MVTEC_LAYOUT

    def _read(self, category: str) -> CategoryData:
        category_dir = self.root / category
        train_dir = category_dir / "train" / GOOD
        test_dir = category_dir / "test"
        train = [Sample(path, 0) for path in list_images(train_dir)]
        if not train and (train_dir / "rgb").is_dir():
            raise self.layout_error(
                f"{train_dir} holds no images but an rgb/ folder: {self.root} looks like "
                "MVTec 3D-AD, whose layout is <category>/train/good/rgb/; use dataset=mvtec3d"
            )
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
