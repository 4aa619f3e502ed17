"""The protocol: split, test-then-train order, no labels reach a method, sessions, bad items."""

import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from foads.data.errors import DatasetError
from foads.data.sample import CategoryData, Sample
from foads.data.transforms import ImageTransform
from foads.metrics import auroc
from foads.protocol.evaluator import StreamingEvaluator
from foads.protocol.method import Scored, StreamingMethod, Updated
from foads.protocol.split import few_shot_split
from foads.protocol.stream import image_loader


class RecordingMethod(StreamingMethod):
    """Scores an image by its mean brightness and records every call it receives."""

    name = "recording"

    def __init__(self):
        super().__init__()
        self.calls = []
        self.seen_keys = set()
        self.learn = []
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        self.seen_keys |= set(batch)
        super().training_step(batch, batch_idx)

    def collect(self, images):
        self.calls.append(("collect", images.shape[0]))

    def fit_shots(self):
        self.calls.append(("fit",))

    def test_step(self, batch, batch_idx):
        self.seen_keys |= set(batch)
        self.calls.append(("score", tuple(batch["index"].tolist())))
        return super().test_step(batch, batch_idx)

    def score(self, images):
        maps = images.mean(1)
        return Scored(maps, maps.mean((1, 2)), cache=images.shape[0])

    def update(self, images, scored, learn=None):
        self.calls.append(("update", images.shape[0]))
        self.learn.append(learn)
        return Updated(accepted=torch.ones(images.shape[0], 4, 4, dtype=torch.bool))


def write_images(tmp_path, brightness):
    samples = []
    for i, (value, label) in enumerate(brightness):
        path = tmp_path / f"img{i:03d}.png"
        Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(path)
        samples.append(Sample(path, label, None, "defect" if label else "good"))
    return samples


