"""Reader for BTAD (beanTech Anomaly Detection): three industrial products, ok/ko folders."""

from __future__ import annotations

from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.images import list_images
from foads.data.sample import CategoryData, Sample

BTAD_CATEGORIES = ("01", "02", "03")

# BTAD ships masks as .png for some products and .bmp for others.
_MASK_EXTENSIONS = (".png", ".bmp")

BTAD_LAYOUT = """\
<root>/
  <category>/                        01, 02 or 03
    train/ok/*                       good training images
    test/ok/*                        good test images
    test/ko/*                        defective test images
    ground_truth/ko/<stem>.png       (or <stem>.bmp) one mask per defective image"""


class BTAD(DatasetReader):
    """BTAD: ``ok`` images are good, ``ko`` images defective (defect type ``ko``)."""

    def __init__(self, root: str | Path, category: str = "01") -> None:
        super().__init__(root, category)

    def categories(self) -> list[str]:
        return list(BTAD_CATEGORIES)

    def layout(self) -> str:
        return BTAD_LAYOUT

    def _read(self, category: str) -> CategoryData:
        category_dir = self.root / category
        train_dir = category_dir / "train" / "ok"
        test_dir = category_dir / "test"
        mask_dir = category_dir / "ground_truth" / "ko"
        train = [Sample(path, 0) for path in list_images(train_dir)]
        test = [Sample(path, 0) for path in list_images(test_dir / "ok")]
        for path in list_images(test_dir / "ko"):
            test.append(Sample(path, 1, _find_mask(mask_dir, path.stem), "ko"))
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=category_dir,
            extra={"train_dir": train_dir, "test_dir": test_dir},
        )


def _find_mask(mask_dir: Path, stem: str) -> Path:
    """The mask for an image stem; the .png path when none exists, so validation names it."""
    for ext in _MASK_EXTENSIONS:
        candidate = mask_dir / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return mask_dir / f"{stem}{_MASK_EXTENSIONS[0]}"
