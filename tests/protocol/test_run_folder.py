"""Checkpoints are data, not code; a damaged one is refused by name; one folder holds one run."""

import json
import os
import time
from pathlib import Path

import pytest
import torch

from foads.outputs.checkpoint import FORMAT, read_checkpoint
from foads.outputs.jobs import find_jobs
from foads.run import run

BASE = ("dataset.category=brick", "protocol.max_stream_images=4")


class _WritesAFile:
    """Unpickling this calls Path.write_text: what a crafted checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "code ran"))


def test_a_crafted_checkpoint_runs_no_code(make_cfg, tmp_path):
    marker = tmp_path / "pwned.txt"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format": FORMAT, "method": "kng", "state": _WritesAFile(marker)}, crafted)
    with pytest.raises(ValueError, match=f"ckpt_path={crafted}"):
        run(make_cfg(*BASE, f"ckpt_path={crafted}"))
    assert not marker.exists()
    # The same file inside a well-formed envelope (a valid SHA-256 of a malicious payload).
    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "method": "kng", "state": _WritesAFile(marker)}, buffer)
    payload = buffer.getvalue()
    envelope = tmp_path / "enveloped.pt"
    torch.save(
        {
            "foads_checkpoint": FORMAT,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": payload,
        },
        envelope,
    )
    with pytest.raises(ValueError, match=f"ckpt_path={envelope}: cannot be read"):
        read_checkpoint(envelope)
    assert not marker.exists()


@pytest.fixture
def good_checkpoint(make_cfg, tmp_path) -> Path:
    run(make_cfg(*BASE, out=tmp_path / "a"))
    return tmp_path / "a" / "checkpoint.pt"


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit-flipped", "not a checkpoint"])
def test_a_damaged_checkpoint_is_refused_by_name(make_cfg, good_checkpoint, tmp_path, damage):
    data = good_checkpoint.read_bytes()
    bad = tmp_path / f"{damage}.pt"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        bad.write_bytes(bytes(flipped))
    else:
        bad.write_text("hello")
    with pytest.raises(ValueError, match=f"ckpt_path={bad}"):
        run(make_cfg(*BASE, f"ckpt_path={bad}", out=tmp_path / "b"))


def test_a_folder_holding_a_run_is_refused_unless_overwritten(make_cfg, tmp_path):
    out = tmp_path / "run"
    first = run(make_cfg(*BASE))
    with pytest.raises(FileExistsError, match=f"paths.output_dir={out} holds the results"):
        run(make_cfg(*BASE, "seed=1"))
    # The first run is untouched.
    assert json.loads((out / "summary.json").read_text())["image_auroc"] == pytest.approx(
        first["image_auroc"], nan_ok=True
    )
    run(make_cfg(*BASE, "seed=1", "overwrite=true"))
    ckpt = read_checkpoint(out / "checkpoint.pt")
    assert ckpt["settings"]["protocol.stream_seed"] == 1


def test_a_folder_holding_a_multi_category_run_is_refused(make_cfg, tmp_path):
    out = tmp_path / "run"
    (out / "brick").mkdir(parents=True)
    (out / "brick" / "sessions.csv").write_text("session\n")
    with pytest.raises(FileExistsError, match="brick"):
        run(make_cfg(*BASE))


def test_the_report_never_counts_a_job_that_failed_after_its_summary(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "summary.json").write_text(json.dumps({"categories": {}, "image_auroc": 0.9}))
    old = time.time() - 60
    os.utime(job / "summary.json", (old, old))
    assert find_jobs(tmp_path)[1][0].status == "ok"
    (job / "error.txt").write_text("ValueError: bad input\n\nTraceback (most recent call last):")
    found = find_jobs(tmp_path)[1][0]
    assert found.status == "failed" and found.error == "ValueError: bad input"
