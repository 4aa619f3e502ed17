"""Drift scenarios: levels, appearance, masks, seeds, and the protocol applying them."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from foads.data.sample import Sample
from foads.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from foads.outputs.checkpoint import read_checkpoint
from foads.protocol.drift import RAMPS, SCENARIOS, Drift
from foads.protocol.stream import ImageSequence
from foads.replay import CacheOpener
from foads.run import run

DRIFTING = [s for s in SCENARIOS if s != "none"]


def normalise(x):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def unit(x):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x * std + mean


@pytest.fixture
def image():
    torch.manual_seed(0)
    return normalise(0.2 + 0.6 * torch.rand(3, 48, 48))


def test_levels_ramp_step_and_alternate():
    for name in RAMPS:
        drift = Drift(name)
        assert [drift.level(p, 5) for p in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]
    step = Drift("abrupt", change_at=0.4)
    assert [step.level(p, 10) for p in range(10)] == [0.0] * 4 + [1.0] * 6
    alternating = Drift("alternating", period=3)
    assert [alternating.level(p, 12) for p in range(12)] == [0, 0, 0, 1, 1, 1] * 2
    assert [Drift("none").level(p, 4) for p in range(4)] == [0.0] * 4
    assert Drift("defocus", strength=0.5).amount(4, 5) == 0.5


@pytest.mark.parametrize("name", DRIFTING)
def test_strength_zero_and_level_zero_give_the_image_back_exactly(name, image):
    drift = Drift(name, strength=0.0)
    assert not drift.active and drift.amount(9, 10) == 0.0
    assert torch.equal(Drift(name).image(image, 0.0), image)
    assert torch.equal(Drift(name).mask(image[0] > 0, 0.0), image[0] > 0)


@pytest.mark.parametrize("name", DRIFTING)
def test_each_scenario_changes_the_image_more_at_a_higher_amount(name, image):
    drift = Drift(name, seed=3)
    small = (drift.image(image, 0.3) - image).abs().mean()
    large = (drift.image(image, 1.0) - image).abs().mean()
    assert 0 < small < large
    out = unit(drift.image(image, 1.0))
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5  # still an image in [0, 1]


def test_each_photometric_scenario_moves_the_image_the_documented_way(image):
    x = unit(image)
    dark = unit(Drift("illumination").image(image, 1.0))
    assert dark.mean() < 0.8 * x.mean()
    warm = unit(Drift("colour").image(image, 1.0))
    assert warm[0].mean() > x[0].mean() and warm[2].mean() < x[2].mean()
    blurred = unit(Drift("defocus").image(image, 1.0))
    assert blurred.std() < 0.7 * x.std()  # the uniform noise is smoothed away
    assert blurred.mean().item() == pytest.approx(x.mean().item(), abs=0.01)


def test_the_same_seed_gives_the_same_drift_and_another_seed_another(image):
    for name in ("geometry", "abrupt"):
        a = Drift(name, seed=1).image(image, 1.0)
        assert torch.equal(a, Drift(name, seed=1).image(image, 1.0))
        assert not torch.allclose(a, Drift(name, seed=2).image(image, 1.0))


def test_a_geometric_drift_moves_the_mask_with_the_defect():
    x = torch.full((3, 64, 64), 0.1)
    x[:, 40:52, 10:22] = 0.9  # a bright defect near a corner
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[40:52, 10:22] = True
    drift = Drift("geometry", strength=2.0, seed=5)
    moved_image = unit(drift.image(normalise(x), 1.0))[0] > 0.5
    moved_mask = drift.mask(mask, 1.0)
    assert not torch.equal(moved_mask, mask)  # it did move
    iou = (moved_image & moved_mask).sum() / (moved_image | moved_mask).sum()
    assert iou > 0.9
    # photometric scenarios leave the ground truth where it is
    assert torch.equal(Drift("illumination").mask(mask, 1.0), mask)


def test_bad_drift_settings_are_named():
    with pytest.raises(ValueError, match=r"protocol\.drift\.name.*fog"):
        Drift("fog")
    with pytest.raises(ValueError, match="strength"):
        Drift("colour", strength=-1)
    with pytest.raises(ValueError, match="change_at"):
        Drift("abrupt", change_at=1.5)
    with pytest.raises(ValueError, match="period"):
        Drift("alternating", period=0)


def test_the_stream_sequence_drifts_by_position(tmp_path):
    samples = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((16, 16, 3), 120, dtype=np.uint8)).save(path)
        samples.append(Sample(path, 0))
    transform = ImageTransform(16, 16)
    plain = ImageSequence(samples, transform)
    drifted = ImageSequence(samples, transform, drift=Drift("illumination"), stream_length=5)
    means = [unit(drifted[i]["image"]).mean().item() for i in range(5)]
    assert torch.equal(drifted[0]["image"], plain[0]["image"])  # level 0 at the start
    assert np.all(np.diff(means) < 0)  # darker along the stream
    zero = ImageSequence(samples, transform, drift=Drift("illumination", 0.0), stream_length=5)
    assert all(torch.equal(zero[i]["image"], plain[i]["image"]) for i in range(5))


def _offline(make_cfg, tmp_path, name, *extra):
    return make_cfg(
        "dataset.category=gravel",
        "mode=offline",
        f"protocol.drift.name={name}",
        *extra,
        out=tmp_path / name,
    )


def test_the_run_drifts_the_stream_never_the_shots(make_cfg, tmp_path):
    run(_offline(make_cfg, tmp_path, "none"))
    summary = run(_offline(make_cfg, tmp_path, "illumination", "protocol.drift.strength=2.0"))
    assert summary["drift"] == "illumination" and summary["drift_strength"] == 2.0
    plain = read_checkpoint(tmp_path / "none" / "checkpoint.pt")
    drifted = read_checkpoint(tmp_path / "illumination" / "checkpoint.pt")
    # the fit saw the same shots: the fitted graphs are identical
    for key, value in plain["state"]["model"].items():
        assert torch.equal(value, drifted["state"]["model"][key]), key
    rows = {
        n: list(csv.DictReader((tmp_path / n / "images.csv").open()))
        for n in ("none", "illumination")
    }
    scores = {n: np.array([float(r["image_score"]) for r in rows[n]]) for n in rows}
    levels = np.array([float(r["drift_level"]) for r in rows["illumination"]])
    assert levels[0] == 0 and levels[-1] == 1 and np.all(np.diff(levels) > 0)
    assert scores["none"][0] == pytest.approx(scores["illumination"][0], rel=1e-5)
    # the darkened end of the stream scores higher under the model fitted on the shots
    assert (scores["illumination"][-4:] - scores["none"][-4:]).mean() > 0
    sessions = list(csv.DictReader((tmp_path / "illumination" / "sessions.csv").open()))
    session_levels = [float(r["drift_level"]) for r in sessions]
    assert session_levels == sorted(session_levels) and session_levels[-1] > 0.8


def test_strength_zero_runs_exactly_the_undrifted_protocol(make_cfg, tmp_path):
    base = run(_offline(make_cfg, tmp_path, "none"))
    zero = run(_offline(make_cfg, tmp_path, "geometry", "protocol.drift.strength=0"))
    for key in ("image_auroc", "stream_image_auroc", "pixel_auroc", "pro"):
        assert zero[key] == base[key], key


def test_a_drifted_replay_gives_the_drifted_runs_numbers(make_cfg, tmp_path):
    over = (
        "protocol.drift.name=geometry",
        "protocol.drift.strength=2.0",
        "mode=online",
        "protocol.decision_folds=5",
    )
    real = run(make_cfg("dataset.category=gravel", *over, out=tmp_path / "real"))
    cfg = make_cfg(
        "dataset.category=gravel",
        *over,
        f"replay.cache_dir={tmp_path / 'cache'}",
        out=tmp_path / "replay",
    )
    replayed = run(cfg, open_inputs=CacheOpener(cfg))
    for key in ("image_auroc", "stream_image_auroc", "pixel_auroc", "pro", "fpr_at_shots"):
        assert replayed[key] == pytest.approx(real[key], abs=1e-4), key
    # one cache for the category, one for its geometry-drifted stream
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*.pt"))
    assert len(files) == 2 and sum("-geometry-" in f for f in files) == 1


def test_a_checkpoint_resumes_only_the_same_drifted_stream(make_cfg, tmp_path):
    first = make_cfg(
        "dataset.category=gravel",
        "protocol.drift.name=defocus",
        "protocol.max_stream_images=8",
        "protocol.decision_folds=null",
        out=tmp_path / "first",
    )
    run(first)
    ckpt = tmp_path / "first" / "checkpoint.pt"
    with pytest.raises(ValueError, match="drift"):
        run(make_cfg("dataset.category=gravel", f"ckpt_path={ckpt}", out=tmp_path / "other"))
    resumed = run(
        make_cfg(
            "dataset.category=gravel",
            "protocol.drift.name=defocus",
            f"ckpt_path={ckpt}",
            "protocol.decision_folds=null",
            out=tmp_path / "resumed",
        )
    )
    rows = list(csv.DictReader((tmp_path / "resumed" / "images.csv").open()))
    levels = [float(r["drift_level"]) for r in rows]
    # images.csv covers the whole stream; the resumed images keep the levels of their
    # positions in it
    assert [int(r["position"]) for r in rows] == list(range(int(resumed["stream_length"])))
    assert levels[-1] == 1.0
    assert levels[8] == pytest.approx(8 / (resumed["stream_length"] - 1), abs=1e-3)
