"""A deterministic synthetic industrial-texture dataset, written in the MVTec AD layout.

Good images are random crops of scikit-image's bundled texture photographs (brick, grass,
gravel), tinted per category. Defective images are good images with one drawn defect and its
exact binary mask: a ``scratch``, a ``hole``, a ``stain`` or a ``patch`` of another texture.
The dataset lets the whole pipeline run, and be tested, without downloading anything.
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw

from foads.data.errors import DatasetError
from foads.data.mvtec import MVTecAD

SYNTHETIC_CATEGORIES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "hole", "stain", "patch")
PARAMS_FILE = "synthetic.json"
# Bump when the drawing changes, so an old dataset on disk is regenerated, not reused.
GENERATOR_VERSION = 2  # bump whenever the drawn images change

# Per-category RGB tint of the grey photograph; distinct so a pasted patch stands out.
_TINTS = {
    "brick": (1.10, 0.82, 0.68),
    "grass": (0.78, 1.08, 0.70),
    "gravel": (0.92, 0.95, 1.10),
}
_STAIN_COLOURS = (
    (0.55, 0.22, 0.05),  # rust
    (0.05, 0.05, 0.12),  # oil
    (0.95, 0.85, 0.15),  # yellow residue
    (0.15, 0.55, 0.95),  # blue coolant
)
# Default range of the opacity with which a drawn defect is blended into the good image.
DEFECT_STRENGTH = (0.5, 1.0)
# Fast zlib level: the PNGs are rewritten often by tests and the bytes stay deterministic.
_PNG_COMPRESS_LEVEL = 1


@cache
def _texture(name: str, side: int) -> np.ndarray:
    """The grey texture photograph of a category in [0, 1], resized to ``side`` x ``side``."""
    image = Image.fromarray(getattr(skimage.data, name)())
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    texture = np.asarray(image, dtype=np.float32) / 255.0
    texture.setflags(write=False)
    return texture


def _render(name: str, rng: np.random.Generator, size: int, variation: float = 1.0) -> np.ndarray:
    """A good image: a random view of the category's texture under a random nuisance.

    Good parts vary in ways ten shots cannot cover (zoom, orientation, illumination
    gradient), as parts on a line do; `variation` scales that nuisance (0: only the crop
    position and a flip change).
    """
    # The texture is twice the crop, so a crop shows the same share of it at any image size.
    texture = _texture(name, 2 * size)
    zoom = float(np.exp(variation * rng.uniform(np.log(0.6), np.log(1.6))))
    side = min(texture.shape[0], max(8, round(size / zoom)))
    top, left = rng.integers(0, texture.shape[0] - side + 1, size=2)
    crop = texture[top : top + side, left : left + side]
    if side != size:
        crop = np.asarray(
            Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR), np.float32
        )
    if rng.random() < variation:
        crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    ys, xs = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs + np.sin(angle) * ys) / size - 0.5 * (np.cos(angle) + np.sin(angle))
    gain = 1.0 + variation * rng.uniform(-0.15, 0.15)
    light = gain * (1.0 + variation * rng.uniform(0.0, 0.35) * ramp)
    rgb = crop[:, :, None] * np.asarray(_TINTS[name], dtype=np.float32)[None, None, :]
    return np.clip(rgb * light[:, :, None], 0.0, 1.0).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return ys, xs


def _ellipse_radius(
    size: int, cy: float, cx: float, ry: float, rx: float, angle: float
) -> np.ndarray:
    """Normalised elliptical radius of every pixel: < 1 inside the ellipse."""
    ys, xs = _grid(size)
    dy, dx = ys - cy, xs - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dx * cos + dy * sin) / rx
    v = (-dx * sin + dy * cos) / ry
    return np.sqrt(u * u + v * v)


def _scratch(image: np.ndarray, rng: np.random.Generator, name: str):
    """A long thin bright or dark curve (a quadratic Bezier), a few pixels wide."""
    size = image.shape[0]
    start = rng.uniform(0.15, 0.85, size=2) * size
    direction = rng.uniform(0, 2 * np.pi)
    step = rng.uniform(0.45, 0.7) * size * np.array([np.cos(direction), np.sin(direction)])
    # Head towards the image centre, so the scratch stays long instead of being clipped.
    if np.dot(step, size / 2 - start) < 0:
        step = -step
    end = np.clip(start + step, 0.05 * size, 0.95 * size)
    bend = (start + end) / 2 + rng.normal(0, 0.12 * size, size=2)
    t = np.linspace(0.0, 1.0, 64)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
    width = max(2, round(size * float(rng.uniform(0.014, 0.022))))
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).line([tuple(p) for p in points], fill=255, width=width, joint="curve")
    mask = np.asarray(canvas) > 0
    value = 0.97 if rng.random() < 0.5 else 0.03
    out = image.copy()
    out[mask] = value
    return out, mask


def _hole(image: np.ndarray, rng: np.random.Generator, name: str):
    """A dark filled ellipse, darkest at its centre, like a pit or a missing chip."""
    size = image.shape[0]
    ry, rx = rng.uniform(0.07, 0.13, size=2) * size
    cy, cx = rng.uniform(0.2, 0.8, size=2) * size
    radius = _ellipse_radius(size, cy, cx, ry, rx, rng.uniform(0, np.pi))
    mask = radius < 1.0
    shade = 0.02 + 0.22 * np.clip(radius, 0, 1) ** 2
    out = image.copy()
    # A trace of the texture survives inside, so the hole is not a flat sticker.
    out[mask] = shade[mask, None] + 0.1 * image[mask]
    return out, mask


def _stain(image: np.ndarray, rng: np.random.Generator, name: str):
    """An irregular coloured blob (a union of ellipses) that strongly changes intensity."""
    size = image.shape[0]
    cy, cx = rng.uniform(0.25, 0.75, size=2) * size
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(3, 6))):
        oy, ox = rng.normal(0, 0.06 * size, size=2)
        ry, rx = rng.uniform(0.05, 0.1, size=2) * size
        mask |= _ellipse_radius(size, cy + oy, cx + ox, ry, rx, rng.uniform(0, np.pi)) < 1.0
    colour = np.asarray(_STAIN_COLOURS[rng.integers(len(_STAIN_COLOURS))], dtype=np.float32)
    grey = image[mask].mean(axis=1, keepdims=True)
    out = image.copy()
    out[mask] = 0.15 * image[mask] + 0.85 * colour * (0.7 + 0.6 * grey)
    return np.clip(out, 0.0, 1.0), mask


def _patch(image: np.ndarray, rng: np.random.Generator, name: str):
    """A rounded region pasted from another category's texture, in that category's tint."""
    size = image.shape[0]
    others = [c for c in SYNTHETIC_CATEGORIES if c != name]
    source = _render(others[rng.integers(len(others))], rng, size)
    ry, rx = rng.uniform(0.1, 0.18, size=2) * size
    cy, cx = rng.uniform(0.25, 0.75, size=2) * size
    mask = _ellipse_radius(size, cy, cx, ry, rx, rng.uniform(0, np.pi)) < 1.0
    out = image.copy()
    out[mask] = source[mask]
    return out, mask


_DRAWERS = {"scratch": _scratch, "hole": _hole, "stain": _stain, "patch": _patch}


def draw_defect(
    image: np.ndarray,
    defect: str,
    rng: np.random.Generator,
    name: str,
    strength: tuple[float, float] = DEFECT_STRENGTH,
):
    """Draw one defect on a float RGB image in [0, 1]; return (new image, boolean mask).

    Only pixels inside the mask change, so the mask is exact. The drawn defect is blended
    in at a random opacity within `strength`, so some defects are faint, as real ones are.
    """
    drawn, mask = _DRAWERS[defect](image, rng, name)
    opacity = np.float32(rng.uniform(*strength))
    return image + opacity * (drawn - image), mask


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(array).save(path, compress_level=_PNG_COMPRESS_LEVEL)


def _category_rng(seed: int, name: str) -> np.random.Generator:
    # Seeded per category, so a category's images do not depend on which others are made.
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _write_category(root: Path, name: str, params: dict) -> None:
    rng = _category_rng(params["seed"], name)
    size = params["image_size"]
    category_dir = root / name
    for i in range(params["num_train"]):
        _save(
            _render(name, rng, size, params["variation"]),
            category_dir / "train" / "good" / f"{i:03d}.png",
        )
    for i in range(params["num_test_good"]):
        _save(
            _render(name, rng, size, params["variation"]),
            category_dir / "test" / "good" / f"{i:03d}.png",
        )
    counts = dict.fromkeys(DEFECT_TYPES, 0)
    for i in range(params["num_test_defect"]):
        defect = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        image, mask = draw_defect(
            _render(name, rng, size, params["variation"]),
            defect,
            rng,
            name,
            tuple(params["defect_strength"]),
        )
        stem = f"{counts[defect]:03d}"
        counts[defect] += 1
        _save(image, category_dir / "test" / defect / f"{stem}.png")
        _save(
            mask.astype(np.uint8) * 255, category_dir / "ground_truth" / defect / f"{stem}_mask.png"
        )


def _read_params(root: Path) -> dict | None:
    path = root / PARAMS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _same_dataset(existing: dict | None, params: dict) -> bool:
    """Whether the dataset on disk was made with these parameters and holds these categories."""
    if existing is None or not existing.get("complete"):
        return False
    keys = (
        "version",
        "seed",
        "image_size",
        "num_train",
        "num_test_good",
        "num_test_defect",
        "defect_strength",
        "variation",
    )
    if any(existing.get(k) != params[k] for k in keys):
        return False
    return set(params["categories"]) <= set(existing.get("categories", []))


def generate_synthetic(
    root: str | Path,
    categories: Sequence[str] = SYNTHETIC_CATEGORIES,
    seed: int = 0,
    image_size: int = 256,
    num_train: int = 60,
    num_test_good: int = 10,
    num_test_defect: int = 20,
    defect_strength: Sequence[float] = DEFECT_STRENGTH,
    variation: float = 0.6,
) -> Path:
    """Write the synthetic dataset under ``root`` in the MVTec AD layout and return ``root``.

    Deterministic: the same arguments give the same bytes. ``<root>/synthetic.json`` records
    the arguments; if it matches, nothing is regenerated. Otherwise only the category folders
    that an earlier generation recorded there are removed before writing. Defect types cycle
    through ``DEFECT_TYPES`` so each gets an equal share of the defective images.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError(
            f"dataset.root={root} is a file; expected a folder to generate the synthetic "
            "dataset in (or one that holds it)"
        )
    categories = list(categories)
    unknown = [c for c in categories if c not in SYNTHETIC_CATEGORIES]
    if unknown:
        raise DatasetError(
            f"unknown synthetic categories {unknown}; expected some of {list(SYNTHETIC_CATEGORIES)}"
        )
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    params = {
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "num_train": int(num_train),
        "num_test_good": int(num_test_good),
        "num_test_defect": int(num_test_defect),
        "defect_strength": [float(v) for v in defect_strength],
        "variation": float(variation),
        "categories": categories,
    }
    existing = _read_params(root)
    if _same_dataset(existing, params) and all((root / c).is_dir() for c in categories):
        return root
    made_before = existing.get("categories", []) if existing else []
    for name in made_before:
        if name in SYNTHETIC_CATEGORIES:
            shutil.rmtree(root / name, ignore_errors=True)
    foreign = [c for c in categories if (root / c).exists()]
    if foreign:
        # Not recorded in synthetic.json, so not ours: never overwrite someone's data.
        raise DatasetError(
            f"{root / foreign[0]} exists but was not generated here (no matching {PARAMS_FILE} "
            f"in {root}); expected an empty folder or one made by generate_synthetic"
        )
    root.mkdir(parents=True, exist_ok=True)
    params_path = root / PARAMS_FILE
    # Recorded before writing, so an interrupted run's folders are known to be ours next time.
    params_path.write_text(json.dumps({**params, "complete": False}, indent=2) + "\n")
    for name in categories:
        _write_category(root, name, params)
    params_path.write_text(json.dumps({**params, "complete": True}, indent=2) + "\n")
    return root


class Synthetic(MVTecAD):
    """Reader of the synthetic textures: generates them under ``root`` once, reads as MVTec AD."""

    def __init__(
        self,
        root: str | Path,
        category: str = "brick",
        seed: int = 0,
        image_size: int = 256,
        num_train: int = 60,
        num_test_good: int = 10,
        num_test_defect: int = 20,
        defect_strength: Sequence[float] = DEFECT_STRENGTH,
        variation: float = 0.6,
    ) -> None:
        super().__init__(root, category, known_categories=SYNTHETIC_CATEGORIES)
        generate_synthetic(
            root,
            SYNTHETIC_CATEGORIES,
            seed=seed,
            image_size=image_size,
            num_train=num_train,
            num_test_good=num_test_good,
            num_test_defect=num_test_defect,
            defect_strength=defect_strength,
            variation=variation,
        )
