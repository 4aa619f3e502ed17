"""Reading images and masks from disk into one predictable form: 8-bit RGB images, boolean masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from foads.data.errors import DatasetError, ImageReadError

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
    path: str | Path, size: tuple[int, int], image_path: str | Path | None = None
) -> np.ndarray:
    """Read a ground-truth mask as a boolean (H, W) array; a pixel above 127 is a defect.

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
    return np.asarray(img) > MASK_THRESHOLD


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
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
