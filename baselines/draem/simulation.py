"""DRAEM's simulated anomalies: Perlin-noise masks filled with texture from an anomaly source.

DRAEM pastes augmented DTD textures into normal images inside thresholded Perlin noise. DTD
cannot be downloaded here, so the default sources are made from what the method has: the
shot images themselves (shifted, flipped, recoloured) and generated patterns (coloured Perlin
noise, stripes, checkerboards). `anomaly_source_dir` takes a folder of images such as DTD.
All randomness comes from one `torch.Generator`, so a run is repeatable and resumable.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from foads.data.images import IMAGE_EXTENSIONS, load_image

SOURCES = ("mixed", "shots", "patterns", "dir")


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high)."""
    return int(torch.randint(low, high, (), generator=g))


def perlin_noise(size: int, res: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """(size, size) gradient noise with res[0] x res[1] lattice cells, values in about [-1, 1]."""
    angles = 2 * math.pi * torch.rand(res[0] + 1, res[1] + 1, generator=g)
    grads = torch.stack([angles.cos(), angles.sin()], dim=-1)
    pos = [torch.arange(size) * (r / size) for r in res]
    cell = [p.floor().long() for p in pos]
    frac = [p - c for p, c in zip(pos, cell, strict=True)]
    fy, fx = frac[0][:, None].expand(size, size), frac[1][None, :].expand(size, size)
    cy, cx = cell[0][:, None].expand(size, size), cell[1][None, :].expand(size, size)

    def corner(dy: int, dx: int) -> torch.Tensor:
        g_ = grads[cy + dy, cx + dx]
        return g_[..., 0] * (fy - dy) + g_[..., 1] * (fx - dx)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    ty, tx = fade(fy), fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), tx)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), tx)
    return math.sqrt(2) * torch.lerp(top, bottom, ty)


def perlin_mask(size: int, g: torch.Generator, max_scale: int = 6) -> torch.Tensor:
    """(size, size) float {0, 1}: Perlin noise of random scales 2^0..2^(max_scale-1) per axis,
    rotated by up to 90 degrees, thresholded at 0.5 (DRAEM's recipe)."""
    res = (2 ** _randint(g, 0, max_scale), 2 ** _randint(g, 0, max_scale))
    noise = perlin_noise(size, res, g)
    noise = TF.rotate(noise[None], _uniform(g, -90, 90), InterpolationMode.BILINEAR)[0]
    return (noise > 0.5).float()


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Three of DRAEM's photometric augmentations, drawn at random, on a (3, H, W) [0, 1] image."""
    ops = [
        lambda t: TF.adjust_gamma(t, _uniform(g, 0.5, 2.0)),
        lambda t: (t * _uniform(g, 0.8, 1.2) + _uniform(g, -0.12, 0.12)).clamp(0, 1),
        lambda t: TF.adjust_sharpness(t, _uniform(g, 0.0, 2.0)),
        lambda t: TF.adjust_hue(
            TF.adjust_saturation(t, _uniform(g, 0.5, 1.5)), _uniform(g, -0.2, 0.2)
        ),
        lambda t: TF.solarize(t, _uniform(g, 0.5, 1.0)),
        lambda t: TF.to_dtype(
            TF.posterize(TF.to_dtype(t, torch.uint8, scale=True), _randint(g, 2, 5)),
            torch.float32,
            scale=True,
        ),
        lambda t: TF.invert(t),
        lambda t: TF.autocontrast(t),
        lambda t: TF.to_dtype(
            TF.equalize(TF.to_dtype(t, torch.uint8, scale=True)), torch.float32, scale=True
        ),
        lambda t: TF.rotate(t, _uniform(g, -45, 45), InterpolationMode.BILINEAR),
    ]
    for i in torch.randperm(len(ops), generator=g)[:3].tolist():
        x = ops[i](x)
    return x.clamp(0, 1)


