"""Stream-level pixel AUROC and PRO in memory that does not grow with the stream.

The exact metrics (`auroc`, `pro_score`) need every pixel of every map at once: about 250 KB
per 224 px image, 25 GB for a 10^5-image stream. `PixelCurve` keeps instead, per score bin,
the count of normal pixels, the count of defective pixels, and the sum over defective pixels
of 1 / (size of their connected region): enough for the ROC curve and the PRO curve, whatever
the stream's length (3 x 2^20 numbers, 24 MB).

The bins are the top `KEY_BITS` bits of each score's float32 pattern, made monotone: sign,
exponent and the leading 11 mantissa bits, so two scores share a bin only when they agree to
a relative 2^-11 (0.05%). Within a bin scores count as tied (one half, as `auroc` counts
ties). The result is the exact metric of the scores rounded down to their bin; the measured
difference from the exact metric is in docs/resume.md.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from foads.metrics.pro import _STRUCTURE_8_CONNECTED, _area_up_to

KEY_BITS = 20
NUM_BINS = 1 << KEY_BITS


def score_bins(scores: ArrayLike) -> np.ndarray:
    """The bin of each score: int64 in [0, 2^KEY_BITS), in the order of the scores."""
    values = np.ascontiguousarray(scores, dtype=np.float32)
    if np.isnan(values).any():
        raise ValueError("anomaly maps contain NaN")
    bits = values.view(np.uint32)
    # Negative floats order backwards by their bits: flip them all; set the sign bit of the
    # others, so that unsigned order is numeric order.
    keys = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    return (keys >> np.uint32(32 - KEY_BITS)).astype(np.int64)


class PixelCurve:
    """Accumulates maps and masks batch by batch; gives pixel AUROC and PRO of all of them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.negatives = np.zeros(NUM_BINS, np.int64)
        self.positives = np.zeros(NUM_BINS, np.int64)
        self.region_weight = np.zeros(NUM_BINS, np.float64)
        self.regions = 0

    def add(self, maps: ArrayLike, masks: ArrayLike) -> None:
        """Add (N, H, W) maps and their (N, H, W) ground truth."""
        scores = np.asarray(maps)
        truth = np.asarray(masks).astype(bool, copy=False)
        if scores.shape != truth.shape:
            raise ValueError(f"maps {scores.shape} and masks {truth.shape} differ in shape")
        scores = scores.reshape((-1, *scores.shape[-2:]))
        truth = truth.reshape(scores.shape)
        bins = score_bins(scores)
        self.negatives += np.bincount(bins[~truth], minlength=NUM_BINS)
        if not truth.any():
            return
        components, count = ndimage.label(truth, structure=_STRUCTURE_8_CONNECTED)
        sizes = np.bincount(components.ravel())
        inside = components[truth]
        self.positives += np.bincount(bins[truth], minlength=NUM_BINS)
        self.region_weight += np.bincount(
            bins[truth], weights=1.0 / sizes[inside], minlength=NUM_BINS
        )
        self.regions += int(count)

    def auroc(self) -> float:
        """Pixel AUROC with the scores of one bin tied; nan without both classes."""
        n_pos, n_neg = int(self.positives.sum()), int(self.negatives.sum())
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        used = np.flatnonzero(self.positives + self.negatives)
        pos = self.positives[used].astype(np.float64)
        neg = self.negatives[used].astype(np.float64)
        neg_before = np.cumsum(neg) - neg
        return float(np.dot(pos, neg_before + neg / 2.0) / (float(n_pos) * float(n_neg)))

    def pro(self, max_fpr: float = 0.3) -> float:
        """Normalised area under the PRO curve up to `max_fpr`, as `pro_score`."""
        if not 0.0 < max_fpr <= 1.0:
            raise ValueError(f"max_fpr must lie in (0, 1], got {max_fpr}")
        n_neg = int(self.negatives.sum())
        if self.regions == 0 or n_neg == 0:
            return float("nan")
        used = np.flatnonzero(self.positives + self.negatives)[::-1]  # highest bin first
        fpr = np.concatenate(([0.0], np.cumsum(self.negatives[used]) / n_neg))
        pro = np.concatenate(([0.0], np.cumsum(self.region_weight[used]) / self.regions))
        return _area_up_to(fpr, pro, max_fpr) / max_fpr

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """The non-empty bins only (a checkpoint stays small)."""
        used = np.flatnonzero(self.positives + self.negatives)
        return {
            "bins": used,
            "negatives": self.negatives[used],
            "positives": self.positives[used],
            "region_weight": self.region_weight[used],
            "regions": self.regions,
        }

    def load_state(self, state: dict) -> None:
        self._reset()
        used = np.asarray(state["bins"], dtype=np.int64)
        self.negatives[used] = np.asarray(state["negatives"])
        self.positives[used] = np.asarray(state["positives"])
        self.region_weight[used] = np.asarray(state["region_weight"])
        self.regions = int(state["regions"])
