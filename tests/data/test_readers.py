"""Dataset readers on tiny trees in each real layout: counts, labels, masks and errors."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from foads.data import (
    BTAD,
    MVTEC_CATEGORIES,
    DatasetError,
    ImageFolder,
    MagneticTile,
    MVTecAD,
    load_image,
    load_mask,
)

MTD_ROOT = Path("/work/shared/data/mtd")


def _labels(samples) -> Counter:
    return Counter(s.label for s in samples)


# --- MVTec AD ---------------------------------------------------------------------------


def test_mvtec_counts_labels_and_masks(mvtec_root):
    data = MVTecAD(mvtec_root, "bottle").load()
    assert data.name == "bottle" and data.has_masks and data.root == mvtec_root / "bottle"
    assert len(data.train) == 3 and _labels(data.train) == {0: 3}
    assert _labels(data.test) == {0: 2, 1: 3}
    assert Counter(s.defect_type for s in data.test) == {
        "good": 2,
        "broken_large": 2,
        "contamination": 1,
    }
    for sample in data.test:
        if sample.label == 0:
            assert sample.mask_path is None
        else:
            expected = mvtec_root / "bottle" / "ground_truth" / sample.defect_type
            assert sample.mask_path == expected / f"{sample.path.stem}_mask.png"
            mask = load_mask(sample.mask_path, load_image(sample.path).size)
            assert mask.shape == (32, 32) and mask.sum() == 64


def test_mvtec_knows_all_fifteen_categories(tmp_path):
    assert MVTecAD(tmp_path).categories() == list(MVTEC_CATEGORIES)
    assert len(MVTEC_CATEGORIES) == 15 and "metal_nut" in MVTEC_CATEGORIES


def test_unknown_category_lists_known_names(mvtec_root):
    with pytest.raises(DatasetError, match="'bottel'") as info:
        MVTecAD(mvtec_root).load("bottel")
    assert "bottle" in str(info.value) and "zipper" in str(info.value)
    with pytest.raises(DatasetError, match="zipper"):
        MVTecAD(mvtec_root).resolve_categories("bottel")


def test_all_resolves_to_categories_on_disk(mvtec_root):
    reader = MVTecAD(mvtec_root, "all")
    assert reader.resolve_categories() == ["bottle", "screw"]
    assert reader.resolve_categories("screw") == ["screw"]
    with pytest.raises(DatasetError, match="resolve_categories"):
        reader.load()


def test_known_categories_override(mvtec_root):
    reader = MVTecAD(mvtec_root, known_categories=["screw", "other"])
    assert reader.categories() == ["screw", "other"]
    assert reader.resolve_categories("all") == ["screw"]
    with pytest.raises(DatasetError, match="screw, other"):
        reader.load("bottle")


def test_missing_root_shows_the_layout(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        MVTecAD(root, "bottle").load()
    message = str(info.value)
    assert str(root) in message
    assert "train/good/*.png" in message and "ground_truth/<defect>/<stem>_mask.png" in message
    with pytest.raises(DatasetError, match="expected layout"):
        MVTecAD(root).resolve_categories("all")


def test_category_missing_on_disk(mvtec_root):
    with pytest.raises(DatasetError, match="'cable' not found") as info:
        MVTecAD(mvtec_root, "cable").load()
    assert "expected layout" in str(info.value)


def test_empty_training_pool_names_the_directory(mvtec_root):
    for path in (mvtec_root / "screw" / "train" / "good").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="no training images") as info:
        MVTecAD(mvtec_root, "screw").load()
    assert str(mvtec_root / "screw" / "train" / "good") in str(info.value)


def test_empty_test_set(mvtec_root, write_image):
    write_image(mvtec_root / "empty" / "train" / "good" / "000.png")
    reader = MVTecAD(mvtec_root, known_categories=["empty"])
    with pytest.raises(DatasetError, match="no test images"):
        reader.load("empty")


def test_missing_mask_names_the_expected_path(mvtec_root):
    missing = mvtec_root / "bottle" / "ground_truth" / "contamination" / "000_mask.png"
    missing.unlink()
    with pytest.raises(DatasetError, match="not found") as info:
        MVTecAD(mvtec_root, "bottle").load()
    assert str(missing) in str(info.value)


def test_mask_of_wrong_size_names_both_files(mvtec_root, write_image):
    mask = write_image(
        mvtec_root / "screw" / "ground_truth" / "thread_top" / "000_mask.png",
        np.zeros((16, 20), np.uint8),
    )
    with pytest.raises(DatasetError) as info:
        MVTecAD(mvtec_root, "screw").load()
    message = str(info.value)
    assert str(mask) in message and "20x16" in message
    assert str(mvtec_root / "screw" / "test" / "thread_top" / "000.png") in message
    assert "32x32" in message


# --- BTAD -------------------------------------------------------------------------------


@pytest.mark.parametrize(("category", "ext"), [("01", ".png"), ("03", ".bmp")])
def test_btad_reads_png_and_bmp_masks(btad_root, category, ext):
    data = BTAD(btad_root, category).load()
    assert len(data.train) == 4 and _labels(data.test) == {0: 1, 1: 2}
    defective = [s for s in data.test if s.label == 1]
    assert {s.defect_type for s in defective} == {"ko"}
    for sample in defective:
        assert sample.mask_path == btad_root / category / "ground_truth" / "ko" / (
            sample.path.stem + ext
        )
        assert load_mask(sample.mask_path, (32, 32)).sum() == 64


def test_btad_all_and_missing_mask(btad_root):
    reader = BTAD(btad_root)
    assert reader.categories() == ["01", "02", "03"]
    assert reader.resolve_categories("all") == ["01", "03"]
    (btad_root / "03" / "ground_truth" / "ko" / "0001.bmp").unlink()
    with pytest.raises(DatasetError, match=re.escape("0001.png")):
        reader.load("03")


# --- Magnetic Tile ----------------------------------------------------------------------


def test_magnetic_tile_layout(mtd_root):
    reader = MagneticTile(mtd_root)
    assert reader.categories() == ["magnetic_tile"]
    assert reader.resolve_categories("all") == ["magnetic_tile"]
    data = reader.load()
    assert len(data.train) == 3 and all(s.mask_path is None for s in data.train)
    assert _labels(data.test) == {1: 3}
    assert Counter(s.defect_type for s in data.test) == {"blowhole": 2, "crack": 1}
    for sample in data.test:
        assert sample.path.suffix == ".jpg"
        assert sample.mask_path == sample.path.with_suffix(".png")
        assert load_mask(sample.mask_path, (24, 32)).shape == (32, 24)


def test_magnetic_tile_missing_free_class(mtd_root, tmp_path):
    with pytest.raises(DatasetError, match="MT_Free") as info:
        MagneticTile(tmp_path / "absent").load()
    assert "does not exist" in str(info.value)
    (mtd_root / "MT_Free").rename(mtd_root / "Free")
    with pytest.raises(DatasetError, match="not found"):
        MagneticTile(mtd_root).load()


@pytest.mark.skipif(not MTD_ROOT.is_dir(), reason=f"real MTD not at {MTD_ROOT}")
def test_real_magnetic_tile():
    data = MagneticTile(MTD_ROOT).load()
    assert len(data.train) == 952 and _labels(data.train) == {0: 952}
    assert len(data.test) == 392 and _labels(data.test) == {1: 392}
    assert Counter(s.defect_type for s in data.test) == {
        "blowhole": 115,
        "break": 85,
        "crack": 57,
        "fray": 32,
        "uneven": 103,
    }
    for sample in data.test[::97]:
        image = load_image(sample.path)
        mask = load_mask(sample.mask_path, image.size, image_path=sample.path)
        assert mask.shape == (image.size[1], image.size[0])


# --- User folders -----------------------------------------------------------------------


def test_folder_with_masks(folder_root):
    reader = ImageFolder(folder_root, "parts", mask_dir="masks", mask_suffix="_mask")
    assert reader.categories() == ["parts"]
    data = reader.load()
    assert data.name == "parts" and data.has_masks
    assert len(data.train) == 3 and _labels(data.test) == {1: 2}
    for sample in data.test:
        assert sample.mask_path == folder_root / "masks" / f"{sample.path.stem}_mask.png"
        assert load_mask(sample.mask_path, (32, 32)).sum() == 64


def test_folder_without_masks(folder_root):
    data = ImageFolder(folder_root).load()
    assert data.name == "folder" and not data.has_masks
    assert all(s.mask_path is None for s in data.test) and len(data.test) == 2


def test_folder_errors(folder_root, tmp_path):
    reader = ImageFolder(folder_root, mask_dir="masks")  # no suffix: d0.png is not there
    with pytest.raises(DatasetError, match=re.escape("d0.png")):
        reader.load()
    with pytest.raises(DatasetError, match="no training images") as info:
        ImageFolder(folder_root, good_dir="ok").load()
    assert str(folder_root / "ok") in str(info.value)
    with pytest.raises(DatasetError, match="ok/"):
        ImageFolder(tmp_path / "absent", good_dir="ok").load()
