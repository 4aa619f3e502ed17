"""Images with one mask each: the empty masks make the good images, the others the defects."""

from __future__ import annotations

import re

import numpy as np
import pytest

from foads.data import DatasetError, MaskedFolder, load_sample_mask


def test_labels_come_from_the_masks(masked_folder_root):
    data = MaskedFolder(masked_folder_root, "parts").load()
    assert data.name == "parts" and data.has_masks
    root = masked_folder_root
    assert [s.path for s in data.train] == [
        root / "test" / "images" / "e.png",
        root / "train" / "images" / "a.png",
        root / "train" / "images" / "c.png",  # faint mask, all <= 127: good
        root / "train" / "images" / "d.jpg",
    ]
    assert all(s.label == 0 and s.mask_path is None for s in data.train)
    assert [(s.path, s.mask_path, s.label, s.defect_type) for s in data.test] == [
        (root / "test" / "images" / "a.png", root / "test" / "masks" / "a.png", 1, "defect"),
        (root / "train" / "images" / "b.png", root / "train" / "masks" / "b.png", 1, "defect"),
    ]
    assert load_sample_mask(data.test[0]).sum() == 16
    assert data.extra["splits"] == {
        "test": {"good": 1, "defective": 1},
        "train": {"good": 3, "defective": 1},
    }
    assert data.extra["good_images"] == 4 and data.extra["defective_images"] == 2


def test_splits_and_folder_names_are_options(masked_folder_root, tmp_path, write_image):
    data = MaskedFolder(masked_folder_root, splits=["train"]).load()
    assert len(data.train) == 3 and len(data.test) == 1
    assert list(data.extra["splits"]) == ["train"]
    with pytest.raises(DatasetError, match="nowhere/images does not exist"):
        MaskedFolder(masked_folder_root, splits=["nowhere"]).load()
    # No splits: the root itself holds the folders, here under other names and a suffix.
    root = tmp_path / "flat"
    write_image(root / "img" / "x.png")
    write_image(root / "gt" / "x_mask.png", np.zeros((32, 32), np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[0, 0] = 255
    write_image(root / "img" / "y.png")
    write_image(root / "gt" / "y_mask.png", mask)
    flat = MaskedFolder(root, image_dir="img", mask_dir="gt", mask_suffix="_mask").load()
    assert [s.path.name for s in flat.train] == ["x.png"]
    assert [s.mask_path for s in flat.test] == [root / "gt" / "y_mask.png"]
    assert flat.extra["splits"] == {".": {"good": 1, "defective": 1}}


def test_a_missing_mask_names_the_image_and_the_expected_file(masked_folder_root):
    (masked_folder_root / "train" / "masks" / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"mask for .*train/images/c\.png not found") as info:
        MaskedFolder(masked_folder_root).load()
    assert str(masked_folder_root / "train" / "masks" / "c.png") in str(info.value)


def test_a_mask_of_another_size_is_an_error(masked_folder_root, write_image):
    write_image(masked_folder_root / "test" / "masks" / "e.png", np.zeros((16, 32), np.uint8))
    with pytest.raises(DatasetError, match=re.escape("masks/e.png is 32x16")) as info:
        MaskedFolder(masked_folder_root).load()
    assert "images/e.png is 32x32" in str(info.value)


def test_no_defects_or_no_images_are_errors(tmp_path, write_image):
    good_only = tmp_path / "good_only"
    write_image(good_only / "images" / "x.png")
    write_image(good_only / "masks" / "x.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetError, match="no test images"):
        MaskedFolder(good_only).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images/ folder"):
        MaskedFolder(tmp_path / "empty").load()
