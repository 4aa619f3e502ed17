"""Fault injection: a stream interrupted by SIGTERM, SIGINT or SIGKILL at several positions,
then resumed, ends exactly as the uninterrupted stream (docs/resume.md)."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import compose_config, small_run_overrides
from foads.outputs.checkpoint import read_checkpoint
from foads.run import run

DRIVER = Path(__file__).with_name("interrupt_driver.py")
# 16 stream images in batches of 4 and sessions of 4; a checkpoint after every session.
BASE = ("dataset.category=brick", "protocol.checkpoint_every=1")
# Wall-clock figures differ between any two runs; everything else must not.
TIMING = {"fit_seconds", "seconds_per_image", "resumed_at", "compute_seconds", "image_seconds"}


def _interrupt(small_overrides, out: Path, name: str, position: int):
    """Run BASE in a subprocess that sends itself `name` when the batch holding `position`
    starts; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(DRIVER), name, str(position), *small_overrides(*BASE, out=out)]
    return subprocess.run(args, check=False, capture_output=True, text=True, env=env, timeout=600)


def _assert_same(value, other, path="checkpoint"):
    """Recursively equal: tensors bit for bit, numbers exactly (timing left out)."""
    if isinstance(value, dict):
        assert set(value) == set(other), path
        for key in value:
            if key not in TIMING:
                _assert_same(value[key], other[key], f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        assert len(value) == len(other), path
        for i, (a, b) in enumerate(zip(value, other, strict=True)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(value, torch.Tensor):
        assert value.dtype == other.dtype and value.shape == other.shape, path
        same = (
            (value == other) | (value.isnan() & other.isnan())
            if value.is_floating_point()
            else value == other
        )
        assert bool(same.all()), path
    elif isinstance(value, float) and math.isnan(value):
        assert isinstance(other, float) and math.isnan(other), path
    else:
        assert value == other, path


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _assert_same_summary(a, b, path="summary") -> None:
    """Equal to 1e-9 in every metric, at every level (categories, mean), timing left out."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in set(a) - TIMING:
            _assert_same_summary(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-9, nan_ok=True), path
    else:
        assert a == b, path


def _rows(path: Path, drop: str | None = None) -> list[dict]:
    with path.open() as f:
        return [{k: v for k, v in row.items() if k != drop} for row in csv.DictReader(f)]


def _assert_same_run(full: Path, resumed: Path) -> None:
    a = read_checkpoint(full / "checkpoint.pt")
    b = read_checkpoint(resumed / "checkpoint.pt")
    _assert_same(a["state"], b["state"], "state")
    _assert_same(a["evaluator"], b["evaluator"], "evaluator")
    assert b["stream"]["finished"] and b["stream"]["position"] == a["stream"]["position"]
    _assert_same_summary(_summary(full), _summary(resumed))
    assert _rows(full / "sessions.csv", "seconds_per_image") == _rows(
        resumed / "sessions.csv", "seconds_per_image"
    )
    assert _rows(full / "images.csv") == _rows(resumed / "images.csv")


@pytest.fixture(scope="module")
def uninterrupted(synthetic_root, tmp_path_factory):
    """The stream run once without interruption (shared: every test only reads it)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "full"
    run(compose_config(small_run_overrides(out, synthetic_root, *BASE)))
    return out


@pytest.mark.parametrize(
    ("name", "position", "kept"),
    [
        ("SIGTERM", 6, 8),  # mid-batch: the batch in progress is finished, then kept
        ("SIGINT", 8, 12),  # at a batch's first image
        ("SIGTERM", 13, 16),  # in the last batch: the run finishes (exit 0), nothing is lost
        ("SIGKILL", 10, 8),  # no handler runs: the last periodic checkpoint (session 2)
    ],
)
def test_an_interrupted_stream_resumes_to_the_uninterrupted_result(
    small_overrides, make_cfg, uninterrupted, tmp_path, name, position, kept
):
    out = tmp_path / "interrupted"
    proc = _interrupt(small_overrides, out, name, position)
    ckpt = read_checkpoint(out / "checkpoint.pt")
    assert ckpt["stream"]["position"] == kept, proc.stderr[-2000:]
    if name == "SIGKILL":
        assert proc.returncode == -9
    elif kept == 16:
        assert proc.returncode == 0 and (out / "summary.json").is_file(), proc.stderr[-2000:]
    else:
        # Non-zero (128 + the signal), one line on stderr, and error.txt says how to go on.
        assert proc.returncode == 128 + {"SIGTERM": 15, "SIGINT": 2}[name], proc.stderr[-2000:]
        error = (out / "error.txt").read_text()
        assert f"interrupted by {name}" in error and f"ckpt_path={out}" in error
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("foads: interrupted by") and "Traceback" not in proc.stderr
        assert not (out / "summary.json").exists()
    # The sessions finished before the signal are on disk already.
    assert len(_rows(out / "sessions.csv")) >= kept // 4
    run(make_cfg(*BASE, f"ckpt_path={out}", out=out))  # into the same folder
    assert not (out / "error.txt").exists()
    _assert_same_run(uninterrupted, out)


def test_a_stream_stopped_mid_batch_resumes_exactly(make_cfg, uninterrupted, tmp_path):
    """max_stream_images=6 with batches of 4 stops inside a batch: the checkpoint keeps the
    state at position 4, before that batch, and the resumed run scores the batch whole."""
    first = run(make_cfg(*BASE, "protocol.max_stream_images=6", out=tmp_path / "a"))
    assert first["num_images"] == 6
    ckpt = read_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert ckpt["stream"]["position"] == 4 and not ckpt["stream"]["finished"]
    rest = run(make_cfg(*BASE, f"ckpt_path={tmp_path / 'a'}", out=tmp_path / "b"))
    assert rest["num_images"] == 16 and rest["categories"]["brick"]["resumed_at"] == 4
    _assert_same_run(uninterrupted, tmp_path / "b")


def test_a_finished_stream_says_so_and_keeps_its_results(make_cfg, uninterrupted, tmp_path):
    again = run(make_cfg(*BASE, f"ckpt_path={uninterrupted}", out=tmp_path / "again"))
    _assert_same_summary(_summary(uninterrupted), _summary(tmp_path / "again"))
    assert again["num_images"] == 16 and not math.isnan(again["stream_image_auroc"])


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("method.num_nodes=120", "method.num_nodes=150 in the checkpoint, 120 now"),
        ("protocol.batch_size=2", "protocol.batch_size=4 in the checkpoint, 2 now"),
        ("protocol.session_size=8", "protocol.session_size=4 in the checkpoint, 8 now"),
        ("mode=offline", "mode='online' in the checkpoint, 'offline' now"),
    ],
)
def test_a_checkpoint_refuses_other_settings_by_name(make_cfg, tmp_path, override, named):
    run(make_cfg(*BASE, "protocol.max_stream_images=8", out=tmp_path / "a"))
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        run(make_cfg(*BASE, override, f"ckpt_path={tmp_path / 'a'}", out=tmp_path / "b"))
