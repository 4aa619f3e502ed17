"""Stream-level pixel metrics in bounded memory match the exact ones."""

import numpy as np
import pytest

from foads.metrics import auroc, pro_score
from foads.metrics.binned import PixelCurve, score_bins


def _stream(seed: int, n: int = 12, size: int = 40):
    """Maps with defects that score higher than their surroundings, and their masks."""
    rng = np.random.default_rng(seed)
    maps = rng.gamma(2.0, 1.5, (n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(0, n, 2):
        top, left = rng.integers(0, size - 10, 2)
        h, w = rng.integers(3, 10, 2)
        masks[i, top : top + h, left : left + w] = True
        masks[i, top + h // 2, left : left + 2 * w] = True  # a second shape touching it
    maps[masks] += rng.gamma(2.0, 1.0, masks.sum()).astype(np.float32)
    return maps, masks


def test_bins_are_monotone_in_the_score():
    values = np.array([-1e30, -3.5, -1e-20, -0.0, 0.0, 1e-20, 0.7, 3.5, 1e30], np.float32)
    bins = score_bins(values)
    assert (np.diff(bins) >= 0).all() and bins[0] < bins[-1]
    with pytest.raises(ValueError, match="NaN"):
        score_bins(np.array([1.0, np.nan]))


def test_scores_that_fit_their_bin_give_the_exact_metrics():
    maps, masks = _stream(0)
    maps = np.round(maps * 8) / 8  # few mantissa bits: one score per bin, ties as the exact ones
    curve = PixelCurve()
    curve.add(maps, masks)
    assert curve.auroc() == pytest.approx(auroc(maps, masks), abs=1e-12)
    assert curve.pro() == pytest.approx(pro_score(maps, masks), abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_continuous_scores_are_within_a_thousandth(seed):
    maps, masks = _stream(seed)
    curve = PixelCurve()
    for lo in range(0, len(maps), 5):  # batch by batch, as the evaluator adds them
        curve.add(maps[lo : lo + 5], masks[lo : lo + 5])
    assert abs(curve.auroc() - auroc(maps, masks)) < 1e-3
    assert abs(curve.pro() - pro_score(maps, masks)) < 1e-3


def test_state_round_trip_continues_identically():
    maps, masks = _stream(4)
    whole, resumed = PixelCurve(), PixelCurve()
    whole.add(maps[:6], masks[:6])
    whole.add(maps[6:], masks[6:])
    resumed.add(maps[:6], masks[:6])
    again = PixelCurve()
    again.load_state(resumed.state())
    again.add(maps[6:], masks[6:])
    assert again.auroc() == whole.auroc() and again.pro() == whole.pro()


def test_one_class_gives_nan():
    curve = PixelCurve()
    curve.add(np.ones((2, 4, 4)), np.zeros((2, 4, 4), bool))
    assert np.isnan(curve.auroc()) and np.isnan(curve.pro())
