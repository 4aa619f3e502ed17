"""Tests for the exact rank-based AUROC."""

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from foads.metrics import auroc


def _reference(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    return mannwhitneyu(pos, neg).statistic / (pos.size * neg.size)


@pytest.mark.parametrize("seed", range(5))
def test_matches_mann_whitney_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(5000) < 0.3
    # Integer scores from a small range: nearly every score is tied with many others.
    scores = rng.integers(0, 20, size=labels.size) + 3 * labels
    assert auroc(scores, labels) == pytest.approx(_reference(scores, labels), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_dtypes_and_maps_are_flattened(dtype):
    rng = np.random.default_rng(7)
    masks = rng.random((4, 32, 32)) < 0.1
    maps = (rng.normal(size=masks.shape) + masks).astype(dtype)
    expected = _reference(maps.ravel().astype(np.float64), masks.ravel())
    assert auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert auroc(maps, masks.astype(np.uint8)) == pytest.approx(expected, abs=1e-12)


def test_single_class_is_nan():
    assert np.isnan(auroc(np.arange(5.0), np.zeros(5, dtype=bool)))
    assert np.isnan(auroc(np.arange(5.0), np.ones(5, dtype=int)))


def test_perfect_and_inverted_separation():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([-3.0, -2.0, 5.0, 7.0, 0.0, 100.0])
    assert auroc(scores, labels) == 1.0
    assert auroc(-scores, labels) == 0.0


def test_raw_scores_are_not_squashed():
    # Scores far outside [0, 1] keep their order (a sigmoid would tie them at 1.0).
    labels = np.array([False, True, False, True])
    scores = np.array([1000.0, 1001.0, 999.0, 1002.0])
    assert auroc(scores, labels) == 1.0


def test_all_tied_is_one_half():
    assert auroc(np.zeros(10), np.arange(10) % 2) == 0.5


def test_size_mismatch_raises():
    with pytest.raises(ValueError, match="differ in size"):
        auroc(np.zeros(3), np.zeros(4))
