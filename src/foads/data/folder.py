"""Reader for a user's own images: a folder of good ones, a folder of defective ones."""

from __future__ import annotations

from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.images import find_mask, list_images
from foads.data.sample import CategoryData, Sample


class ImageFolder(DatasetReader):
    """A single category from plain folders: ``<root>/<good_dir>`` and ``<root>/<defect_dir>``.

    ``train`` holds the good images and ``test`` the defective ones; the protocol moves the
    good images that are not shots into the stream. Masks are optional: with ``mask_dir`` set,
    the mask of ``<stem>.<ext>`` is ``<root>/<mask_dir>/<stem><mask_suffix>.png``.
    """

    def __init__(
        self,
        root: str | Path,
        category: str = "folder",
        good_dir: str = "good",
        defect_dir: str = "defect",
        mask_dir: str | None = None,
        mask_suffix: str = "",
    ) -> None:
        super().__init__(root, category)
        self.good_dir = good_dir
        self.defect_dir = defect_dir
        self.mask_dir = mask_dir
        self.mask_suffix = mask_suffix

    def categories(self) -> list[str]:
        return [self.category]

    def layout(self) -> str:
        lines = [
            "<root>/",
            f"  {self.good_dir}/*                good images",
            f"  {self.defect_dir}/*              defective images",
        ]
        if self.mask_dir is not None:
            lines.append(
                f"  {self.mask_dir}/<stem>{self.mask_suffix}.png   masks of defective images"
            )
        return "\n".join(lines)

    def category_exists(self, category: str) -> bool:
        return category == self.category and self.root.is_dir()

    def _read(self, category: str) -> CategoryData:
        train_dir = self.root / self.good_dir
        test_dir = self.root / self.defect_dir
        train = [Sample(path, 0) for path in list_images(train_dir)]
        test = [
            Sample(path, 1, self._mask_for(path.stem), self.defect_dir)
            for path in list_images(test_dir)
        ]
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=self.mask_dir is not None,
            root=self.root,
            extra={"train_dir": train_dir, "test_dir": test_dir},
        )

    def _mask_for(self, stem: str) -> Path | None:
        """The mask path of an image stem: .png preferred, other image types accepted."""
        if self.mask_dir is None:
            return None
        # Missing: the expected path, so that validation names it.
        return find_mask(self.root / self.mask_dir, stem, self.mask_suffix)
