"""Drift scenarios: the stream's good appearance moves, as on a factory line (docs/drift.md).

The protocol applies a `Drift` to every stream image (never to the shots) by its position in
the stream, after the resize and crop, and moves the ground-truth mask with the image where
the drift is geometric. A method never knows: it only sees the drifted images. Each scenario
has a level per stream position, 0 to 1 (a ramp, a step, an alternation), and one strength;
the appearance at level L and strength s is a function of s * L only, and s * L = 0 gives
the image back untouched, so strength 0 is the undrifted protocol exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from foads.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalise

# none: the paper's protocol. Ramps over the whole stream: illumination (lamp ageing: darker,
# lower contrast), colour (colour temperature: warmer), defocus (blur), geometry (shift,
# rotation, zoom). A step: abrupt (a new batch of material from change_at on: another
# photometric setting and a fine texture). Recurring: alternating (the same two appearances
# as abrupt, switching every period images).
SCENARIOS = ("none", "illumination", "colour", "defocus", "geometry", "abrupt", "alternating")
RAMPS = ("illumination", "colour", "defocus", "geometry")


class Drift:
    """Level per stream position and the appearance at that level, for one scenario.

    `strength` scales the change (1 = the moderate setting documented per scenario);
    `change_at` (share of the stream) places the abrupt step; `period` (images) is the
    alternation's half cycle; `seed` fixes the geometric direction and the new batch's
    texture, so the same seed gives the same stream.
    """

    def __init__(
        self,
        name: str = "none",
        strength: float = 1.0,
        change_at: float = 0.5,
        period: int = 50,
        seed: int = 0,
    ) -> None:
        if name not in SCENARIOS:
            raise ValueError(f"protocol.drift.name must be one of {SCENARIOS}, got {name!r}")
        if not strength >= 0:
            raise ValueError(f"protocol.drift.strength must be >= 0, got {strength}")
        if not 0.0 <= change_at <= 1.0:
            raise ValueError(f"protocol.drift.change_at must lie in [0, 1], got {change_at}")
        if int(period) < 1:
            raise ValueError(f"protocol.drift.period must be at least 1 image, got {period}")
        self.name = name
        self.strength = float(strength)
        self.change_at = float(change_at)
        self.period = int(period)
        self.seed = int(seed)
        generator = torch.Generator().manual_seed(self.seed)
        self._direction = float(torch.rand((), generator=generator)) * 2 * math.pi
        self._texture_seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))

    @property
    def active(self) -> bool:
        return self.name != "none" and self.strength > 0

    def describe(self) -> dict:
        """What identifies the drifted stream (for checkpoints and summaries)."""
        return {
            "name": self.name,
            "strength": self.strength,
            "change_at": self.change_at,
            "period": self.period,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ levels
    def level(self, position: int, length: int) -> float:
        """The drift level, 0 to 1, of the stream image at `position` of `length`."""
        if self.name == "none":
            return 0.0
        if self.name in RAMPS:
            return position / (length - 1) if length > 1 else 0.0
        if self.name == "abrupt":
            return 1.0 if position >= self.change_at * length else 0.0
        return float((position // self.period) % 2)  # alternating

    def amount(self, position: int, length: int) -> float:
        """strength x level: what the appearance depends on (0 = untouched)."""
        return 0.0 if not self.active else self.strength * self.level(position, length)

    # ------------------------------------------------------------------ appearance
    def image(self, image: torch.Tensor, amount: float) -> torch.Tensor:
        """The drifted version of an ImageNet-normalised (3, H, W) image at `amount`."""
        if amount == 0:
            return image
        x = self._appearance(denormalise(image), amount).clamp(0.0, 1.0)
        return TF.normalize(x, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))

    def mask(self, mask: torch.Tensor, amount: float) -> torch.Tensor:
        """The ground truth (H, W) bool moved with its image (only geometry moves it)."""
        if amount == 0 or self.name != "geometry":
            return mask
        moved = self._warp(mask[None].float(), amount, mode="nearest")
        return moved[0] > 0.5

    def _appearance(self, x: torch.Tensor, a: float) -> torch.Tensor:
        if self.name == "illumination":
            # At a = 1: gamma 1.6 and gain 0.75 (midtones about 40% darker).
            return x.pow(1.0 + 0.6 * a) * (1.0 - 0.25 * a)
        if self.name == "colour":
            # At a = 1: red +20%, blue -20% (a warmer lamp).
            return x * torch.tensor([1.0 + 0.2 * a, 1.0, 1.0 - 0.2 * a]).view(3, 1, 1)
        if self.name == "defocus":
            return _gaussian_blur(x, 1.5 * a)  # at a = 1: sigma 1.5 px of the model's input
        if self.name == "geometry":
            return self._warp(x, a, mode="bilinear")
        return self._new_batch(x, a)  # abrupt, alternating

    def _new_batch(self, x: torch.Tensor, a: float) -> torch.Tensor:
        """Another material batch: cooler, higher-contrast light and a fine grain that every
        image of the batch shares (at a = 1: gamma 0.75, blue +12%, grain of std 0.05)."""
        x = x.pow(1.0 / (1.0 + 0.33 * a))
        x = x * torch.tensor([1.0 - 0.12 * a, 1.0, 1.0 + 0.12 * a]).view(3, 1, 1)
        return x + 0.05 * a * self._grain(x.shape[-2:]).to(x)

    def _grain(self, size: tuple[int, ...]) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self._texture_seed)
        noise = torch.randn(1, *size, generator=generator)
        grain = _gaussian_blur(noise, 1.0)
        return grain / grain.std().clamp_min(1e-8)

    def _warp(self, x: torch.Tensor, a: float, mode: str) -> torch.Tensor:
        """Rotate by 5 a degrees, zoom in by 1 + 0.06 a and shift by 4 a % of the side in
        the seed's direction; edges reflect (no black corners that would look like defects)."""
        angle = math.radians(5.0 * a)
        scale = 1.0 + 0.06 * a
        shift = 0.08 * a  # in normalised coordinates (-1..1): 4% of the side
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor(
            [
                [cos, -sin, shift * math.cos(self._direction)],
                [sin, cos, shift * math.sin(self._direction)],
            ],
            dtype=x.dtype,
        )[None]
        grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
        return F.grid_sample(
            x[None], grid, mode=mode, padding_mode="reflection", align_corners=False
        )[0]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (C, H, W) tensor, edges reflected."""
    if sigma <= 0:
        return x
    radius = max(1, min(math.ceil(3 * sigma), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[0]
    y = F.pad(x[None], (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]
