"""Loggers: the CSV logger by default, W&B offline with session metrics and figures."""

import csv
import json

import numpy as np
import pytest

from foads.run import run


def test_csv_logger_holds_the_session_metrics(make_cfg, tmp_path):
    summary = run(make_cfg("dataset.category=gravel", "logger=csv", "method.num_nodes=60"))
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()))
    logged = [float(r["session/image_auroc"]) for r in rows if r.get("session/image_auroc")]
    sessions = list(csv.DictReader((tmp_path / "run" / "sessions.csv").open()))
    # sessions.csv leaves a session without both classes empty; the logger writes nan.
    expected = [float(r["image_auroc"] or "nan") for r in sessions]
    np.testing.assert_allclose(logged, expected, atol=1e-6)
    assert summary["num_images"] == sum(int(r["images"]) for r in sessions)


def test_wandb_offline_run_has_session_metrics_and_figures(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "run"))
    run(make_cfg("dataset.category=gravel", "logger=wandb", "method.num_nodes=60"))
    runs = list((tmp_path / "run").rglob("offline-run-*"))
    assert len(runs) == 1
    media = {p.name.split("_")[0] for p in runs[0].rglob("*.png")}
    assert {"sessions", "overlays"} <= media
    history = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    assert b"session/image_auroc" in history and b"session/pro" in history
    # The resolved config, the final metrics in the run summary and the session table.
    assert b"num_nodes" in history and b"final/image_auroc" in history
    sessions = list(csv.DictReader((tmp_path / "run" / "sessions.csv").open()))
    (table,) = runs[0].rglob("sessions_table_*.table.json")
    assert len(json.loads(table.read_text())["data"]) == len(sessions)


def test_wandb_runs_of_one_sweep_share_a_group(tmp_path, monkeypatch, synthetic_root, multirun):
    pytest.importorskip("wandb")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = tmp_path / "sweep"
    multirun(sweep, synthetic_root, "sweep=comparison_smoke", "method=padim", "logger=wandb")
    files = sorted(sweep.rglob("offline-run-*/*.wandb"))
    assert len(files) == 3  # offline, online under the published and the fair gate
    assert all(str(sweep).encode() in f.read_bytes() for f in files)
