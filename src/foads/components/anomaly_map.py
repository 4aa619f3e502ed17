"""Turns patch-score grids into smoothed, image-sized anomaly maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur


def smooth_anomaly_map(
    patch_scores: torch.Tensor, size: tuple[int, int], sigma: float = 4.0
) -> torch.Tensor:
    """(B, h, w) patch scores -> (B, H, W): bilinear upsampling, then a Gaussian of `sigma` px.

    The kernel spans 4 sigma each side, as scipy.ndimage.gaussian_filter does by default.
    """
    maps = F.interpolate(patch_scores[:, None], size=size, mode="bilinear", align_corners=False)
    if sigma > 0:
        radius = int(4.0 * sigma + 0.5)
        maps = gaussian_blur(maps, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])
    return maps[:, 0]
