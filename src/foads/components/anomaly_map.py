"""Turns patch-score grids into smoothed, image-sized anomaly maps.

The smoothing is scipy.ndimage.gaussian_filter(map, sigma, mode="reflect", truncate=4.0),
the filter the original PaDiM, SPADE and PatchCore code and the K-NG authors apply, done
in torch (separable, on the map's device and dtype). `map_smoothing` selects, for every
method at once, the filter that earlier versions of this code used instead (torchvision's
gaussian_blur: the same kernel, but its border mirrors about the edge pixel, so values
within 4 sigma of a border differ), so that the effect can be measured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

# scipy: half-sample symmetric border (d c b a | a b c d | d c b a), as the original methods;
# torchvision: whole-sample symmetric border (d c b | a b c d | c b a), the former behaviour.
MAP_SMOOTHING = ("scipy", "torchvision")
TRUNCATE = 4.0  # kernel radius in sigmas, scipy's default

_current = "scipy"


@contextlib.contextmanager
def map_smoothing(name: str) -> Iterator[None]:
    """Within the block, `smooth_anomaly_map` smooths with `name` (one of MAP_SMOOTHING);
    a run sets it from `protocol.map_smoothing` for every method it runs."""
    global _current
    check_map_smoothing(name)
    previous, _current = _current, name
    try:
        yield
    finally:
        _current = previous


def check_map_smoothing(name) -> None:
    if name not in MAP_SMOOTHING:
        raise ValueError(f"protocol.map_smoothing must be one of {MAP_SMOOTHING}, got {name!r}")


def smooth_anomaly_map(
    patch_scores: torch.Tensor,
    size: tuple[int, int],
    sigma: float = 4.0,
    smoothing: str | None = None,
) -> torch.Tensor:
    """(B, h, w) patch scores -> (B, H, W): bilinear upsampling, then a Gaussian of `sigma` px.

    `smoothing` (None: the current `map_smoothing`, "scipy" unless a run says otherwise)
    picks the border handling; the kernel spans int(4 sigma + 0.5) px each side either way.
    """
    smoothing = _current if smoothing is None else smoothing
    check_map_smoothing(smoothing)
    maps = F.interpolate(patch_scores[:, None], size=size, mode="bilinear", align_corners=False)
    if sigma > 0:
        if smoothing == "scipy":
            return gaussian_filter(maps[:, 0], sigma)
        radius = int(TRUNCATE * sigma + 0.5)
        maps = gaussian_blur(maps, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])
    return maps[:, 0]


def gaussian_filter(maps: torch.Tensor, sigma: float, truncate: float = TRUNCATE) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=truncate) of each
    (H, W) map of `maps` (B, H, W), in the maps' dtype and on their device.

    Borders are half-sample symmetric and, as in scipy, keep reflecting when the kernel is
    wider than the map (the extension is periodic with period 2n).
    """
    if sigma <= 0:
        return maps
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    kernel = (kernel / kernel.sum()).to(device=maps.device, dtype=maps.dtype)
    out = _correlate_last(maps, kernel)  # along W
    return _correlate_last(out.transpose(-1, -2), kernel).transpose(-1, -2)  # along H


def _reflect_index(n: int, radius: int, device) -> torch.Tensor:
    """Source index of each of the n + 2 radius samples of a half-sample-symmetric extension."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _correlate_last(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate the last dimension of (B, H, W) with a symmetric 1-D kernel, reflected."""
    b, h, w = maps.shape
    radius = (kernel.numel() - 1) // 2
    padded = maps.index_select(-1, _reflect_index(w, radius, maps.device))
    out = F.conv1d(padded.reshape(b * h, 1, -1), kernel.view(1, 1, -1))
    return out.view(b, h, w)
