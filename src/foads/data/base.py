"""The common shape of dataset readers: category lookup, root checks and sample validation."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from foads.data.errors import DatasetError, ImageReadError
from foads.data.images import check_region, image_size
from foads.data.sample import CategoryData

log = logging.getLogger(__name__)

ALL = "all"


class DatasetReader(ABC):
    """Base of every reader: turns one category on disk into a validated ``CategoryData``.

    Subclasses say which categories they know (``categories``), what the layout on disk is
    (``layout``, shown in errors) and how to list one category's samples (``_read``); this
    class checks the root, the category name and the samples the same way for all of them.
    """

    def __init__(self, root: str | Path, category: str = ALL) -> None:
        self.root = Path(root)
        self.category = category

    @abstractmethod
    def categories(self) -> list[str]:
        """The category names this reader knows, whether or not they are on disk."""

    @abstractmethod
    def layout(self) -> str:
        """The expected on-disk layout as a small text tree, shown when the root is wrong."""

    @abstractmethod
    def _read(self, category: str) -> CategoryData:
        """List one existing category's samples; ``load`` validates the result."""

    def category_exists(self, category: str) -> bool:
        """Whether a category's data is on disk; by default, a folder named after it."""
        return (self.root / category).is_dir()

    def layout_error(self, message: str) -> DatasetError:
        """A ``DatasetError`` whose message ends with the layout this reader expects."""
        return DatasetError(
            f"{message}\nexpected layout for {type(self).__name__}:\n{self.layout()}"
        )

    def require_root(self) -> None:
        """Raise a ``DatasetError`` showing the expected layout if the root is not a directory."""
        if not self.root.is_dir():
            raise self.layout_error(f"dataset root {self.root} does not exist or is not a folder")

    def _check_known(self, category: str) -> None:
        known = self.categories()
        if category not in known:
            raise DatasetError(
                f"unknown {type(self).__name__} category {category!r}; expected one of "
                f"{', '.join(known)} or {ALL!r}"
            )

    def resolve_categories(self, category: str | Sequence[str] | None = None) -> list[str]:
        """Turn a category request into names: ``"all"`` means every known one found on disk."""
        category = self.category if category is None else category
        if not isinstance(category, str):
            names = list(category)
            for name in names:
                self._check_known(name)
            return names
        if category == ALL:
            self.require_root()
            present = [name for name in self.categories() if self.category_exists(name)]
            if not present:
                raise self.layout_error(
                    f"no {type(self).__name__} category found under {self.root}; "
                    f"expected at least one of {', '.join(self.categories())}"
                )
            return present
        self._check_known(category)
        return [category]

    def load(self, category: str | None = None) -> CategoryData:
        """Read and validate one category (the constructor's by default)."""
        category = self.category if category is None else category
        if category == ALL:
            raise DatasetError(
                f"load() reads one category, got {ALL!r}; call resolve_categories({ALL!r}) "
                "and load each name"
            )
        self._check_known(category)
        self.require_root()
        if not self.category_exists(category):
            raise self.layout_error(f"category {category!r} not found under {self.root}")
        data = self._read(category)
        self.validate(data)
        return data

    def validate(self, data: CategoryData) -> None:
        """Raise a ``DatasetError`` if a category cannot be used; see ``validate_category``."""
        validate_category(data)


def validate_category(data: CategoryData) -> None:
    """Check a category before any model sees it, naming the file or folder at fault.

    Fails on an empty training pool (naming ``extra["train_dir"]`` when the reader set it),
    an empty test set, an anomalous sample whose mask file (or one of its mask files) is
    missing, a mask whose size differs from its image's, and a tile whose ``region`` is not
    inside its image (sizes read from the headers only, so this stays cheap).
    """
    if not data.train:
        where = data.extra.get("train_dir", data.root)
        raise DatasetError(
            f"category {data.name!r} has no training images in {where}; expected good images there"
        )
    if not data.test:
        where = data.extra.get("test_dir", data.root)
        raise DatasetError(
            f"category {data.name!r} has no test images in {where}; expected good and/or "
            "defective images there"
        )
    sizes: dict[Path, tuple[int, int]] = {}

    def size_of(path: Path) -> tuple[int, int]:
        # Tiles share their file: read each header once.
        if path not in sizes:
            sizes[path] = image_size(path)
        return sizes[path]

    unreadable: set[Path] = set()

    def readable(path: Path) -> bool:
        # An image that cannot even be opened is skipped where it is used (a shot or a
        # stream image, the same way both times), not here: the run goes on without it.
        try:
            size_of(path)
        except ImageReadError as err:
            if path not in unreadable:
                unreadable.add(path)
                log.warning("%s; the run will skip it", err)
            return False
        return True

    for sample in [*data.train, *data.test]:
        if sample.region is not None and readable(sample.path):
            check_region(sample.region, size_of(sample.path), sample.path)
    for sample in data.test:
        if sample.label != 1 or sample.mask_path is None:
            continue
        for mask_path in sample.mask_paths():
            if not mask_path.is_file():
                raise DatasetError(f"mask for {sample.path} not found: expected {mask_path}")
            if not readable(sample.path):
                continue
            img_size = size_of(sample.path)
            mask_size = size_of(mask_path)
            if img_size != mask_size:
                raise DatasetError(
                    f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} (WxH) but image "
                    f"{sample.path} is {img_size[0]}x{img_size[1]}; expected equal sizes"
                )


class SingleCategoryReader(DatasetReader):
    """A dataset of one category (MTD, KolektorSDD, KolektorSDD2): subclasses set
    ``CATEGORY`` and ``LAYOUT`` and say how to read it."""

    CATEGORY: str
    LAYOUT: str

    def __init__(self, root: str | Path, category: str | None = None) -> None:
        super().__init__(root, self.CATEGORY if category is None else category)

    def categories(self) -> list[str]:
        return [self.CATEGORY]

    def layout(self) -> str:
        return self.LAYOUT
