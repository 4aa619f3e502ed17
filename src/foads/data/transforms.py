"""Turning images and masks into the tensors a pretrained backbone expects, on one geometry."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTransform:
    """Resize to a square, centre-crop and ImageNet-normalise images; the same geometry for
    masks."""

    def __init__(self, resize: int = 256, crop: int = 224) -> None:
        if int(resize) <= 0 or int(crop) <= 0:
            raise ValueError(f"resize and crop must be positive, got resize={resize}, crop={crop}")
        if crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.resize = int(resize)
        self.crop = int(crop)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Return a normalised float tensor (3, crop, crop) for an RGB PIL image."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        tensor = F.to_dtype(F.pil_to_tensor(image), torch.float32, scale=True)
        tensor = F.resize(
            tensor,
            [self.resize, self.resize],
            interpolation=InterpolationMode.BILINEAR,
            antialias=True,
        )
        tensor = F.center_crop(tensor, [self.crop, self.crop])
        # Bilinear overshoot near sharp edges would leave [0, 1]; clamp before normalising.
        tensor = tensor.clamp_(0.0, 1.0)
        return F.normalize(tensor, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))

    def mask(self, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Return a boolean tensor (crop, crop) for a boolean (H, W) mask, aligned with images."""
        tensor = torch.as_tensor(np.asarray(mask, dtype=np.uint8)).unsqueeze(0)
        # NEAREST_EXACT samples pixel centres like the bilinear image resize does; plain NEAREST
        # shifts the mask by up to half a source pixel.
        tensor = F.resize(
            tensor, [self.resize, self.resize], interpolation=InterpolationMode.NEAREST_EXACT
        )
        tensor = F.center_crop(tensor, [self.crop, self.crop])
        return tensor[0] > 0


def denormalise(tensor: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of a (3, H, W) or (B, 3, H, W) tensor, into [0, 1]."""
    tensor = tensor.float()
    mean = torch.tensor(IMAGENET_MEAN, device=tensor.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=tensor.device).view(-1, 1, 1)
    return (tensor * std + mean).clamp(0.0, 1.0)
