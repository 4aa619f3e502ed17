"""The node radius that follows the stream (methods/kng/stream_radius.py)."""

import pytest
import torch

from foads.methods.kng.stream_radius import StreamRadius


def batch(level, images=4, patches=50, outliers=0.0, seed=0):
    """distance / radius of `images` x `patches` patches around `level` (radius 1)."""
    g = torch.Generator().manual_seed(seed)
    ratio = level * (1 + 0.1 * torch.randn(images, patches, generator=g)).abs()
    n_out = int(outliers * patches)
    ratio[:, :n_out] = 50.0  # a defect's patches, far from every node
    return ratio.flatten(), torch.ones(images * patches)


def test_a_stationary_stream_keeps_the_papers_radius():
    rule = StreamRadius(window=8)
    scales = [rule(*batch(1.5, seed=i), images=4) for i in range(10)]
    assert all(s == pytest.approx(1.0, abs=0.05) for s in scales)


def test_the_radius_follows_a_stream_that_moves_as_a_whole():
    rule = StreamRadius(window=8)
    for i in range(2):  # the reference: the first 8 images
        assert rule(*batch(1.5, seed=i), images=4) == 1.0
    scales = [rule(*batch(3.0, seed=10 + i), images=4) for i in range(3)]
    assert scales[-1] == pytest.approx(2.0, rel=0.05)  # everything moved twice as far
    assert scales[0] == pytest.approx(1.0, abs=0.1)  # the window is half old, half new


def test_local_defects_do_not_widen_it_and_it_never_narrows():
    rule = StreamRadius(window=8)
    for i in range(2):
        rule(*batch(1.5, seed=i), images=4)
    assert rule(*batch(1.5, outliers=0.3, seed=5), images=4) == pytest.approx(1.0, abs=0.05)
    for i in range(3):
        scale = rule(*batch(0.5, seed=20 + i), images=4)  # the model learned: closer
    assert scale == 1.0


def test_state_round_trip_and_bad_window():
    rule = StreamRadius(window=4)
    rule(*batch(1.0), images=4)
    rule(*batch(2.0, seed=1), images=4)
    copy = StreamRadius(window=4)
    copy.load_state(rule.state())
    assert copy(*batch(2.0, seed=2), images=4) == rule(*batch(2.0, seed=2), images=4)
    with pytest.raises(ValueError, match="radius_window"):
        StreamRadius(window=0)


def test_kng_learns_a_new_batch_only_with_the_stream_radius(make_cfg, tmp_path):
    import csv

    from foads.run import run

    def accepted_after_change(*extra, out):
        run(
            make_cfg(
                "dataset.category=gravel",
                "mode=online",
                "protocol.drift.name=abrupt",
                "protocol.drift.strength=3",
                "protocol.drift.change_at=0.25",
                "protocol.decision_folds=null",
                "method.acceptance.image_gate=null",
                *extra,
                out=tmp_path / out,
            )
        )
        rows = list(csv.DictReader((tmp_path / out / "images.csv").open()))
        after = [r for r in rows if float(r["drift_level"]) == 1 and r["label"] == "0"]
        return sum(int(r["accepted_patches"]) for r in after) / sum(
            int(r["patches"]) for r in after
        )

    fixed = accepted_after_change(out="fixed")
    following = accepted_after_change("method.acceptance.radius_window=4", out="following")
    assert following > 2 * fixed + 0.01
