"""Tests for the MVTec AD per-region-overlap metric against a direct loop-based reference."""

import numpy as np
import pytest
from skimage.measure import label

from foads.metrics import pro_score

try:
    from numpy import trapezoid as _trapezoid
except ImportError:  # numpy < 2.0, whose trapz the installed numpy 2's stubs no longer have
    from numpy import trapz as _trapezoid  # type: ignore[attr-defined,no-redef]


def _reference_pro(maps, masks, max_fpr=0.3):
    """Loop over every distinct threshold and every component; slow but obviously right."""
    regions = []
    for image_mask in masks:
        labelled = label(image_mask, connectivity=2)
        regions.append([labelled == k for k in range(1, labelled.max() + 1)])
    negatives = ~masks
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        above = maps >= threshold
        fprs.append((above & negatives).sum() / negatives.sum())
        overlaps = [
            above[i][region].sum() / region.sum()
            for i, image_regions in enumerate(regions)
            for region in image_regions
        ]
        pros.append(np.mean(overlaps))
    fprs, pros = np.array(fprs), np.array(pros)
    inside = fprs <= max_fpr
    xs, ys = list(fprs[inside]), list(pros[inside])
    nxt = np.argmax(~inside)  # first point beyond max_fpr
    if not inside.all():
        prev = nxt - 1
        t = (max_fpr - fprs[prev]) / (fprs[nxt] - fprs[prev])
        xs.append(max_fpr)
        ys.append(pros[prev] + t * (pros[nxt] - pros[prev]))
    return _trapezoid(ys, xs) / max_fpr


def _random_masks(rng, n_images, size, n_boxes):
    masks = np.zeros((n_images, size, size), dtype=bool)
    for image in masks:
        for _ in range(n_boxes):
            y, x = rng.integers(0, size - 2, size=2)
            h, w = rng.integers(1, 6, size=2)
            image[y : y + h, x : x + w] = True
        # Diagonal neighbours: one component under 8-connectivity, two under 4.
        y, x = rng.integers(0, size - 1, size=2)
        image[y, x] = image[y + 1, x + 1] = True
    return masks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [True, False])
def test_matches_loop_reference(seed, tied):
    rng = np.random.default_rng(seed)
    masks = _random_masks(rng, n_images=3, size=24, n_boxes=4)
    noise = rng.normal(size=masks.shape) + 1.5 * masks
    maps = np.round(noise * 3) if tied else noise
    assert pro_score(maps, masks) == pytest.approx(_reference_pro(maps, masks), abs=1e-9)


@pytest.mark.parametrize("max_fpr", [0.05, 0.3, 1.0])
def test_other_fpr_limits_match_reference(max_fpr):
    rng = np.random.default_rng(11)
    masks = _random_masks(rng, n_images=2, size=20, n_boxes=3)
    maps = (rng.integers(0, 8, size=masks.shape) + 2 * masks).astype(np.float32)
    expected = _reference_pro(maps, masks, max_fpr)
    assert pro_score(maps, masks, max_fpr) == pytest.approx(expected, abs=1e-9)


def test_eight_connectivity_by_hand():
    mask = np.zeros((1, 5, 5), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 1] = True  # one component of two pixels
    mask[0, 4, 4] = True  # a second component of one pixel
    scores = np.zeros((1, 5, 5))
    scores[0, 0, 0] = 2.0  # above every negative
    # Curve (0, 0) -> (0, 0.25) -> (1, 1), so PRO(0.3) = 0.475 and the mean height is the
    # trapezoid's; 4-connectivity would start at 1/3 instead of 0.25.
    expected = (0.25 + (0.25 + 0.75 * 0.3)) / 2
    assert pro_score(scores, mask) == pytest.approx(expected, abs=1e-12)


def test_perfect_map_scores_one():
    masks = _random_masks(np.random.default_rng(0), n_images=3, size=16, n_boxes=2)
    assert pro_score(masks.astype(np.float32), masks) == pytest.approx(1.0, abs=1e-12)


def test_negatives_above_positives_score_zero():
    masks = _random_masks(np.random.default_rng(1), n_images=3, size=16, n_boxes=2)
    assert pro_score(1.0 - masks, masks) == 0.0


def test_no_component_or_no_negative_is_nan():
    maps = np.random.default_rng(2).random((2, 8, 8))
    assert np.isnan(pro_score(maps, np.zeros_like(maps, dtype=bool)))
    assert np.isnan(pro_score(maps, np.ones_like(maps, dtype=bool)))
