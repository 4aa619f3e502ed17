"""Evaluation metrics: exact AUROC and the MVTec AD per-region overlap, and the one list of
what the reports call each measured figure (tables, figures and report tables read it here;
a new metric is named once, docs/extending.md)."""

from __future__ import annotations

from dataclasses import dataclass

from foads.metrics.auroc import auroc
from foads.metrics.pro import pro_curve, pro_score


@dataclass(frozen=True)
class Metric:
    key: str  # its field in summary.json and sessions.csv
    column: str  # its column name in tables
    axis: str  # its axis label in figures


METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("image_auroc", "Image", "Image ROCAUC %"),
        Metric("pixel_auroc", "Pixel", "Pixel ROCAUC %"),
        Metric("pro", "PRO", "PRO %"),
        Metric("stream_image_auroc", "stream Image", "stream Image ROCAUC %"),
        Metric("last_half_image_auroc", "last-half Image", "last-half Image ROCAUC %"),
        Metric("last_half_pro", "last-half PRO", "last-half PRO %"),
        Metric("accepted_fraction", "accepted", "accepted patches %"),
        Metric("absorbed_anomalous_fraction", "absorbed anomalous", "absorbed anomalous %"),
        # Decisions at the threshold fixed from the shots (protocol/calibration.py).
        Metric("fpr_at_shots", "FPR@shots", "FPR at shots' threshold %"),
        Metric("recall_at_shots", "recall@shots", "recall at shots' threshold %"),
        Metric(
            "last_half_fpr_at_shots", "last-half FPR@shots", "last-half FPR at shots' threshold %"
        ),
    )
}
# The paper's three figures of every session (Tables 3-8, Figure 6).
SESSION_METRICS = ("image_auroc", "pixel_auroc", "pro")


def columns(*keys: str) -> tuple[tuple[str, str], ...]:
    """(column name, key) of each metric key, for a table's header and cells."""
    return tuple((METRICS[k].column, k) for k in keys)


__all__ = ["METRICS", "SESSION_METRICS", "Metric", "auroc", "columns", "pro_curve", "pro_score"]
