"""K-NG end to end on a small synthetic stream with the pretrained EfficientNet-Lite0."""

import csv
import json
import math
import re

import numpy as np
import pytest
import torch

from foads.outputs.checkpoint import read_checkpoint
from foads.run import run


def read_sessions(path):
    return list(csv.DictReader(path.open()))


def test_online_kng_detects_and_segments_and_outputs_agree(make_cfg, tmp_path):
    cfg = make_cfg("dataset.category=gravel", "mode=online")
    summary = run(cfg)
    out = tmp_path / "run"
    # Seen on seeds 0-2 of this setting: image >= 0.94, stream image >= 0.92, pixel >= 0.96,
    # PRO >= 0.90.
    assert summary["image_auroc"] > 0.85
    assert summary["stream_image_auroc"] > 0.85
    assert summary["pixel_auroc"] > 0.93
    assert summary["stream_pixel_auroc"] > 0.93
    assert summary["pro"] > 0.8
    for name in (
        "summary.json",
        "sessions.csv",
        "sessions.png",
        "overlays.png",
        "checkpoint.pt",
        "config_resolved.yaml",
    ):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["image_auroc"] == pytest.approx(summary["image_auroc"])
    rows = read_sessions(out / "sessions.csv")
    assert sum(int(r["images"]) for r in rows) == on_disk["num_images"] == 16
    per_session = [float(r["image_auroc"]) for r in rows if r["image_auroc"]]
    assert np.mean(per_session) == pytest.approx(on_disk["image_auroc"], abs=1e-5)
    assert on_disk["sessions_without_both_classes"] == len(rows) - len(per_session)
    accepted = [float(r["accepted_fraction"]) for r in rows]
    assert all(0 < a <= 1 for a in accepted)
    assert 0 <= on_disk["absorbed_anomalous_fraction"] <= 1
    assert on_disk["num_nodes"] <= 150 and on_disk["model_state_bytes"] > 0
    assert on_disk["seconds_per_image"] > 0 and on_disk["fit_seconds"] > 0
    for key in ("pixel_auroc", "pro", "stream_pixel_auroc", "stream_pro", "num_images"):
        assert key in on_disk


def test_offline_never_changes_the_model(make_cfg, tmp_path):
    summary = run(make_cfg("dataset.category=grass", "mode=offline"))
    assert math.isnan(summary["accepted_fraction"])
    assert summary["model_state_bytes"] == summary["categories"]["grass"]["model_state_bytes_start"]
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["stream"]["position"] == summary["num_images"]


def test_all_categories_write_a_table_and_each_category(make_cfg, tmp_path):
    summary = run(make_cfg("dataset.category=all", "method.num_nodes=60", "method.epochs=1"))
    out = tmp_path / "run"
    assert set(summary["categories"]) == {"brick", "grass", "gravel"}
    means = [summary["categories"][c]["image_auroc"] for c in ("brick", "grass", "gravel")]
    assert summary["image_auroc"] == pytest.approx(np.mean(means))
    table = (out / "table.md").read_text()
    assert "| Average |" in table and "| gravel |" in table
    assert f"{100 * summary['image_auroc']:.1f}" in table.split("| Average |")[1]
    for cat in ("brick", "grass", "gravel"):
        assert (out / cat / "sessions.csv").is_file() and (out / cat / "summary.json").is_file()


def test_a_checkpoint_continues_the_stream_exactly(make_cfg, tmp_path):
    full = run(make_cfg("dataset.category=brick", out=tmp_path / "full"))
    run(make_cfg("dataset.category=brick", "protocol.max_stream_images=8", out=tmp_path / "a"))
    rest = run(
        make_cfg(
            "dataset.category=brick",
            f"ckpt_path={tmp_path / 'a' / 'checkpoint.pt'}",
            out=tmp_path / "b",
        )
    )
    # The resumed run's summary covers the whole stream, as the uninterrupted one.
    assert rest["num_images"] == full["num_images"]
    assert rest["stream_image_auroc"] == full["stream_image_auroc"]
    a = read_checkpoint(tmp_path / "full" / "checkpoint.pt")["state"]["model"]
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-9)


def test_a_checkpoint_of_another_stream_is_refused(make_cfg, tmp_path):
    run(make_cfg("dataset.category=brick", "protocol.max_stream_images=4", out=tmp_path / "a"))
    with pytest.raises(
        ValueError, match=re.escape("protocol.stream_seed=0 in the checkpoint, 1 now")
    ):
        run(
            make_cfg(
                "dataset.category=brick", "seed=1", f"ckpt_path={tmp_path / 'a' / 'checkpoint.pt'}"
            )
        )
