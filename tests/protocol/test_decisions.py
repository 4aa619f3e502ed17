"""Decisions at an operating point: the shots' held-out threshold, FPR and recall."""

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch

from foads.data.transforms import ImageTransform
from foads.outputs.checkpoint import read_checkpoint
from foads.protocol.calibration import held_out_shot_scores, shots_threshold
from foads.protocol.evaluator import StreamingEvaluator
from foads.protocol.method import Scored, StreamingMethod, Updated
from foads.protocol.stream import image_loader
from foads.run import run

from .test_protocol import write_images


class MeanMethod(StreamingMethod):
    """Scores an image by how far its mean brightness lies from the shots' mean; its own
    threshold moves by one each batch (to test that the evaluator reads it per batch)."""

    name = "mean"

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.collected = []
        self.centre = None
        self.batches = 0

    def collect(self, images):
        self.collected.append(images.mean(dim=(1, 2, 3)))

    def fit_shots(self):
        self.centre = torch.cat(self.collected).mean()

    def score(self, images):
        s = (images.mean(dim=(1, 2, 3)) - self.centre).abs()
        return Scored(s[:, None, None].expand(-1, 4, 4), s)

    def update(self, images, scored, learn=None):
        self.batches += 1
        return Updated()

    def decision_threshold(self):
        return None if self.batches == 0 else 0.1 * self.batches


def trainer(callbacks=()):
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def test_each_shot_is_scored_by_a_method_fitted_on_the_other_folds(tmp_path):
    values = [40, 60, 80, 100, 120, 140, 160]
    shots = write_images(tmp_path, [(v, 0) for v in values])
    transform = ImageTransform(16, 16)
    scores = held_out_shot_scores(
        MeanMethod, trainer, lambda s: image_loader(s, transform, 2), shots, folds=3
    )
    means = np.array([transform_mean(transform, s) for s in shots])
    fold = np.arange(7) % 3
    expected = [abs(means[i] - means[fold != fold[i]].mean()) for i in range(7)]
    assert scores == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert shots_threshold(scores) == pytest.approx(max(expected), rel=1e-5)
    assert shots_threshold(scores, 0.5) == pytest.approx(np.median(expected), rel=1e-5)
    with pytest.raises(ValueError, match="decision_folds"):
        held_out_shot_scores(MeanMethod, trainer, None, shots[:1], folds=5)
    with pytest.raises(ValueError, match="decision_quantile"):
        shots_threshold(scores, 0.0)


def transform_mean(transform, sample):
    from foads.data.images import load_sample_image

    return float(transform(load_sample_image(sample)).mean())


def test_fpr_and_recall_per_session_and_stream_by_hand(tmp_path):
    rng = np.random.default_rng(1)
    labels = [0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0]
    values = [int(v) for v in rng.integers(20, 230, len(labels))]
    stream = write_images(tmp_path, list(zip(values, labels, strict=True)))
    transform = ImageTransform(16, 16)
    method = MeanMethod()
    evaluator = StreamingEvaluator(
        stream,
        lambda s: torch.zeros(16, 16, dtype=torch.bool),
        session_size=4,
        has_masks=False,
        shots_threshold=0.5,
        sessions_csv=tmp_path / "sessions.csv",
    )
    t = trainer([evaluator])
    t.fit(method, train_dataloaders=image_loader(stream[:3], transform, 3))
    t.test(method, dataloaders=image_loader(stream, transform, 2, True), verbose=False)
    scores = np.array(evaluator.image_scores)
    y = np.array(labels, dtype=bool)
    own = np.repeat([np.nan, 0.1, 0.2, 0.3, 0.4, 0.5], 2)  # None before the first update
    for i, session in enumerate(evaluator.sessions):
        sl = slice(4 * i, 4 * i + 4)
        s, g = scores[sl], y[sl]
        assert session["fpr_at_shots"] == pytest.approx((s[~g] > 0.5).mean())
        assert session["recall_at_shots"] == pytest.approx((s[g] > 0.5).mean())
        o, known = own[sl], ~np.isnan(own[sl])
        good, bad = known & ~g, known & g
        fpr = (s[good] > o[good]).mean() if good.any() else math.nan
        rec = (s[bad] > o[bad]).mean() if bad.any() else math.nan
        assert session["fpr_at_own"] == pytest.approx(fpr, nan_ok=True)
        assert session["recall_at_own"] == pytest.approx(rec, nan_ok=True)
    summary = evaluator.summary
    assert summary["fpr_at_shots"] == pytest.approx((scores[~y] > 0.5).mean())
    assert summary["recall_at_shots"] == pytest.approx((scores[y] > 0.5).mean())
    assert summary["last_half_fpr_at_shots"] == pytest.approx((scores[4:][~y[4:]] > 0.5).mean())
    assert summary["shots_threshold"] == 0.5
    rows = list(csv.DictReader((tmp_path / "sessions.csv").open()))
    assert float(rows[0]["fpr_at_shots"]) == pytest.approx(evaluator.sessions[0]["fpr_at_shots"])


def test_a_run_reports_decisions_and_a_resume_keeps_the_threshold(make_cfg, tmp_path):
    first = run(
        make_cfg(
            "dataset.category=gravel", "protocol.max_stream_images=12", "protocol.decision_folds=5"
        )
    )
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    threshold = ckpt["stream"]["shots_threshold"]
    assert threshold > 0 and first["shots_threshold"] == pytest.approx(threshold)
    for key in ("fpr_at_shots", "recall_at_shots", "fpr_at_own", "recall_at_own"):
        assert 0 <= first[key] <= 1, key
    # K-NG's own threshold is its stream gate: known from the second batch on
    rows = list(csv.DictReader((tmp_path / "run" / "images.csv").open()))
    assert rows[0]["own_threshold"] == "" and float(rows[-1]["own_threshold"]) > 0
    resumed = run(
        make_cfg(
            "dataset.category=gravel",
            f"ckpt_path={tmp_path / 'run' / 'checkpoint.pt'}",
            "protocol.decision_folds=7",  # would give another threshold if recomputed
            out=tmp_path / "resumed",
        )
    )
    assert resumed["shots_threshold"] == pytest.approx(threshold)
    off = run(
        make_cfg("dataset.category=gravel", "protocol.decision_folds=null", out=tmp_path / "o")
    )
    assert math.isnan(off["fpr_at_shots"]) and not math.isnan(off["fpr_at_own"])
