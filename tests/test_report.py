"""The comparison report reads finished runs' summaries; it never re-runs a model."""

import json

from foads.report import comparison_rows, find_runs, main, online_gain, table7_rows


def write_run(root, name, mode, image, pro, categories=("a", "b")):
    run = root / name
    run.mkdir(parents=True)
    cats = {c: {"image_auroc": image, "pixel_auroc": 0.9, "pro": pro} for c in categories}
    mean = {
        "image_auroc": image,
        "pixel_auroc": 0.9,
        "pro": pro,
        "stream_image_auroc": image,
        "initial_parameters": 42_100_000,
        "state_grew": mode == "online",
        "model_state_bytes": 3 * 2**20 if mode == "online" else 2**20,
        "model_state_bytes_start": 2**20,
    }
    (run / "summary.json").write_text(
        json.dumps({"method": "kng", "mode": mode, "categories": cats, "mean": mean, **mean})
    )
    (run / "a").mkdir()
    (run / "a" / "summary.json").write_text(json.dumps(cats["a"]))  # per-category: skipped


def test_report_lays_out_runs_and_the_online_gain(tmp_path, capsys):
    write_run(tmp_path, "0", "offline", 0.80, 0.70)
    write_run(tmp_path, "1", "online", 0.85, 0.72, categories=("a",))
    runs = find_runs(tmp_path)
    assert len(runs) == 2
    rows = comparison_rows(runs)
    assert rows[0][1:4] == ["kng offline Image", "kng offline Pixel", "kng offline PRO"]
    assert rows[1] == ["a", "80.0", "90.0", "70.0", "85.0", "90.0", "72.0"]
    assert rows[2][4] == "missing"  # category b did not run online
    assert online_gain(runs) == [
        "kng: online - offline: Image +5.0, Pixel +0.0, PRO +2.0, stream Image +5.0"
    ]
    assert table7_rows(runs)[1] == ["kng", "42.1", "yes (+2.00 MiB)", "(+5.0, +2.0)"]
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| Average | 80.0 |" in out and "| kng | 42.1 | yes (+2.00 MiB) | (+5.0, +2.0) |" in out


def test_runs_sharing_method_and_mode_keep_separate_columns(tmp_path):
    write_run(tmp_path, "0", "online", 0.80, 0.70)
    write_run(tmp_path, "1", "online", 0.90, 0.75)
    rows = comparison_rows(find_runs(tmp_path))
    assert rows[0][1] == "kng online [0] Image" and rows[0][4] == "kng online [1] Image"
    assert online_gain(find_runs(tmp_path)) == []