def run_protocol(tmp_path, stream, mode, session_size=4, batch_size=3, method=None, **options):
    transform = ImageTransform(resize=16, crop=16)
    method = method or RecordingMethod()
    evaluator = StreamingEvaluator(
        stream,
        lambda s: torch.zeros(16, 16, dtype=torch.bool),
        mode=mode,
        session_size=session_size,
        sessions_csv=tmp_path / "sessions.csv",
        has_masks=False,
        **options,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        callbacks=[evaluator],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    shots = stream[:2]  # which images the fit sees does not matter to the protocol
    trainer.fit(method, train_dataloaders=image_loader(shots, transform, batch_size))
    trainer.test(
        method, dataloaders=image_loader(stream, transform, batch_size, True), verbose=False
    )
    return method, evaluator


@pytest.fixture
def stream(tmp_path):
    rng = np.random.default_rng(0)
    labels = [0, 1] * 7
    values = [int(rng.integers(0, 120)) + 100 * lab for lab in labels]
    values[3] = values[2]  # a tie
    return write_images(tmp_path, list(zip(values, labels, strict=True)))


def test_every_batch_is_scored_before_it_is_learned_from(tmp_path, stream):
    method, _ = run_protocol(tmp_path, stream, "online")
    calls = [c for c in method.calls if c[0] in ("score", "update")]
    assert [c[0] for c in calls] == ["score", "update"] * 5
    for scored, updated in zip(calls[::2], calls[1::2], strict=True):
        assert len(scored[1]) == updated[1]
    assert method.calls[:2] == [("collect", 2), ("fit",)]


def test_offline_never_updates(tmp_path, stream):
    method, evaluator = run_protocol(tmp_path, stream, "offline")
    assert not [c for c in method.calls if c[0] == "update"]
    assert math.isnan(evaluator.summary["accepted_fraction"])


def test_no_label_or_mask_reaches_a_method(tmp_path, stream):
    method, evaluator = run_protocol(tmp_path, stream, "online")
    assert method.seen_keys <= {"image", "index", "skipped"}
    assert method.learn == [None] * 5
    assert evaluator.summary["uses_labels"] is False


def test_oracle_mode_lets_a_method_learn_from_good_images_only(tmp_path, stream):
    method, evaluator = run_protocol(tmp_path, stream, "oracle", batch_size=3)
    learned = torch.cat(method.learn).tolist()
    assert learned == [s.label == 0 for s in stream]
    assert evaluator.summary["uses_labels"] is True


@pytest.mark.parametrize("window", [100, 4])
def test_oracle_split_learns_the_good_images_below_or_above_the_running_median(tmp_path, window):
    # brightness unrelated to the label, so that good images fall on both sides of the median
    rng = np.random.default_rng(1)
    stream = write_images(
        tmp_path, [(int(rng.integers(0, 256)), int(i % 3 == 0)) for i in range(14)]
    )
    runs = {
        part: run_protocol(
            tmp_path, stream, "oracle", batch_size=3, oracle_images=part, oracle_window=window
        )
        for part in ("easy", "hard")
    }
    scores = runs["easy"][1].image_scores
    assert runs["hard"][1].image_scores == scores  # the learner does not change the scores
    expected_easy = []
    for start in range(0, len(stream), 3):
        end = min(start + 3, len(stream))
        median = float(np.median(scores[max(0, end - window) : end]))
        expected_easy += [stream[i].label == 0 and scores[i] <= median for i in range(start, end)]
    easy = torch.cat(runs["easy"][0].learn).tolist()
    hard = torch.cat(runs["hard"][0].learn).tolist()
    assert easy == expected_easy
    assert 0 < sum(easy) < sum(s.label == 0 for s in stream)
    # together the two parts are exactly the full oracle's images, each once
    assert [e + h for e, h in zip(easy, hard, strict=True)] == [int(s.label == 0) for s in stream]
    assert runs["hard"][1].summary["oracle_images"] == "hard"
    assert runs["hard"][1].summary["uses_labels"] is True


def test_oracle_split_rejects_unknown_values(stream):
    with pytest.raises(ValueError, match=r"oracle_images.*'medium'"):
        StreamingEvaluator(stream, None, mode="oracle", oracle_images="medium")
    with pytest.raises(ValueError, match=r"oracle_window.*0"):
        StreamingEvaluator(stream, None, mode="oracle", oracle_window=0)


def test_sessions_hold_the_metrics_of_their_images(tmp_path, stream):
    _, evaluator = run_protocol(tmp_path, stream, "online", session_size=4, batch_size=3)
    scores = np.array(evaluator.image_scores)
    labels = np.array([s.label for s in stream])
    assert [s["images"] for s in evaluator.sessions] == [4, 4, 4, 2]
    for i, session in enumerate(evaluator.sessions):
        lo, hi = 4 * i, 4 * i + session["images"]
        assert session["image_auroc"] == pytest.approx(auroc(scores[lo:hi], labels[lo:hi]))
        assert session["anomalies"] == labels[lo:hi].sum()
    summary = evaluator.summary
    assert summary["stream_image_auroc"] == pytest.approx(auroc(scores, labels))
    assert summary["image_auroc"] == pytest.approx(
        np.mean([s["image_auroc"] for s in evaluator.sessions])
    )
    assert summary["accepted_fraction"] == 1.0
    rows = list(csv.DictReader((tmp_path / "sessions.csv").open()))
    assert [float(r["image_auroc"]) for r in rows] == pytest.approx(
        [s["image_auroc"] for s in evaluator.sessions], abs=1e-6
    )


def test_images_csv_holds_every_scored_image_in_stream_order(tmp_path, stream):
    _, evaluator = run_protocol(tmp_path, stream, "online", images_csv=tmp_path / "images.csv")
    rows = list(csv.DictReader((tmp_path / "images.csv").open()))
    assert [int(r["position"]) for r in rows] == list(range(len(stream)))
    assert [r["path"] for r in rows] == [str(s.path) for s in stream]
    assert [int(r["label"]) for r in rows] == [s.label for s in stream]
    assert [float(r["image_score"]) for r in rows] == pytest.approx(evaluator.image_scores, 1e-5)
    # RecordingMethod accepts all 16 patches of every image and has no image-level rule.
    assert {(r["accepted_patches"], r["patches"], r["learned"]) for r in rows} == {("16", "16", "")}


def test_images_csv_keeps_the_images_finished_before_a_crash(tmp_path, stream):
    method = RecordingMethod()
    calls = 0

    def failing_update(images, scored, learn=None):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("out of memory")
        return Updated(accepted=torch.ones(images.shape[0], 4, 4, dtype=torch.bool))

    method.update = failing_update
    with pytest.raises(RuntimeError, match="out of memory"):
        run_protocol(tmp_path, stream, "online", method=method, images_csv=tmp_path / "images.csv")
    rows = list(csv.DictReader((tmp_path / "images.csv").open()))
    assert [int(r["position"]) for r in rows] == [0, 1, 2, 3, 4, 5]  # two batches of three


def test_unreadable_stream_image_is_skipped_and_counted(tmp_path, stream):
    stream[5].path.write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="img005.png"):
        _, evaluator = run_protocol(tmp_path, stream, "online")
    summary = evaluator.summary
    assert summary["skipped_images"] == 1 and summary["skipped"][0]["position"] == 5
    assert summary["num_images"] == len(stream) - 1
    assert 5 not in evaluator.positions


