"""DRAEM's model: reconstructive and discriminative sub-networks, their loss and their maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.ops import sigmoid_focal_loss

from foads.baselines.draem.networks import DiscriminativeSubNetwork, ReconstructiveSubNetwork


class DRAEMModel(nn.Module):
    """Images in [0, 1] (B, 3, S, S), S divisible by 32 -> per-pixel anomaly probabilities."""

    def __init__(self, reconstructive_width: int = 128, discriminative_width: int = 64) -> None:
        super().__init__()
        self.reconstructive = ReconstructiveSubNetwork(reconstructive_width)
        self.discriminative = DiscriminativeSubNetwork(discriminative_width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction (B, 3, S, S), anomaly logits (B, 1, S, S))."""
        rec = self.reconstructive(x)
        return rec, self.discriminative(torch.cat([x, rec], dim=1))

    def loss(
        self,
        augmented: torch.Tensor,
        clean: torch.Tensor,
        mask: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DRAEM's objective: L2 + (1 - SSIM) between the reconstruction of the augmented image
        and the clean one, plus the focal loss (gamma 2) of the predicted anomaly mask.

        `weight` (B, 1, S, S) in [0, 1]: each pixel's share in the three means (a patch gate
        zeroes the pixels it rejected, so a real defect is neither reconstructed nor called
        normal); None: every pixel counts, as published."""
        rec, logits = self(augmented)
        if weight is None:
            l2 = F.mse_loss(rec, clean)
            ssim = structural_similarity_index_measure(rec, clean, data_range=1.0)
            assert isinstance(ssim, torch.Tensor)  # a pair only with return_full_image
            focal = sigmoid_focal_loss(logits, mask, alpha=-1, gamma=2.0, reduction="mean")
            return l2 + (1 - ssim) + focal
        total = weight.sum().clamp_min(1.0)
        l2 = ((rec - clean) ** 2 * weight).sum() / (total * rec.shape[1])
        _, ssim_map = structural_similarity_index_measure(
            rec, clean, data_range=1.0, reduction="none", return_full_image=True
        )
        dissimilarity = ((1 - ssim_map) * weight).sum() / (total * rec.shape[1])
        focal = sigmoid_focal_loss(logits, mask, alpha=-1, gamma=2.0, reduction="none")
        return l2 + dissimilarity + (focal * weight).sum() / total

    @torch.no_grad()
    def anomaly_probability(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, S) probability that each pixel is anomalous."""
        return torch.sigmoid(self(x)[1])[:, 0]

    def state_bytes(self) -> int:
        tensors = [*self.parameters(), *self.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def state_elements(self) -> int:
        return sum(p.numel() for p in self.parameters())


def image_scores(probability: torch.Tensor, pool: int) -> torch.Tensor:
    """DRAEM's image score: the maximum of the probability map mean-filtered over pool x pool."""
    pooled = F.avg_pool2d(probability[:, None], pool, stride=1, padding=pool // 2)
    return pooled.amax(dim=(1, 2, 3))
