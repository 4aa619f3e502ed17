"""DRAEM's two sub-networks (Zavrtanik, Kristan, Skocaj, ICCV 2021), widths configurable.

The reconstructive sub-network is an encoder-decoder without skip connections that learns to
repaint simulated anomalies as normal appearance; the discriminative sub-network is a U-Net
that sees the image beside its reconstruction and outputs an anomaly logit per pixel. With
the published widths (128 and 64) the pair has about 97M parameters (the paper's Table 7 says
93.1M); the CPU default of this project is far narrower.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 convolution, batch norm, ReLU."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _block(c_in: int, c_out: int, c_mid: int | None = None) -> nn.Sequential:
    """Two of `_conv` (DRAEM's unit): c_in -> c_mid -> c_out, c_mid = c_out unless given."""
    c_mid = c_out if c_mid is None else c_mid
    return nn.Sequential(*_conv(c_in, c_mid), *_conv(c_mid, c_out))


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """x2 bilinear upsampling, then one `_conv`."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *_conv(c_in, c_out)
    )


class ReconstructiveSubNetwork(nn.Module):
    """Image (B, 3, H, W) in [0, 1] -> its reconstruction; H and W divisible by 16."""

    def __init__(self, base_width: int = 128) -> None:
        super().__init__()
        w = base_width
        widths = [w, 2 * w, 4 * w, 8 * w, 8 * w]
        self.encoder = nn.ModuleList(
            _block(c_in, c_out) for c_in, c_out in zip([3, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        # Decoder stages from 8w channels: upsample, then a block down to 4w, 2w, w, w.
        ins, outs = [8 * w, 4 * w, 2 * w, w], [4 * w, 2 * w, w, w]
        self.ups = nn.ModuleList(_up(c, c) for c in ins)
        self.decoder = nn.ModuleList(_block(c, o, c_mid=c) for c, o in zip(ins, outs, strict=True))
        self.out = nn.Conv2d(w, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
        for up, block in zip(self.ups, self.decoder, strict=True):
            x = block(up(x))
        return self.out(x)


class DiscriminativeSubNetwork(nn.Module):
    """(image, reconstruction) (B, 6, H, W) -> anomaly logits (B, 1, H, W); H, W divisible by 32.

    One logit instead of DRAEM's two-way softmax: softmax over two logits is the sigmoid of
    their difference, so the model is the same and the focal loss can be torchvision's.
    """

    def __init__(self, base_width: int = 64) -> None:
        super().__init__()
        w = base_width
        widths = [w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]
        self.encoder = nn.ModuleList(
            _block(c_in, c_out) for c_in, c_out in zip([6, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        # Each decoder stage: upsample the deeper map to `outs` channels, concatenate the
        # encoder's map of that size, one block back to `outs` channels.
        outs, skips = [8 * w, 4 * w, 2 * w, w, w], widths[-2::-1]
        self.ups = nn.ModuleList(_up(c, o) for c, o in zip([8 * w, *outs[:-1]], outs, strict=True))
        self.decoder = nn.ModuleList(_block(o + s, o) for o, s in zip(outs, skips, strict=True))
        self.out = nn.Conv2d(w, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, block, skip in zip(self.ups, self.decoder, skips[-2::-1], strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.out(x)
