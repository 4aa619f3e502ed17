"""The image-level online rule of the baselines (paper section 4.4): learn from an image only
if its anomaly score is below a fixed threshold taken from the shots alone."""

from __future__ import annotations

import torch


def gate_threshold(leave_one_out_scores: torch.Tensor, quantile: float = 1.0) -> float:
    """Threshold = a quantile of the shots' leave-one-out image scores (no labels involved).

    Each shot is scored by a model fitted without it, so the scores show how a normal image
    the model has not seen scores. quantile=1.0 takes the largest.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"gate_quantile must lie in [0, 1], got {quantile}")
    if leave_one_out_scores.numel() == 0:
        raise ValueError("no leave-one-out scores: the gate needs at least two shots")
    return float(torch.quantile(leave_one_out_scores.double().cpu(), quantile))


def accepted_images(
    image_scores: torch.Tensor, threshold: torch.Tensor, learn: torch.Tensor | None = None
) -> torch.Tensor:
    """(B,) bool: the images to learn from, below the threshold, or `learn` where the oracle
    mode gives it (from the ground truth), on the scores' device."""
    if learn is not None:
        return learn.to(image_scores.device)
    return image_scores < threshold.to(image_scores.device)
