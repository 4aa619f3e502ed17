"""Fixtures that write tiny datasets in the real on-disk layouts into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = 32  # every fixture image is SIZE x SIZE unless a test says otherwise


def _write(path: Path, array: np.ndarray | None = None, size: tuple[int, int] = (SIZE, SIZE)):
    """Write an image (a grey gradient by default) and create its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is None:
        w, h = size
        array = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    Image.fromarray(array).save(path)
    return path


def _mask(size: tuple[int, int] = (SIZE, SIZE), box=(8, 8, 16, 16)) -> np.ndarray:
    """A 0/255 mask with a filled rectangle (left, top, right, bottom exclusive)."""
    w, h = size
    mask = np.zeros((h, w), dtype=np.uint8)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 255
    return mask


@pytest.fixture
def write_image() -> Callable[..., Path]:
    return _write


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """MVTec AD layout with two categories: bottle (3 train, 2 good, 3 defective), screw."""
    root = tmp_path / "mvtec"
    bottle = root / "bottle"
    for i in range(3):
        _write(bottle / "train" / "good" / f"{i:03d}.png")
    for i in range(2):
        _write(bottle / "test" / "good" / f"{i:03d}.png")
    for defect, n in (("broken_large", 2), ("contamination", 1)):
        for i in range(n):
            _write(bottle / "test" / defect / f"{i:03d}.png")
            _write(bottle / "ground_truth" / defect / f"{i:03d}_mask.png", _mask())
    screw = root / "screw"
    _write(screw / "train" / "good" / "000.png")
    _write(screw / "test" / "good" / "000.png")
    _write(screw / "test" / "thread_top" / "000.png")
    _write(screw / "ground_truth" / "thread_top" / "000_mask.png", _mask())
    return root


@pytest.fixture
def btad_root(tmp_path: Path) -> Path:
    """BTAD layout: 01 with .png masks, 03 with .bmp masks."""
    root = tmp_path / "btad"
    for category, mask_ext in (("01", ".png"), ("03", ".bmp")):
        base = root / category
        for i in range(4):
            _write(base / "train" / "ok" / f"{i:04d}.bmp")
        _write(base / "test" / "ok" / "0000.bmp")
        for i in range(2):
            _write(base / "test" / "ko" / f"{i:04d}.bmp")
            _write(base / "ground_truth" / "ko" / f"{i:04d}{mask_ext}", _mask())
    return root


@pytest.fixture
def mtd_root(tmp_path: Path) -> Path:
    """Raw Magnetic Tile layout: 3 free tiles, 2 blowholes, 1 crack; masks beside the JPEGs."""
    root = tmp_path / "mtd"
    for cls, n in (("MT_Free", 3), ("MT_Blowhole", 2), ("MT_Crack", 1)):
        for i in range(n):
            stem = f"exp{i}_num_{100 + i}"
            _write(root / cls / "Imgs" / f"{stem}.jpg", size=(24, SIZE))
            mask = np.zeros((SIZE, 24), np.uint8) if cls == "MT_Free" else _mask((24, SIZE))
            _write(root / cls / "Imgs" / f"{stem}.png", mask)
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """A user's folders: 3 good images, 2 defective, masks named <stem>_mask.png."""
    root = tmp_path / "mine"
    for i in range(3):
        _write(root / "good" / f"g{i}.jpg")
    for i in range(2):
        _write(root / "defect" / f"d{i}.png")
        _write(root / "masks" / f"d{i}_mask.png", _mask())
    return root


# AITEX strips in the fixture: 512 x 64 (8 tiles of 64), except where noted.
AITEX_TILE = 64


@pytest.fixture
def aitex_root(tmp_path: Path) -> Path:
    """AITEX layout, strips of 512 x 64 cut into 64 px tiles (write the masks as 0/255):

    fabric 02: good strips 0001, 0002 (16 tiles); 0010_006 with a defect in tile 2 and
    0011_019 with one across tiles 3 and 4 and only faint (<= 127) pixels in tile 6.
    fabric 03: good strip 0003 of 512 x 128 (2 rows: 16 tiles); 0097_030 with two masks,
    _mask1 marking tile 1 and _mask2 tile 5; 0098_010 of 544 x 64 whose defect lies in the
    32 px that do not make a full tile (so 8 good tiles).
    """
    root = tmp_path / "aitex"
    size = (512, 64)
    for name, fabric_dir, strip_size in (
        ("0001_000_02", "2306894-210033u", size),
        ("0002_000_02", "2306894-210033u", size),
        ("0003_000_03", "2311694-1930c7u", (512, 128)),
    ):
        _write(root / "NODefect_images" / fabric_dir / f"{name}.png", size=strip_size)
    masks = {
        "0010_006_02": (size, {"_mask": [(130, 10, 140, 20)]}),
        "0011_019_02": (size, {"_mask": [(250, 30, 270, 40)]}),
        "0097_030_03": (size, {"_mask1": [(70, 0, 80, 5)], "_mask2": [(330, 60, 340, 64)]}),
        "0098_010_03": ((544, 64), {"_mask": [(520, 10, 530, 20)]}),
    }
    for name, (strip_size, files) in masks.items():
        _write(root / "Defect_images" / f"{name}.png", size=strip_size)
        for suffix, boxes in files.items():
            mask = np.zeros((strip_size[1], strip_size[0]), np.uint8)
            for left, top, right, bottom in boxes:
                mask[top:bottom, left:right] = 255
            if name == "0011_019_02":
                mask[0:5, 400:410] = 100  # faint: not a defect at the 127 threshold
            _write(root / "Mask_images" / f"{name}{suffix}.png", mask)
    return root


@pytest.fixture
def masked_folder_root(tmp_path: Path) -> Path:
    """Images with a mask each, in two splits; an empty mask means good.

    train/: a (empty mask), b (defect), c (faint mask, <= 127: good), d.jpg (empty);
    test/: a (defect; same name as train/a), e (empty). So 4 good and 2 defective.
    """
    root = tmp_path / "masked"
    empty = np.zeros((SIZE, SIZE), np.uint8)
    faint = empty.copy()
    faint[4:8, 4:8] = 100
    for split, name, ext, mask in (
        ("train", "a", ".png", empty),
        ("train", "b", ".png", _mask()),
        ("train", "c", ".png", faint),
        ("train", "d", ".jpg", empty),
        ("test", "a", ".png", _mask(box=(0, 0, 4, 4))),
        ("test", "e", ".png", empty),
    ):
        _write(root / split / "images" / f"{name}{ext}")
        _write(root / split / "masks" / f"{name}.png", mask)
    return root