def category(n_train, n_test):
    train = [Sample(Path(f"/d/train/{i:02d}.png"), 0) for i in range(n_train)]
    test = [Sample(Path(f"/d/test/{i:02d}.png"), i % 2) for i in range(n_test)]
    return CategoryData("toy", train, test)


def test_split_moves_every_other_good_image_into_the_stream():
    data = category(25, 12)
    split = few_shot_split(data, shots=10, split_seed=0, stream_seed=0)
    assert len(split.shots) == 10 and len(split.stream) == 15 + 12
    assert {s.path for s in split.shots} | {s.path for s in split.stream} == {
        s.path for s in data.train + data.test
    }
    assert not {s.path for s in split.shots} & {s.path for s in split.stream}
    again = few_shot_split(data, shots=10, split_seed=0, stream_seed=0)
    assert again == split
    other_stream = few_shot_split(data, shots=10, split_seed=0, stream_seed=1)
    assert other_stream.shots == split.shots and other_stream.stream != split.stream
    other_split = few_shot_split(data, shots=10, split_seed=1, stream_seed=0)
    assert other_split.shots != split.shots


def test_more_shots_than_good_training_images_is_a_clear_error():
    with pytest.raises(DatasetError, match="shots=12 but category 'toy' has only 5 good"):
        few_shot_split(category(5, 4), shots=12, split_seed=0, stream_seed=0)


@pytest.mark.parametrize("rate", [0.5, 0.8, 0.1])
def test_anomaly_rate_subsamples_the_stream_to_that_defect_share(rate):
    data = category(40, 40)  # stream: 30 + 20 good, 20 defective (29%)
    full = few_shot_split(data, shots=10, split_seed=0, stream_seed=3)
    split = few_shot_split(data, shots=10, split_seed=0, stream_seed=3, anomaly_rate=rate)
    bad = sum(s.label for s in split.stream)
    good = len(split.stream) - bad
    assert bad / len(split.stream) == pytest.approx(rate, abs=0.02)
    # Only the commoner class loses images; the order of the stream is kept.
    assert (bad == 20) if rate > 20 / 70 else (good == 50)
    position = {s.path: i for i, s in enumerate(full.stream)}
    kept = [position[s.path] for s in split.stream]
    assert kept == sorted(kept)
    assert split.shots == full.shots


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5])
def test_anomaly_rate_outside_zero_one_is_a_clear_error(rate):
    with pytest.raises(
        DatasetError, match=f"anomaly_rate must lie strictly between 0 and 1, got {rate}"
    ):
        few_shot_split(category(30, 10), shots=10, split_seed=0, stream_seed=0, anomaly_rate=rate)
