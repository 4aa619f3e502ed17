"""Recurrence: out-of-radius patches are learned only in node bands that many recent images
visit."""

import pytest
import torch

from foads.methods.kng.lightning_model import KNGModule
from foads.methods.kng.recurrence import NodeRecurrence
from kng.test_rules import GRID, SIZE, Stub, clustered

THRESHOLDS = torch.tensor([1.0, 2.0, 1.0])


def batch(bands):
    """One image per entry: (node, distance) of its single patch."""
    s1 = torch.tensor([n for n, _ in bands])
    distance = torch.tensor([d for _, d in bands], dtype=torch.float32)
    return s1, distance


def test_a_band_is_learned_once_enough_images_of_the_window_visited_it():
    rule = NodeRecurrence(window=4, radius=1.5, images=0.5)  # 2 of the last 4 images
    # Node 1 (T = 2): band [2, 3). One visit is not enough, the second one is (the batch
    # counts), and a patch within T, or beyond 1.5 T, is never the rule's.
    s1, d = batch([(0, 0.5), (1, 2.5)])
    assert rule(s1, d, THRESHOLDS, batch=2).tolist() == [False, False]
    s1, d = batch([(1, 2.9), (1, 3.5), (1, 1.0)])
    assert rule(s1, d, THRESHOLDS, batch=3).tolist() == [True, False, False]
    # The window slides: the first visit (now 4 images ago) is gone, one visit remains.
    s1, d = batch([(2, 1.2)])
    assert rule(s1, d, THRESHOLDS, batch=1).tolist() == [False]
    assert rule.visits.shape == (4, 3)
    assert rule.visits[:, 1].sum() == 1


def test_an_image_counts_once_however_many_of_its_patches_visit_the_band():
    rule = NodeRecurrence(window=2, radius=2.0, images=1.0)  # both of the last 2 images
    # Image 0: three patches in node 0's band; image 1: none. Only one image visited.
    s1 = torch.tensor([0, 0, 0, 2, 2, 2])
    d = torch.tensor([1.5, 1.5, 1.5, 0.1, 0.1, 0.1])
    assert not rule(s1, d, THRESHOLDS, batch=2).any()
    d = torch.tensor([1.5, 0.2, 0.2, 1.9, 0.1, 0.1])
    s1 = torch.tensor([0, 0, 0, 0, 2, 2])
    assert rule(s1, d, THRESHOLDS, batch=2).tolist() == [True, False, False, True, False, False]


def test_options_are_checked():
    with pytest.raises(ValueError, match="recurrence_radius"):
        NodeRecurrence(10, radius=1.0)
    with pytest.raises(ValueError, match="recurrence_images"):
        NodeRecurrence(10, images=0.0)
    with pytest.raises(ValueError, match="recurrence_window"):
        NodeRecurrence(0)


def fitted(**acceptance):
    module = KNGModule(
        Stub(), num_nodes=20, epochs=3, feature_dim=8, sigma=0.0, acceptance=acceptance
    )
    per = GRID[0] * GRID[1]
    for i in range(2):
        module.collect_embeddings(clustered(5 * per, seed=i), GRID, SIZE)
    module.fit_shots()
    return module


def test_module_learns_the_radius_rule_plus_recurrent_bands_and_keeps_them_in_its_state():
    per = GRID[0] * GRID[1]
    plain = fitted()
    rec = fitted(recurrence_window=10, recurrence_radius=3.0, recurrence_images=0.3)
    # A stream whose normal appearance moved a little: many patches land just outside T_k.
    x = clustered(10 * per, seed=7, shift=0.6)
    shape = (10, *GRID)
    a = plain.update(None, plain.score_embeddings(x, shape, SIZE)).accepted.flatten()
    scored = rec.score_embeddings(x, shape, SIZE)
    b = rec.update(None, scored).accepted.flatten()
    _, assignment, _ = scored.cache
    expected = rec.recurrence.visits.sum(0) >= 3  # recurrent nodes, from the rule's state
    t = plain.model.thresholds[assignment.s1]  # before either update: same fit, same T_k
    band = (assignment.distance >= t) & (assignment.distance < 3.0 * t)
    assert torch.equal(b, a | (band & expected[assignment.s1]))
    assert b.sum() > a.sum()  # the shift makes some band recurrent
    state = rec.stream_state()
    other = fitted(recurrence_window=10, recurrence_radius=3.0, recurrence_images=0.3)
    other.load_stream_state(state)
    assert torch.equal(other.recurrence.visits, rec.recurrence.visits)


def test_the_oracle_ignores_recurrence():
    module = fitted(recurrence_window=2, recurrence_radius=5.0, recurrence_images=0.5)
    per = GRID[0] * GRID[1]
    x = clustered(4 * per, seed=3, shift=0.5)
    scored = module.score_embeddings(x, (4, *GRID), SIZE)
    learn = torch.tensor([True, False, False, False])
    accepted = module.update(None, scored, learn=learn).accepted
    assert accepted[0].all() and not accepted[1:].any()
