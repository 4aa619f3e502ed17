"""Reader for folders of images with one mask each, where an empty mask means a good image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.errors import DatasetError
from foads.data.images import find_mask, image_size, list_images, load_mask
from foads.data.sample import CategoryData, Sample

DEFECT = "defect"


class MaskedFolder(DatasetReader):
    """One category from ``<root>/[<split>/]<image_dir>/<name>.<ext>`` with every image's mask
    at ``<root>/[<split>/]<mask_dir>/<name><mask_suffix>.png`` (e.g. MPDD as re-split).

    The label comes from the mask: an image whose mask has no pixel above 127 is good and
    goes to the training pool (the protocol draws the shots from it and streams the rest);
    every other image is defective (test, label 1, defect type ``defect``). ``splits`` names
    the sub-folders to read (``"."`` is the root itself); by default the root when it holds
    ``<image_dir>``, and every sub-folder of the root that holds one. Every mask is read once
    here to label its image. A missing mask, or a mask of another size than its image, is a
    ``DatasetError`` naming both files.
    """

    def __init__(
        self,
        root: str | Path,
        category: str = "masked_folder",
        image_dir: str = "images",
        mask_dir: str = "masks",
        splits: Sequence[str] | None = None,
        mask_suffix: str = "",
    ) -> None:
        super().__init__(root, category)
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.splits = None if splits is None else [str(s) for s in splits]
        self.mask_suffix = mask_suffix

    def categories(self) -> list[str]:
        return [self.category]

    def layout(self) -> str:
        masks = f"[<split>/]{self.mask_dir}/<name>{self.mask_suffix}.png"
        return "\n".join(
            [
                "<root>/",
                f"  [<split>/]{self.image_dir}/<name>.<ext>   images (png, jpg, bmp, tif)",
                f"  {masks}   their masks (> 127 = defect; an empty mask: a good image)",
                f"  <split>: dataset.splits; default: every sub-folder holding {self.image_dir}/",
            ]
        )

    def category_exists(self, category: str) -> bool:
        return category == self.category and self.root.is_dir()

    def split_dirs(self) -> list[Path]:
        """The folders that hold ``image_dir`` and ``mask_dir``: the requested splits, or
        the root and its sub-folders that hold ``image_dir``."""
        if self.splits is not None:
            dirs = [self.root / split for split in self.splits]
            for folder in dirs:
                if not (folder / self.image_dir).is_dir():
                    raise self.layout_error(
                        f"split folder {folder / self.image_dir} does not exist; "
                        f"expected dataset.splits to name sub-folders of {self.root} that "
                        f"hold {self.image_dir}/"
                    )
            return dirs
        candidates = [self.root, *sorted(d for d in self.root.iterdir() if d.is_dir())]
        dirs = [d for d in candidates if (d / self.image_dir).is_dir()]
        if not dirs:
            raise self.layout_error(
                f"no {self.image_dir}/ folder in {self.root} or in its sub-folders"
            )
        return dirs

    def _read(self, category: str) -> CategoryData:
        train: list[Sample] = []
        test: list[Sample] = []
        counts: dict[str, dict[str, int]] = {}
        for folder in self.split_dirs():
            good = defective = 0
            for path in list_images(folder / self.image_dir):
                mask_path = self._mask_for(folder, path)
                if load_mask(mask_path, image_size(path), image_path=path).any():
                    test.append(Sample(path, 1, mask_path, DEFECT))
                    defective += 1
                else:
                    train.append(Sample(path, 0))
                    good += 1
            split = "." if folder == self.root else folder.relative_to(self.root).as_posix()
            counts[split] = {"good": good, "defective": defective}
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=self.root,
            extra={
                # Where validation looks when a pool is empty (named in its error).
                "train_dir": f"{self.root}/[<split>/]{self.image_dir} (images with empty masks)",
                "test_dir": f"{self.root}/[<split>/]{self.image_dir} (images with defects)",
                "splits": counts,
                "good_images": len(train),
                "defective_images": len(test),
            },
        )

    def _mask_for(self, folder: Path, image: Path) -> Path:
        """The mask of an image: ``.png`` preferred, other image types accepted."""
        path = find_mask(folder / self.mask_dir, image.stem, self.mask_suffix)
        if path.is_file():
            return path
        raise DatasetError(f"mask for {image} not found: expected {path}")
