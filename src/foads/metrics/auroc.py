"""Exact rank-based AUROC for image scores and flattened pixel maps."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _as_flat_labels(labels: ArrayLike) -> np.ndarray:
    """Flatten labels to a bool array, copying only when they are not bool already."""
    labels = np.asarray(labels).ravel()
    return labels if labels.dtype == np.bool_ else labels != 0


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of raw scores, exact, with ties counted as one half.

    Equals the Mann-Whitney U of the positives divided by ``n_pos * n_neg``, i.e.
    ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with average ranks for ties.
    Scores are used as given (no sigmoid, no rescaling). Inputs of any shape are flattened;
    labels are bool or integer (non-zero is positive). Returns ``nan`` when only one class
    is present.

    Memory: one argsort (int64) plus the sorted scores and labels; no float64 rank array,
    so tens of millions of float16/float32 pixels are fine.
    """
    scores = np.asarray(scores).ravel()
    labels = _as_flat_labels(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) differ in size")
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_pos = int(np.count_nonzero(labels))
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")

    if scores.dtype == np.float16:
        # numpy sorts float16 in software; the exact float32 copy sorts ~1.6x faster.
        scores = scores.astype(np.float32)
    order = np.argsort(scores)
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    del order
    # Groups of tied scores; within a group every positive beats none and ties all negatives.
    starts = np.flatnonzero(np.concatenate(([True], sorted_scores[1:] != sorted_scores[:-1])))
    del sorted_scores
    pos_per_group = np.add.reduceat(sorted_labels, starts, dtype=np.int64)
    size_per_group = np.diff(np.append(starts, labels.size))
    neg_per_group = size_per_group - pos_per_group
    neg_before = np.cumsum(neg_per_group) - neg_per_group
    # Twice the U statistic is an integer: exact in int64 up to ~4e9 samples.
    twice_u = np.dot(pos_per_group, 2 * neg_before + neg_per_group)
    return float(twice_u) / (2.0 * n_pos * n_neg)
