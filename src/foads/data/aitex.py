"""Reader for the AITEX Fabric Image Database: line-scan strips of fabric cut into square tiles."""

from __future__ import annotations

import re
from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.errors import DatasetError
from foads.data.images import image_size, list_images, load_sample_mask
from foads.data.sample import CategoryData, Sample

# The seven fabrics of the database (the last two digits of every file name).
AITEX_FABRICS = ("00", "01", "02", "03", "04", "05", "06")

GOOD_DIR = "NODefect_images"
DEFECT_DIR = "Defect_images"
MASK_DIR = "Mask_images"

# <id>_<defect code>_<fabric code>, e.g. 0097_030_03; good strips have defect code 000.
_NAME = re.compile(r"^(?P<id>\d+)_(?P<code>\d{3})_(?P<fabric>\d{2})$")
# <stem>_mask.png, or <stem>_mask1.png, <stem>_mask2.png, ... when a defect has several.
_MASK_NAME = re.compile(r"^(?P<stem>.+)_mask(?P<number>\d*)$")

AITEX_LAYOUT = """\
<root>/
  NODefect_images/<fabric folder>/<id>_000_<fabric>.png   good strips (4096 x 256)
  Defect_images/<id>_<defect code>_<fabric>.png           defective strips
  Mask_images/<id>_<defect code>_<fabric>_mask.png        their masks (255 = defect);
                                                          or _mask1.png, _mask2.png, ...
  fabric codes 00-06, e.g. 0097_030_03.png: strip 0097, defect code 030, fabric 03"""


class AITEX(DatasetReader):
    """AITEX fabric: one category per fabric code (``00`` ... ``06``), each strip cut into tiles.

    Every strip (4096 x 256 px on disk) is cut into non-overlapping ``tile`` x ``tile`` tiles,
    row by row from the top left; a strip whose sides are not multiples of ``tile`` keeps its
    full tiles and drops the rest (sizes are read from the file headers). Labelling:

    - every tile of a good strip (``NODefect_images``) is a good training tile (label 0);
    - a tile of a defective strip (``Defect_images``) is defective (label 1, defect type
      ``code_<defect code>``, e.g. ``code_006``, the mask being the strip's mask file(s)
      with the tile's region) when any pixel of the strip's mask inside the tile is above
      127; otherwise it is a good test tile (label 0, no mask, defect type ``good``).

    So the protocol's shots come from good strips only, and the stream holds the remaining
    good-strip tiles, the defect-free tiles of defective strips and the defective tiles. A
    strip with two mask files (``_mask1.png``, ``_mask2.png``) is labelled by their union.
    A defective strip without a mask file, a mask of another size than its strip, or a
    strip smaller than one tile is a ``DatasetError`` naming the file.
    """

    def __init__(self, root: str | Path, category: str = "all", tile: int = 256) -> None:
        super().__init__(root, category)
        if int(tile) != tile or int(tile) < 1:
            raise DatasetError(f"AITEX tile must be a positive number of pixels, got {tile!r}")
        self.tile = int(tile)

    def categories(self) -> list[str]:
        return list(AITEX_FABRICS)

    def layout(self) -> str:
        return AITEX_LAYOUT

    def category_exists(self, category: str) -> bool:
        good, defective = self._strips(category)
        return bool(good or defective)

    def _strips(self, fabric: str) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
        """(path, defect code) of the good and the defective strips of one fabric, by name."""
        good_dir = self.root / GOOD_DIR
        folders = [good_dir, *sorted(d for d in good_dir.glob("*") if d.is_dir())]
        good = [
            (path, code)
            for folder in folders
            for path, code, strip_fabric in _parse(list_images(folder))
            if strip_fabric == fabric
        ]
        defective = [
            (path, code)
            for path, code, strip_fabric in _parse(list_images(self.root / DEFECT_DIR))
            if strip_fabric == fabric
        ]
        return sorted(good), sorted(defective)

    def _read(self, category: str) -> CategoryData:
        good_strips, defective_strips = self._strips(category)
        train = [tile for path, _ in good_strips for tile in self._tiles(path)]
        test: list[Sample] = []
        empty_masks: list[str] = []
        for path, code in defective_strips:
            tiles = self._label_tiles(path, code)
            if not any(t.label == 1 for t in tiles):
                empty_masks.append(path.name)
            test.extend(tiles)
        defective = sum(s.label for s in test)
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=self.root,
            extra={
                "train_dir": self.root / GOOD_DIR,
                "test_dir": self.root / DEFECT_DIR,
                "tile": self.tile,
                "good_strips": len(good_strips),
                "defective_strips": len(defective_strips),
                "train_tiles": len(train),
                "test_good_tiles": len(test) - defective,
                "test_defective_tiles": defective,
                # Defective strips whose mask marks no full tile (empty, or only in the
                # dropped remainder): they add good test tiles only.
                "strips_without_defective_tile": empty_masks,
            },
        )

    def _tiles(self, path: Path) -> list[Sample]:
        """Every full tile of a strip as a good sample, row by row from the top left."""
        width, height = image_size(path)
        t = self.tile
        if width < t or height < t:
            raise DatasetError(
                f"strip {path} is {width}x{height} (WxH), smaller than one {t}x{t} tile; "
                f"expected a strip at least tile={t} px in both sides (lower dataset.tile)"
            )
        return [
            Sample(path, 0, region=(left, top, left + t, top + t))
            for top in range(0, height - t + 1, t)
            for left in range(0, width - t + 1, t)
        ]

    def _label_tiles(self, path: Path, code: str) -> list[Sample]:
        """A defective strip's tiles: defective where the strip's mask marks a pixel."""
        masks = self._mask_paths(path)
        mask_path = masks[0] if len(masks) == 1 else masks
        # One read of the whole strip's mask(s); checks each file's size against the strip.
        mask = load_sample_mask(Sample(path, 1, mask_path))
        tiles = []
        for tile in self._tiles(path):
            assert tile.region is not None  # every tile has its region
            left, top, right, bottom = tile.region
            if mask[top:bottom, left:right].any():
                tiles.append(Sample(path, 1, mask_path, f"code_{code}", tile.region))
            else:
                tiles.append(tile)
        return tiles

    def _mask_paths(self, path: Path) -> tuple[Path, ...]:
        """The mask files of a defective strip: ``_mask.png`` and/or ``_mask<n>.png``."""
        mask_dir = self.root / MASK_DIR
        found = []
        for candidate in mask_dir.glob(f"{path.stem}_mask*.png"):
            match = _MASK_NAME.match(candidate.stem)
            if match and match["stem"] == path.stem and not candidate.name.startswith("."):
                found.append((int(match["number"] or 0), candidate))
        if not found:
            raise DatasetError(
                f"mask for defective strip {path} not found: expected "
                f"{mask_dir / (path.stem + '_mask.png')} (or {path.stem}_mask1.png, "
                f"{path.stem}_mask2.png, ... for a defect drawn in several files)"
            )
        return tuple(candidate for _, candidate in sorted(found))


def _parse(paths: list[Path]) -> list[tuple[Path, str, str]]:
    """(path, defect code, fabric code) of strips named ``<id>_<code>_<fabric>``."""
    parsed = []
    for path in paths:
        match = _NAME.match(path.stem)
        if match is None:
            raise DatasetError(
                f"AITEX file {path} is not named <id>_<defect code>_<fabric code> "
                "(e.g. 0097_030_03.png); expected only AITEX strips in this folder"
            )
        parsed.append((path, match["code"], match["fabric"]))
    return parsed