def generated_pattern(size: int, g: torch.Generator) -> torch.Tensor:
    """(3, size, size) texture made here: coloured Perlin noise, stripes or a checkerboard."""
    kind = _randint(g, 0, 3)
    if kind == 0:
        scale = 2 ** _randint(g, 1, 6)
        return torch.stack([perlin_noise(size, (scale, scale), g) for _ in range(3)]).add(1).div(2)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    angle = _uniform(g, 0, math.pi)
    period = _uniform(g, 4, size / 4)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / period
    if kind == 1:
        wave = (torch.sin(2 * math.pi * u) > 0).float()
    else:
        v = (-xx * math.sin(angle) + yy * math.cos(angle)) / period
        wave = ((u.floor() + v.floor()) % 2).float()
    colours = torch.rand(2, 3, 1, 1, generator=g)
    return colours[0] * wave + colours[1] * (1 - wave)


class AnomalySource:
    """Where the texture of a simulated anomaly comes from.

    `kind`: "shots" (an augmented, shifted and flipped normal image), "patterns" (generated
    textures), "mixed" (either, evenly), or "dir" (images of `directory`, e.g. DTD, any depth).
    """

    def __init__(self, kind: str = "mixed", directory: str | Path | None = None) -> None:
        if directory is not None:
            kind = "dir"
        if kind not in SOURCES:
            raise ValueError(f"anomaly_source must be one of {SOURCES}, got {kind!r}")
        self.kind = kind
        self.files: list[Path] = []
        if kind == "dir":
            if directory is None:
                raise ValueError("anomaly_source=dir needs anomaly_source_dir (a folder of images)")
            root = Path(directory)
            if not root.is_dir():
                raise FileNotFoundError(f"anomaly_source_dir {root} is not a folder of images")
            self.files = sorted(
                p
                for p in root.rglob("*")
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not self.files:
                kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise FileNotFoundError(f"anomaly_source_dir {root} holds no images ({kinds})")

    def texture(self, normals: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
        """(3, size, size) texture in [0, 1] on the CPU; `normals` (N, 3, size, size) on the CPU."""
        kind = self.kind
        if kind == "mixed":
            kind = "shots" if _uniform(g) < 0.5 else "patterns"
        if kind == "patterns":
            base = generated_pattern(size, g)
        elif kind == "shots":
            base = normals[_randint(g, 0, normals.shape[0])]
            base = torch.roll(base, (_randint(g, 0, size), _randint(g, 0, size)), dims=(1, 2))
            if _uniform(g) < 0.5:
                base = base.flip(-1)
            if _uniform(g) < 0.5:
                base = base.transpose(-1, -2)
        else:
            path = self.files[_randint(g, 0, len(self.files))]
            image = TF.to_dtype(
                TF.pil_to_tensor(load_image(path).convert("RGB")), torch.float32, scale=True
            )
            base = TF.resize(image, [size, size], antialias=True)
        return _augment(base, g)


def simulate_anomalies(
    images: torch.Tensor, source: AnomalySource, g: torch.Generator, p_anomaly: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """DRAEM's training pairs from normal images (B, 3, S, S) in [0, 1]: (augmented, mask).

    Each image gets, with probability `p_anomaly`, a Perlin-shaped region replaced by the
    source's texture, blended with opacity 1 - beta, beta ~ U(0, 0.8); mask (B, 1, S, S).
    """
    b, _, size, _ = images.shape
    normals = images.detach().cpu()
    masks = torch.zeros(b, 1, size, size)
    textures = torch.zeros(b, 3, size, size)
    betas = torch.zeros(b, 1, 1, 1)
    for i in range(b):  # a handful of images per step; each has its own scales and texture
        if _uniform(g) >= p_anomaly:
            continue
        masks[i, 0] = perlin_mask(size, g)
        textures[i] = source.texture(normals, size, g)
        betas[i] = _uniform(g, 0.0, 0.8)
    masks, textures, betas = (t.to(images.device, images.dtype) for t in (masks, textures, betas))
    augmented = images * (1 - masks) + ((1 - betas) * textures + betas * images) * masks
    return augmented, masks
