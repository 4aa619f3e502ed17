"""Reader for the raw Magnetic Tile Defect dataset (MT_<Class>/Imgs, masks beside images)."""

from __future__ import annotations

from pathlib import Path

from foads.data.base import SingleCategoryReader
from foads.data.images import list_images
from foads.data.sample import CategoryData, Sample

MTD_CATEGORY = "magnetic_tile"
GOOD_CLASS = "MT_Free"
DEFECT_CLASSES = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")

MTD_LAYOUT = """\
<root>/
  MT_Free/Imgs/<name>.jpg            good images (an empty <name>.png beside each is ignored)
  MT_<Class>/Imgs/<name>.jpg         defective images: Blowhole, Break, Crack, Fray, Uneven
  MT_<Class>/Imgs/<name>.png         the mask of <name>.jpg (soft edges; > 127 is defect)"""


class MagneticTile(SingleCategoryReader):
    """Magnetic Tile Defect as published: one category, ``magnetic_tile``, with no split.

    The dataset has no train/test split, so ``train`` holds ALL ``MT_Free`` images and
    ``test`` all defective ones. The protocol later moves every good training image that is
    not a shot into the stream, which is how the stream gets its good images.
    Defect types are the class names without ``MT_``, lowercased (``blowhole``, ...). Some
    defective masks are empty at the 127 threshold; those images are still labelled 1.
    """

    CATEGORY = MTD_CATEGORY
    LAYOUT = MTD_LAYOUT

    def category_exists(self, category: str) -> bool:
        return category == MTD_CATEGORY and (self.root / GOOD_CLASS).is_dir()

    def _read(self, category: str) -> CategoryData:
        train_dir = self.root / GOOD_CLASS / "Imgs"
        train = [Sample(path, 0) for path in _jpegs(train_dir)]
        test: list[Sample] = []
        for class_dir in sorted(self.root.glob("MT_*")):
            if class_dir.name == GOOD_CLASS or not class_dir.is_dir():
                continue
            defect = class_dir.name.removeprefix("MT_").lower()
            for path in _jpegs(class_dir / "Imgs"):
                test.append(Sample(path, 1, path.with_suffix(".png"), defect))
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=self.root,
            extra={"train_dir": train_dir, "test_dir": self.root / "MT_<Class>" / "Imgs"},
        )


def _jpegs(directory: Path) -> list[Path]:
    # The .png files in Imgs are masks, so only JPEGs are images here.
    return [p for p in list_images(directory) if p.suffix.lower() in (".jpg", ".jpeg")]
