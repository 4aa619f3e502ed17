"""Evaluation metrics: exact AUROC and the MVTec AD per-region overlap."""

from foads.metrics.auroc import auroc
from foads.metrics.pro import pro_curve, pro_score

__all__ = ["auroc", "pro_curve", "pro_score"]
