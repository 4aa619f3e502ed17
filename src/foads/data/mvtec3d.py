"""Reader for the RGB images of MVTec 3D-AD (Bergmann et al., VISAPP 2022)."""

from __future__ import annotations

from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.images import list_images
from foads.data.sample import CategoryData, Sample

MVTEC3D_CATEGORIES = (
    "bagel",
    "cable_gland",
    "carrot",
    "cookie",
    "dowel",
    "foam",
    "peach",
    "potato",
    "rope",
    "tire",
)

GOOD = "good"

MVTEC3D_LAYOUT = """\
<root>/
  <category>/                        e.g. bagel
    train/good/rgb/*.png             good training images
    validation/good/rgb/*.png        good validation images (join the training pool)
    test/good/rgb/*.png              good test images
    test/<defect>/rgb/*.png          defective test images, one folder per defect type
    test/<defect>/gt/<name>.png      the mask of rgb/<name>.png
  (the xyz/ folders beside rgb/ hold point clouds and are not read)"""


class MVTec3DAD(DatasetReader):
    """MVTec 3D-AD, RGB images only: the ``xyz/`` point clouds are ignored.

    ``train`` holds ``train/good/rgb`` and, with ``use_validation`` (default), the good
    images of ``validation/good/rgb`` too: the protocol draws shots from this pool and
    streams the rest, so the validation images are simply more good images. ``test`` holds
    ``test/<defect>/rgb``; a defective image's mask is ``test/<defect>/gt/<same name>``.
    """

    def __init__(
        self, root: str | Path, category: str = "bagel", use_validation: bool = True
    ) -> None:
        super().__init__(root, category)
        self.use_validation = use_validation

    def categories(self) -> list[str]:
        return list(MVTEC3D_CATEGORIES)

    def layout(self) -> str:
        return MVTEC3D_LAYOUT

    def _read(self, category: str) -> CategoryData:
        category_dir = self.root / category
        train_dir = category_dir / "train" / GOOD / "rgb"
        validation_dir = category_dir / "validation" / GOOD / "rgb"
        test_dir = category_dir / "test"
        train = [Sample(path, 0) for path in list_images(train_dir)]
        validation = [Sample(path, 0) for path in list_images(validation_dir)]
        if self.use_validation:
            train += validation
        test: list[Sample] = []
        defect_dirs = (
            sorted(d for d in test_dir.iterdir() if d.is_dir()) if test_dir.is_dir() else []
        )
        for defect_dir in defect_dirs:
            defect = defect_dir.name
            for path in list_images(defect_dir / "rgb"):
                if defect == GOOD:
                    test.append(Sample(path, 0))
                else:
                    test.append(Sample(path, 1, defect_dir / "gt" / path.name, defect))
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=category_dir,
            extra={
                "train_dir": train_dir,
                "test_dir": test_dir / "<defect>" / "rgb",
                "validation_images": len(validation) if self.use_validation else 0,
            },
        )
