"""Figures of finished jobs: per-session curves by setting (paper Figure 6), metrics against
a swept hyper-parameter (Figures 8 and 11), and every setting's anomaly maps on the same
stream images (Figure 10). Read from the jobs' files; nothing is re-run."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from foads.metrics import METRICS
from foads.outputs.jobs import Job, Setting
from foads.outputs.report_tables import SESSION_COLUMNS, categories, job_value, values


def _save(fig, path: Path, dpi: int = 100) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _category_dir(job: Job, category: str) -> Path:
    """Where a job keeps a category's files (the job's own folder for a single category)."""
    if job.dir is None or job.summary is None:
        raise ValueError(f"job {job.overrides} has no finished run")
    return job.dir / category if len(job.summary["categories"]) > 1 else job.dir


def session_series(job: Job, category: str, key: str) -> np.ndarray:
    """One metric per session of a job's category (nan where a session has no value)."""
    path = _category_dir(job, category) / "sessions.csv"
    if not path.exists():
        return np.array([])
    with path.open() as f:
        return np.array([float(r[key]) if r.get(key) else np.nan for r in csv.DictReader(f)])


def _mean_series(setting: Setting, category: str, key: str) -> np.ndarray:
    series = [session_series(j, category, key) for j in setting.finished]
    series = [s for s in series if s.size]
    if not series:
        return np.array([])
    n = min(s.size for s in series)
    with warnings.catch_warnings():  # a session without both classes is nan in every seed
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack([s[:n] for s in series]), axis=0)


def _shade_drift(ax, positions: np.ndarray, level: np.ndarray) -> None:
    """The drift level (0..1) of each session as a grey band behind the curves."""
    if not level.size or not np.nanmax(level) > 0:
        return
    band = ax.twinx()
    band.fill_between(positions, level, step="mid", color="grey", alpha=0.18, linewidth=0)
    band.set_ylim(0, 1)
    band.set_yticks([])
    ax.set_zorder(band.get_zorder() + 1)
    ax.patch.set_visible(False)


def scenario(setting: Setting) -> str:
    """The drift scenario of a setting: swept, or as its jobs' summaries record it."""
    name = setting.values.get("protocol.drift.name")
    if name is None and setting.finished:
        name = setting.summaries[0].get("drift")
    return name or "none"


def drift_curves(settings: list[Setting], out_dir: Path) -> list[Path]:
    """drift_<scenario>.png for every drifting scenario: per category, image AUROC and the
    false-positive rate at the shots' threshold per session against stream position, a line
    per mode (offline / online / oracle, mean over seeds), the drift level shaded."""
    paths = []
    by_scenario: dict[str, list[Setting]] = {}
    for s in settings:
        if s.finished:
            by_scenario.setdefault(scenario(s), []).append(s)
    for name, group in sorted(by_scenario.items()):
        strengths = [job_value(j, "drift_strength") or 0.0 for s in group for j in s.finished]
        if name == "none" or not any(v > 0 for v in strengths):
            continue
        cats = categories(group)
        fig, axes = plt.subplots(2, len(cats), figsize=(4 * len(cats), 5.2), squeeze=False)
        for col, cat in enumerate(cats):
            for row, (label, key, scale) in enumerate(
                (
                    (METRICS["image_auroc"].axis, "image_auroc", 100),
                    (METRICS["fpr_at_shots"].axis, "fpr_at_shots", 100),
                )
            ):
                ax = axes[row, col]
                x = level = np.array([])
                for s in group:
                    y = _mean_series(s, cat, key) * scale
                    if not y.size:
                        continue
                    x = _mean_series(s, cat, "first_position")[: y.size]
                    level = _mean_series(s, cat, "drift_level")[: y.size]
                    mode = s.values.get("mode") or s.summaries[0].get("mode")
                    ax.plot(x, y, marker="o", markersize=2, label=mode)
                _shade_drift(ax, x, level)
                ax.set_ylabel(label, fontsize=8)
                ax.grid(alpha=0.3)
                if row == 0:
                    ax.set_title(cat, fontsize=9)
                else:
                    ax.set_xlabel("stream position (first image of the session)", fontsize=8)
        axes[0, 0].legend(fontsize=7)
        fig.suptitle(f"drift: {name} (grey: drift level)")
        paths.append(_save(fig, out_dir / f"drift_{name}.png"))
    return paths


