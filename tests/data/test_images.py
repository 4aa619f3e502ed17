"""Image and mask reading: mode conversion, thresholds, errors; and the tensor transforms."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from foads.data import (
    DatasetError,
    ImageReadError,
    ImageTransform,
    denormalise,
    image_size,
    list_images,
    load_image,
    load_mask,
)

RGB = np.array([[[10, 20, 30], [200, 100, 50]]], dtype=np.uint8)  # 2x1 image


def _as_array(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert array.dtype == np.uint8 and array.shape[2] == 3
    return array


def test_rgb_image_is_read_unchanged(tmp_path, write_image):
    path = write_image(tmp_path / "rgb.png", RGB)
    np.testing.assert_array_equal(_as_array(load_image(path)), RGB)


def test_grayscale_image_becomes_three_equal_channels(tmp_path, write_image):
    grey = np.array([[0, 77, 255]], dtype=np.uint8)
    path = write_image(tmp_path / "grey.png", grey)
    np.testing.assert_array_equal(_as_array(load_image(path)), np.repeat(grey[..., None], 3, 2))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped(tmp_path, mode):
    rgba = np.concatenate([RGB, np.array([[[0], [128]]], dtype=np.uint8)], axis=2)
    image = Image.fromarray(rgba, "RGBA").convert(mode)
    image.save(tmp_path / "alpha.png")
    expected = (
        RGB if mode == "RGBA" else np.asarray(Image.fromarray(RGB).convert("L").convert("RGB"))
    )
    np.testing.assert_array_equal(_as_array(load_image(tmp_path / "alpha.png")), expected)


def test_palette_image_with_transparency(tmp_path):
    image = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    image.save(tmp_path / "pal.png", transparency=0)
    assert "transparency" in Image.open(tmp_path / "pal.png").info
    np.testing.assert_array_equal(_as_array(load_image(tmp_path / "pal.png")), RGB)


SIXTEEN = np.array([[0, 127 * 257, 128 * 257, 65535]], dtype=np.uint16)
EIGHT = np.array([[0, 127, 128, 255]], dtype=np.uint8)


def _sixteen_bit_files(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "i16.png")  # mode I;16
    Image.frombytes("I;16B", (4, 1), SIXTEEN.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    Image.fromarray(SIXTEEN.astype(np.int32)).save(tmp_path / "i32.tif")  # mode I
    return {"I;16": tmp_path / "i16.png", "I;16B": tmp_path / "b.tif", "I": tmp_path / "i32.tif"}


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_image_is_scaled_to_eight_bit(tmp_path, mode):
    path = _sixteen_bit_files(tmp_path)[mode]
    assert Image.open(path).mode == mode
    np.testing.assert_array_equal(_as_array(load_image(path)), np.repeat(EIGHT[..., None], 3, 2))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_mask_uses_the_scaled_threshold(tmp_path, mode):
    path = _sixteen_bit_files(tmp_path)[mode]
    np.testing.assert_array_equal(load_mask(path, (4, 1)), [[False, False, True, True]])


def test_corrupt_file_names_the_path(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=re.escape("broken.png")) as info:
        load_image(path)
    assert "readable image" in str(info.value)
    assert isinstance(info.value, OSError)


def test_truncated_file_fails_on_load(tmp_path, write_image):
    rng = np.random.default_rng(0)
    full = write_image(tmp_path / "full.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=re.escape("cut.png")):
        load_image(cut)
    with pytest.raises(ImageReadError, match=re.escape("cut.png")):
        load_mask(cut, (64, 64))


def test_missing_file_raises_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match=re.escape("nowhere.png")):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageReadError, match=re.escape("nowhere.png")):
        image_size(tmp_path / "nowhere.png")


def test_soft_mask_is_thresholded_above_127(tmp_path, write_image):
    # Column j holds 8*j: 0..248, so columns 16..31 (128..248) are defect.
    mask = np.tile((np.arange(32) * 8).astype(np.uint8), (32, 1))
    mask[0, 0], mask[0, 1] = 127, 128
    path = write_image(tmp_path / "soft.png", mask)
    result = load_mask(path, (32, 32))
    assert result.dtype == bool and result.shape == (32, 32)
    assert result.sum() == 16 * 32 + 1
    assert not result[0, 0] and result[0, 1]


def test_rgb_mask_is_read_through_grey(tmp_path, write_image):
    mask = np.zeros((4, 6, 3), dtype=np.uint8)
    mask[1:3, 2:5] = 255
    result = load_mask(write_image(tmp_path / "m.png", mask), (6, 4))
    assert result.shape == (4, 6) and result.sum() == 6


def test_mask_of_wrong_size_names_both_sizes(tmp_path, write_image):
    path = write_image(tmp_path / "m.png", np.zeros((10, 20), np.uint8))
    with pytest.raises(DatasetError, match=re.escape("m.png")) as info:
        load_mask(path, (32, 32), image_path=tmp_path / "img.png")
    message = str(info.value)
    assert "20x10" in message and "32x32" in message and "img.png" in message


def test_image_size_reads_width_then_height(tmp_path, write_image):
    assert image_size(write_image(tmp_path / "a.png", size=(40, 24))) == (40, 24)


def test_list_images_filters_and_sorts(tmp_path, write_image):
    for name in ("b.PNG", "a.jpg", "c.tiff", "d.Bmp"):
        write_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._a.png").write_bytes(b"resource fork")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff", "d.Bmp"]
    assert list_images(tmp_path / "missing") == []


def test_transform_shape_and_normalisation():
    colour = (200, 100, 50)
    image = Image.new("RGB", (100, 80), colour)
    tensor = ImageTransform(resize=64, crop=48)(image)
    assert tensor.shape == (3, 48, 48) and tensor.dtype == torch.float32
    back = denormalise(tensor)
    assert back.shape == (3, 48, 48)
    expected = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
    torch.testing.assert_close(back, expected.expand_as(back), atol=1e-5, rtol=0)
    # Red channel: (200/255 - 0.485) / 0.229
    assert tensor[0, 0, 0].item() == pytest.approx((200 / 255 - 0.485) / 0.229, abs=1e-4)


def test_mask_transform_matches_image_geometry():
    half = np.zeros((64, 64), dtype=bool)
    half[:, :32] = True
    transform = ImageTransform(resize=64, crop=48)
    mask = transform.mask(half)
    assert mask.dtype == torch.bool and mask.shape == (48, 48)
    # The centre crop drops 8 columns on the left: columns 0..23 remain defect.
    assert mask[:, :24].all() and not mask[:, 24:].any()
    # Upsampled, the mask still covers exactly the bright half of the image.
    small = ImageTransform(resize=128, crop=96)
    image = Image.fromarray((half * 255).astype(np.uint8)).convert("RGB")
    bright = denormalise(small(image))[0] > 0.5
    assert (bright == small.mask(half)).float().mean() > 0.99


def test_transform_rejects_crop_larger_than_resize():
    with pytest.raises(ValueError, match="crop"):
        ImageTransform(resize=32, crop=64)
