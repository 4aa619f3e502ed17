"""Reading images and masks from disk into one predictable form: 8-bit RGB images, boolean masks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from foads.data.errors import DatasetError, ImageReadError

if TYPE_CHECKING:
    from foads.data.sample import Sample

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# A mask pixel is a defect when its 8-bit value is above this; MVTec/MTD masks have soft edges.
MASK_THRESHOLD = 127

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")

# Pillow fails in several ways on bad files: OSError (missing, truncated, unidentified),
# SyntaxError (broken PNG chunks), ValueError/EOFError (bad headers), and a bomb guard.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _read_error(path: Path, what: str, exc: BaseException) -> ImageReadError:
    return ImageReadError(
        f"cannot read {what} {path}: expected a readable image file "
        f"({', '.join(IMAGE_EXTENSIONS)}); got {type(exc).__name__}: {exc}"
    )


def _to_8bit(img: Image.Image) -> Image.Image:
    """Bring high-bit-depth single-channel images into 8-bit 'L'; leave other modes alone."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        # Mode "I" is a 32-bit container, but decoders only put 16-bit data in it (16-bit PNG,
        # TIFF), so it is scaled by the uint16 range like the I;16 modes.
        values = np.asarray(img, dtype=np.float64)
        values = np.clip(values, 0, 65535) / 257.0
        return Image.fromarray(np.round(values).astype(np.uint8), mode="L")
    if img.mode == "F":
        values = np.clip(np.asarray(img, dtype=np.float64), 0, 255)
        return Image.fromarray(np.round(values).astype(np.uint8), mode="L")
    return img


def _open_decoded(path: Path, what: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            # Decode now so a truncated or corrupt file fails here, not later in a transform.
            img.load()
            img = _to_8bit(img)
            # Transparent palette images must pass through RGBA; the alpha is then dropped.
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            return img.copy()
    except _DECODE_ERRORS as exc:
        raise _read_error(path, what, exc) from exc


def load_image(path: str | Path) -> Image.Image:
    """Read an image as 8-bit RGB, whatever its mode on disk (grey, alpha, palette, 16-bit)."""
    path = Path(path)
    img = _open_decoded(path, "image")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_mask(
    path: str | Path,
    size: tuple[int, int],
    image_path: str | Path | None = None,
    threshold: int | None = None,
) -> np.ndarray:
    """Read a ground-truth mask as a boolean (H, W) array; a pixel above ``threshold``
    (default ``MASK_THRESHOLD``, 127; 0: any non-zero pixel) is a defect.

    ``size`` is the (W, H) of the image the mask belongs to; a mask of another size is a
    dataset error, since resizing it would silently move the defect.
    """
    path = Path(path)
    img = _open_decoded(path, "mask")
    if img.mode != "L":
        img = img.convert("L")
    if tuple(img.size) != tuple(size):
        of_image = f"its image {image_path}" if image_path is not None else "its image"
        raise DatasetError(
            f"mask {path} is {img.size[0]}x{img.size[1]} (WxH) but {of_image} is "
            f"{size[0]}x{size[1]}; expected a mask of the same size as the image"
        )
    return np.asarray(img) > (MASK_THRESHOLD if threshold is None else threshold)


def check_region(
    region: tuple[int, int, int, int], size: tuple[int, int], path: str | Path
) -> None:
    """Raise a ``DatasetError`` unless ``region`` (left, top, right, bottom) is a non-empty
    box inside an image of ``size`` (W, H); a crop outside the image would be padded silently."""
    left, top, right, bottom = region
    width, height = size
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise DatasetError(
            f"region {tuple(region)} (left, top, right, bottom) of {path} is not inside its "
            f"{width}x{height} (WxH) image; expected 0 <= left < right <= {width} and "
            f"0 <= top < bottom <= {height}"
        )


# An image whose shorter side is below this is upscaled so much that its features mean little.
MIN_IMAGE_SIDE = 32
_warned_small: set = set()


def load_sample_image(sample: Sample) -> Image.Image:
    """A sample's image as 8-bit RGB, cropped to its ``region`` when it has one."""
    img = load_image(sample.path)
    side = min(img.size if sample.region is None else _region_size(sample.region))
    if side < MIN_IMAGE_SIDE and sample.path not in _warned_small:
        _warned_small.add(sample.path)
        log.warning(
            "%s is %dx%d (WxH): smaller than %d px on a side, it is upscaled many times to "
            "the model's input size",
            sample.path,
            *img.size,
            MIN_IMAGE_SIDE,
        )
    if sample.region is None:
        return img
    check_region(sample.region, img.size, sample.path)
    left, top, right, bottom = sample.region
    return img.crop((left, top, right, bottom))


def _region_size(region) -> tuple[int, int]:
    left, top, right, bottom = region
    return (right - left, bottom - top)


def load_sample_mask(sample: Sample) -> np.ndarray:
    """A sample's ground truth as a boolean (H, W) array of its (cropped) image's size.

    Every mask file is checked against the size of the whole image file, thresholded at the
    sample's ``mask_threshold``, then the files are united (a defect may be drawn in several)
    and cropped to ``region``. A sample without a mask gives an all-False array.
    """
    region = sample.region
    paths = sample.mask_paths()
    if not paths and region is not None:
        left, top, right, bottom = region
        return np.zeros((bottom - top, right - left), dtype=bool)
    size = image_size(sample.path)
    if region is not None:
        check_region(region, size, sample.path)
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for path in paths:
        mask |= load_mask(path, size, sample.path, sample.mask_threshold)
    if region is None:
        return mask
    left, top, right, bottom = region
    return mask[top:bottom, left:right].copy()


def find_mask(mask_dir: Path, stem: str, suffix: str = "") -> Path:
    """The mask file of an image stem in a folder: ``<stem><suffix>.png`` preferred, another
    image type accepted; the expected ``.png`` path when there is none (errors name it)."""
    expected = mask_dir / f"{stem}{suffix}.png"
    if expected.is_file():
        return expected
    for ext in IMAGE_EXTENSIONS:
        candidate = mask_dir / f"{stem}{suffix}{ext}"
        if candidate.is_file():
            return candidate
    return expected


def image_size(path: str | Path) -> tuple[int, int]:
    """Return an image's (W, H) from its header alone, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return tuple(img.size)
    except _DECODE_ERRORS as exc:
        raise _read_error(path, "image", exc) from exc


def list_images(directory: str | Path) -> list[Path]:
    """List the image files directly inside a directory, sorted by name; [] if it is absent.

    Hidden files (e.g. macOS ``._name.png`` resource forks) are skipped: they carry an image
    extension but are not images.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.is_file():
            found.append(p)
            continue
        # An image name that is no image file: say so instead of dropping it silently.
        if p.is_symlink():
            try:
                p.resolve(strict=True)
                why = "a link to something that is not a file"
            except RuntimeError:
                why = "a symbolic link loop"
            except OSError:
                why = f"a dangling symbolic link (to {os.readlink(p)})"
        elif p.is_dir():
            why = "a folder"
        else:
            why = "not a regular file"
        log.warning("skipped %s: %s, not an image file", p, why)
    return found
