"""Samples that are tiles of their file, and masks made of several files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from foads.data import (
    BTAD,
    CategoryData,
    DatasetError,
    ImageFolder,
    MagneticTile,
    MVTecAD,
    Sample,
    load_image,
    load_mask,
    load_sample_image,
    load_sample_mask,
    validate_category,
)
from foads.protocol.stream import ImageSequence

PIXELS = np.random.default_rng(0).integers(0, 256, (32, 96, 3), dtype=np.uint8)


@pytest.fixture
def two_masks(tmp_path: Path, write_image) -> tuple[Path, Path, Path]:
    """A 96 x 32 RGB image of random pixels and two masks: columns 10-19 of every row in
    the first, rows 5-8 of columns 70-79 in the second."""
    first = np.zeros((32, 96), np.uint8)
    first[:, 10:20] = 255
    second = np.zeros((32, 96), np.uint8)
    second[5:9, 70:80] = 200
    return (
        write_image(tmp_path / "img.png", PIXELS),
        write_image(tmp_path / "m1.png", first),
        write_image(tmp_path / "m2.png", second),
    )


def test_sample_keeps_its_old_constructor():
    sample = Sample(Path("a.png"), 1, Path("m.png"), "crack")
    assert sample.region is None and sample.mask_paths() == (Path("m.png"),)
    assert Sample(Path("a.png"), 0).mask_paths() == ()
    assert Sample(Path("a"), 1, (Path("m1"), Path("m2"))).mask_paths() == (Path("m1"), Path("m2"))


def test_a_region_crops_the_image(two_masks):
    image, *_ = two_masks
    tile = load_sample_image(Sample(image, 0, region=(32, 0, 64, 32)))
    assert tile.mode == "RGB" and tile.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(tile), PIXELS[:, 32:64])
    whole = load_sample_image(Sample(image, 0))
    np.testing.assert_array_equal(np.asarray(whole), PIXELS)


def test_a_mask_of_several_files_is_their_union_cropped_to_the_region(two_masks):
    image, first, second = two_masks
    union = load_sample_mask(Sample(image, 1, (first, second)))
    expected = np.zeros((32, 96), bool)
    expected[:, 10:20] = True
    expected[5:9, 70:80] = True
    np.testing.assert_array_equal(union, expected)
    tile = load_sample_mask(Sample(image, 1, (first, second), region=(64, 0, 96, 32)))
    np.testing.assert_array_equal(tile, expected[:, 64:96])
    assert tile.sum() == 4 * 10
    only_first = load_sample_mask(Sample(image, 1, first, region=(0, 16, 32, 32)))
    np.testing.assert_array_equal(only_first, expected[16:32, 0:32])


def test_a_sample_without_a_mask_has_an_empty_one_of_its_size(two_masks):
    image, *_ = two_masks
    whole = load_sample_mask(Sample(image, 0))
    assert whole.shape == (32, 96) and whole.dtype == bool and not whole.any()
    tile = load_sample_mask(Sample(image, 0, region=(10, 2, 40, 22)))
    assert tile.shape == (20, 30) and not tile.any()


def test_each_mask_file_is_checked_against_the_whole_image(two_masks, write_image, tmp_path):
    image, first, _ = two_masks
    small = write_image(tmp_path / "small.png", np.zeros((32, 32), np.uint8))
    # The tile is 32 x 32 like the mask, but the mask belongs to the 96 x 32 file.
    with pytest.raises(DatasetError, match=re.escape("small.png is 32x32")) as info:
        load_sample_mask(Sample(image, 1, (first, small), region=(0, 0, 32, 32)))
    assert "img.png is 96x32" in str(info.value)


def test_a_region_outside_the_image_is_an_error(two_masks):
    image, first, _ = two_masks
    with pytest.raises(DatasetError, match=r"region \(64, 0, 128, 32\) .* of .*img.png"):
        load_sample_image(Sample(image, 0, region=(64, 0, 128, 32)))
    with pytest.raises(DatasetError, match="not inside its 96x32"):
        load_sample_mask(Sample(image, 1, first, region=(0, 0, 32, 64)))


def test_validation_checks_every_file_of_a_mask_tuple(two_masks, tmp_path, write_image):
    image, first, second = two_masks
    good = Sample(image, 0, region=(0, 0, 32, 32))

    def category(*test):
        return CategoryData("c", [good], list(test), root=tmp_path)

    validate_category(category(Sample(image, 1, (first, second), "x", (32, 0, 64, 32))))
    missing = tmp_path / "m3.png"
    with pytest.raises(DatasetError, match=r"expected .*m3\.png"):
        validate_category(category(Sample(image, 1, (first, missing), "x")))
    wrong = write_image(tmp_path / "wrong.png", np.zeros((32, 64), np.uint8))
    with pytest.raises(DatasetError, match=re.escape("wrong.png is 64x32")):
        validate_category(category(Sample(image, 1, (first, wrong), "x")))
    with pytest.raises(DatasetError, match="not inside"):
        validate_category(category(Sample(image, 0, region=(90, 0, 100, 10))))


def test_the_stream_reads_tiles(two_masks):
    image, *_ = two_masks
    samples = [Sample(image, 0, region=(left, 0, left + 32, 32)) for left in (0, 32, 64)]
    items = ImageSequence(samples, lambda img: np.asarray(img))
    for i, left in enumerate((0, 32, 64)):
        np.testing.assert_array_equal(items[i]["image"], PIXELS[:, left : left + 32])


@pytest.mark.parametrize(
    ("make_reader", "root_fixture"),
    [
        (lambda root: MVTecAD(root, "bottle"), "mvtec_root"),
        (lambda root: BTAD(root, "03"), "btad_root"),
        (MagneticTile, "mtd_root"),
        (lambda root: ImageFolder(root, mask_dir="masks", mask_suffix="_mask"), "folder_root"),
    ],
)
def test_existing_readers_read_the_same_through_the_sample_loaders(
    request, make_reader, root_fixture
):
    data = make_reader(request.getfixturevalue(root_fixture)).load()
    for sample in data.train + data.test:
        assert sample.region is None
        image = load_image(sample.path)
        np.testing.assert_array_equal(np.asarray(load_sample_image(sample)), np.asarray(image))
        expected = (
            np.zeros((image.size[1], image.size[0]), bool)
            if sample.mask_path is None
            else load_mask(sample.mask_path, image.size)
        )
        np.testing.assert_array_equal(load_sample_mask(sample), expected)
