"""The benchmarks: every method built from the same config a run uses; the side-by-side
bench's arithmetic on fake runs; the GPU bench's jobs at test sizes on the CPU, and its stop
where there is no CUDA."""

import datetime
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class

from foads import bench_gpu
from foads.bench import METHODS, method_config
from foads.bench import main as bench_main
from foads.bench_report import BEGIN, END, readme_parts, speed_table, write_readme
from foads.bench_sharing import pooled_ratio, print_table, side_by_side, worker_env
from foads.registry import CONF_DIR


def test_bench_covers_every_method_config_with_its_run_defaults():
    # kng_paper is K-NG's code with the paper's rules: the bench's kng row covers it.
    configs = sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml"))
    assert sorted(METHODS) == [c for c in configs if c != "kng_paper"]
    assert {"kng", "padim", "spade", "patchcore", "draem"} <= set(METHODS)
    draem = method_config("draem")
    assert get_class(draem._target_).uses_backbone is False
    assert draem.train_steps == 300 and draem.image_size == 128  # the CPU budget, not the paper's
    kng = method_config("kng")
    assert kng.num_nodes == 3136 and kng.seed == 0


def test_a_rule_is_benched_with_its_overrides_on_top_of_the_defaults():
    rule = method_config("kng", ("method.acceptance.recurrence_window=200",))
    assert rule.acceptance.recurrence_window == 200 and rule.num_nodes == 3136
    assert method_config("kng").acceptance.recurrence_window is None


def test_side_by_side_sets_each_shared_run_against_twice_the_lone_mean(capsys):
    # Fake workers: A and B alone at 0.2 and 0.3 s/image, then at once at 0.4 and 0.6.
    calls = []
    figures = iter([[0.2], [0.3], [0.4, 0.6]] * 2)

    def runner(count, batches):
        calls.append((count, batches))
        seconds = next(figures)
        assert len(seconds) == count
        runs = [{"online_s_per_image": s, "threads": 2, "wait_policy": "PASSIVE"} for s in seconds]
        return runs, {1: 10.0, 2: 15.0}[count]

    rows = side_by_side(trials=2, batches=3, runner=runner)
    assert calls == [(1, 3), (1, 3), (2, 3)] * 2
    row = rows[0]
    assert row["trial"] == 1 and rows[1]["trial"] == 2
    assert row["alone_s"] == [0.2, 0.3] and row["together_s"] == [0.4, 0.6]
    assert row["ratio"] == pytest.approx([0.4 / 0.5, 0.6 / 0.5])  # / (2 x 0.25)
    assert row["slowdown"] == pytest.approx([2.0, 2.0])  # each against itself alone
    assert row["pair_wall_s"] == 15.0 and row["wall_ratio"] == pytest.approx(15 / 20)
    assert row["threads"] == [2] and row["wait_policy"] == ["PASSIVE"]
    assert pooled_ratio(rows) == pytest.approx(1.0)
    print_table(rows)
    out = capsys.readouterr().out
    assert "0.80, 1.20" in out and "15.0 / 20.0 s = 0.75" in out and "1.00 x" in out


def test_side_by_side_runs_take_every_core_with_the_wait_asked_for():
    base = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GOMP_SPINCOUNT": "1000", "A": "a"}
    assert worker_env("active", base) == {"OMP_WAIT_POLICY": "ACTIVE", "A": "a"}
    assert worker_env("openmp", base) == {"GOMP_SPINCOUNT": "300000", "A": "a"}
    assert worker_env("foads", base) == {"A": "a"}  # the worker's import of foads decides
    assert worker_env("env", base) == {"GOMP_SPINCOUNT": "1000", "A": "a"}
    assert worker_env("passive", {})["OMP_WAIT_POLICY"] == "PASSIVE"


def test_bench_gpu_refuses_a_machine_without_cuda_unless_told_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        bench_gpu.main([])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bench-gpu needs CUDA: torch.cuda.is_available() is False")
    assert "--device cpu" in err


def test_bench_gpu_times_every_method_at_both_batch_sizes_on_the_cpu(capsys):
    rows = bench_gpu.main(["--device", "cpu", "--small"])
    assert [(r["method"], r["batch_size"]) for r in rows] == [
        (m, b) for b in bench_gpu.SMALL_BATCH_SIZES for m in METHODS
    ]
    for r in rows:
        assert "error" not in r, r
        assert r["fit_s"] > 0 and r["offline_images_per_s"] > 0 and r["online_images_per_s"] > 0
        assert r["images"] == bench_gpu.SMALL_STREAM_IMAGES and r["peak_gpu_mib"] is None
    out = capsys.readouterr().out
    assert "offline images/s" in out and "total wall time" in out


def test_bench_gpu_runs_draem_at_its_published_sizes_and_the_others_at_their_defaults():
    draem = method_config("draem", bench_gpu.PAPER["draem"])
    assert (draem.reconstructive_width, draem.discriminative_width) == (128, 64)
    assert draem.train_steps == 1400 and draem.image_size is None
    assert set(bench_gpu.PAPER) == {"draem"} and method_config("kng").num_nodes == 3136
    assert bench_gpu.BATCH_SIZES == (10, 100)
    assert all(bench_gpu.STREAM_IMAGES // b >= 2 for b in bench_gpu.BATCH_SIZES)


def _kng_figures():
    return {
        "threads": 2,
        "nodes": 3065,
        "backbone_s_per_image": 0.03,
        "offline_kng_s_per_image": 0.05,
        "online_median_kng_s_per_image": 0.07,
        "online_median_accepted": 0.14,
        "online_none_kng_s_per_image": 0.09,
        "online_none_accepted": 1.0,
        "fit_s": 6.04,
        "state_mib": 180.0,
        "checkpoint_mib": 180.1,
        "peak_rss_mib": 2000.0,
    }


def test_the_readme_speed_table_shows_each_stage_against_offline_with_its_provenance():
    method = {
        "method": "padim",
        "fit_s": 7.6,
        "offline_s_per_image": 0.032,
        "online_s_per_image": 0.099,
        "state_mib_end": 180.4,
    }
    table = speed_table(
        _kng_figures(), [method], 1.01, datetime.date(2026, 12, 2), "a 2-core test machine"
    )
    assert table.startswith("Measured by `make bench` on 2026-12-02: a 2-core test machine; 2")
    assert "| offline: score | 0.080 | 12.5 | 1.00 |" in table
    assert "| online: score + learn, median rule (14% of patches) | 0.100 | 10.0 | 1.25 |" in table
    assert "| online: score + learn, every patch accepted (100% of patches) | 0.120 |" in table
    assert "| 1.50 |" in table  # 0.12 / 0.08
    assert "each takes 1.01 x the time of running both one after the other" in table
    assert "| padim | 7.6 | 0.032 | 0.099 | 180 |" in table


def test_the_bench_rewrites_only_the_readme_speed_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# foads\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    write_readme(readme, "new table")
    assert readme.read_text() == f"# foads\n\nbefore\n{BEGIN}\nnew table\n{END}\nafter\n"
    readme.write_text("# foads without a table\n")
    with pytest.raises(ValueError, match=r"README\.md: expected the lines"):
        write_readme(readme, "new table")
    with pytest.raises(SystemExit):  # checked before the bench runs
        bench_main(["--readme", str(readme)])


def test_the_project_readme_has_the_speed_table_markers():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    readme_parts(readme)  # the markers, once each, in order
    table = readme.read_text().split(BEGIN)[1].split(END)[0]
    assert "Measured by `make bench` on" in table and "| offline: score |" in table
