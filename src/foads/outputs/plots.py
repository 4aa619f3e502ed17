"""Figures: per-session curves (paper Figure 6) and anomaly-map overlays (Figure 9)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from foads.metrics import METRICS, SESSION_METRICS

CURVES = tuple((k, METRICS[k].axis) for k in SESSION_METRICS)


def session_curves(per_category: dict[str, list[dict]], path: Path, title: str = "") -> None:
    """One panel per category, one line per metric, x = session (Figure 6 style)."""
    names = list(per_category)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    # The grid may have more panels than categories (switched off below).
    for ax, name in zip(axes.flat, names, strict=False):
        sessions = per_category[name]
        x = [s["session"] + 1 for s in sessions]
        for key, label in CURVES:
            y = np.array([s[key] for s in sessions], dtype=float) * 100
            ax.plot(x, y, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("session")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_grid(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    maps: list[np.ndarray],
    path: Path,
    captions: list[str] | None = None,
) -> None:
    """Rows of image / ground truth / anomaly map over the image (Figure 9 style).

    Maps share one colour scale so that rows can be compared.
    """
    n = len(images)
    if n == 0:
        return
    vmin = float(min(m.min() for m in maps))
    vmax = float(max(m.max() for m in maps))
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        axes[i, 1].imshow(masks[i], cmap="gray", vmin=0, vmax=1)
        axes[i, 2].imshow(images[i])
        axes[i, 2].imshow(maps[i], cmap="jet", alpha=0.5, vmin=vmin, vmax=vmax)
        if captions:
            axes[i, 0].set_ylabel(captions[i], fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ("image", "ground truth", "anomaly map"), strict=True):
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