def session_curves_by_setting(settings: list[Setting], out_dir: Path) -> list[Path]:
    """sessions_<metric>.png: a panel per category, a line per setting (mean over seeds)."""
    cats = categories(settings)
    paths = []
    for name, key in SESSION_COLUMNS:
        cols = min(5, len(cats))
        rows = -(-len(cats) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
        # The grid may have more panels than categories (switched off below).
        for ax, cat in zip(axes.flat, cats, strict=False):
            for s in settings:
                y = _mean_series(s, cat, key) * 100
                if y.size:
                    ax.plot(np.arange(1, y.size + 1), y, marker="o", markersize=2, label=s.label)
            ax.set_title(cat, fontsize=9)
            ax.set_xlabel("session", fontsize=8)
            ax.grid(alpha=0.3)
            level = next(
                (v for v in (_mean_series(s, cat, "drift_level") for s in settings) if v.size),
                np.array([]),
            )
            _shade_drift(ax, np.arange(1, level.size + 1), level)
        for ax in list(axes.flat)[len(cats) :]:
            ax.axis("off")
        axes.flat[0].set_ylabel(f"{name} %")
        axes.flat[0].legend(fontsize=6, loc="lower right")
        fig.suptitle(f"{name} per session")
        paths.append(_save(fig, out_dir / f"sessions_{name.lower()}.png"))
    return paths


def hyperparameter_curves(settings: list[Setting], key: str, out_dir: Path) -> Path:
    """Left: Image / Pixel / PRO (averages over categories) against the swept value, with the
    spread over seeds (Figure 8). Right: each category's image AUROC (Figure 11)."""
    labels = [s.values.get(key, s.label) for s in settings]
    x = np.arange(len(labels))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, k in SESSION_COLUMNS:
        stats = [values(s, k) for s in settings]
        mean = np.array([np.mean(v) * 100 if v else np.nan for v in stats])
        std = np.array([np.std(v) * 100 if v else np.nan for v in stats])
        left.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=name)
    for cat in categories(settings):
        per_setting = [values(s, "image_auroc", cat) for s in settings]
        y = [np.mean(v) * 100 if v else np.nan for v in per_setting]
        right.plot(x, y, marker="o", markersize=3, label=cat)
    for ax, title in ((left, "average over categories"), (right, "Image ROCAUC % per category")):
        ax.set_xticks(x, labels)
        ax.set_xlabel(key)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    left.set_ylabel("%")
    left.legend(fontsize=8)
    right.legend(fontsize=6, ncol=2)
    return _save(fig, out_dir / "hyperparameters.png")


def _maps(job: Job, category: str) -> dict | None:
    path = _category_dir(job, category) / "maps.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def method_grid(settings: list[Setting], out_dir: Path, max_images: int = 6) -> list[Path]:
    """maps_<category>.png: rows = the last stream images, columns = image, ground truth and
    each setting's anomaly map (its first seed), each setting's maps on its own colour scale."""
    paths = []
    for cat in categories(settings):
        columns = []
        for s in settings:
            jobs = sorted(s.finished, key=lambda j: j.overrides.get("seed", ""))
            maps = _maps(jobs[0], cat) if jobs else None
            if maps is not None:
                columns.append((s.label, maps))
        if not columns:
            continue
        ref = columns[0][1]
        # Only settings that saw the same stream images (same split and stream seeds).
        columns = [
            (lab, m) for lab, m in columns if np.array_equal(m["positions"], ref["positions"])
        ]
        n = min(max_images, len(ref["positions"]))
        fig, axes = plt.subplots(
            n, 2 + len(columns), figsize=(1.9 * (2 + len(columns)), 1.9 * n), squeeze=False
        )
        for c, (label, maps) in enumerate(columns):
            shown = maps["maps"][:n].astype(np.float32)
            lo, hi = float(shown.min()), float(shown.max())
            for i in range(n):
                axes[i, 2 + c].imshow(ref["images"][i])
                axes[i, 2 + c].imshow(shown[i], cmap="jet", alpha=0.5, vmin=lo, vmax=hi)
            axes[0, 2 + c].set_title(label, fontsize=7)
        for i in range(n):
            axes[i, 0].imshow(ref["images"][i])
            axes[i, 1].imshow(ref["masks"][i], cmap="gray", vmin=0, vmax=1)
            axes[i, 0].set_ylabel(f"#{ref['positions'][i]} {ref['defect_types'][i]}", fontsize=6)
        axes[0, 0].set_title("Raw", fontsize=8)
        axes[0, 1].set_title("GT", fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(cat, fontsize=9)
        paths.append(_save(fig, out_dir / f"maps_{cat}.png", dpi=90))
    return paths
