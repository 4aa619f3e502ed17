"""Sweeps and the report: configs compose, a smoke multirun runs in-process, the report's
numbers are the jobs' own, and broken or missing jobs are marked, not dropped."""

import csv
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from foads.features.backbones import build_backbone
from foads.outputs.jobs import find_jobs, group_settings, parse_overrides
from foads.outputs.report_tables import comparison_rows, gate_rows, online_gain, table7_rows
from foads.registry import CONF_DIR
from foads.report import main, report

SWEEPS = sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose_with(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("efficientnet_lite0")


def instantiate_method(cfg, backbone):
    uses = get_class(cfg.method._target_).uses_backbone
    return instantiate(cfg.method, **({"backbone": backbone} if uses else {}))


@pytest.fixture(scope="session")
def sweep_data_dir(tmp_path_factory):
    """Where the sweeps' datasets are made: a folder of this test process's own (under
    pytest-xdist, workers building the same default outputs/data at once would race)."""
    return tmp_path_factory.mktemp("sweep_data")


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_composes_and_each_of_its_values_instantiates(name, backbone, sweep_data_dir):
    cfg = compose_with(f"sweep={name}")
    params = cfg.hydra.sweeper.params or {}
    if name == "smoke":  # the shared sizes of the *_smoke sweeps, not a sweep itself
        assert not params
        return
    assert str(cfg.hydra.mode).endswith("MULTIRUN") and params
    for key, spec in params.items():
        for value in parse_overrides([f"{key}={spec}"])[key]:  # a list, a range or a glob
            one = compose_with(
                f"sweep={name}", f"{key}={value}", f"paths.data_dir={sweep_data_dir}"
            )
            if key == "seed":
                assert one.protocol.split_seed == one.protocol.stream_seed == int(value)
                continue
            method = instantiate_method(one, backbone)
            if key.startswith("method."):  # the swept value reaches the model or the module
                path = key.split(".")[1:]  # num_nodes, or a group's option: growth.scale
                owner = method.model if hasattr(method.model, path[0]) else method
                for attr in path:
                    owner = getattr(owner, attr)
                assert owner == OmegaConf.select(one, key)
            dataset = OmegaConf.to_container(one.dataset, resolve=True)
            dataset.pop("name")
            instantiate(dataset)
    # Every smoke variant is a small multirun of a real sweep.
    if name.endswith("_smoke"):
        assert name.removesuffix("_smoke") in SWEEPS
        assert cfg.protocol.crop == 112 and cfg.dataset.num_train == 14


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(name, backbone):
    cfg = compose_with(f"experiment={name}")
    method = instantiate_method(cfg, backbone)
    assert type(method).__module__ + "." + type(method).__name__ == cfg.method._target_
    # An experiment pins a setting: it differs from the root config somewhere, and the
    # method built from it carries its options.
    default = compose_with()
    changed = [
        k
        for k in ("method", "dataset", "backbone", "protocol", "mode", "save_checkpoint")
        if cfg.get(k) != default.get(k)
    ]
    assert changed, f"experiment={name} changes nothing"
    if hasattr(method, "model") and hasattr(method.model, "num_nodes"):
        assert method.model.num_nodes == cfg.method.num_nodes
    if "train_steps" in cfg.method:
        assert method.train_steps == cfg.method.train_steps


# docs/extending.md's worked example: a method from a folder of its own, outside foads.
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mean_distance"


@pytest.fixture(scope="module")
def comparison_sweep(tmp_path_factory, multirun, synthetic_root):
    """`sweep=comparison_smoke`, with a toy method added from a temporary folder (its module
    and conf/method/mean_distance.yaml) named by FOADS_CONFIG_PATH alone: no list in foads
    names it, and the sweep and the report take it in."""
    root = tmp_path_factory.mktemp("comparison")
    user = root / "my_methods"
    shutil.copytree(EXAMPLE, user)
    sys.path.insert(0, str(user))
    os.environ["FOADS_CONFIG_PATH"] = str(user / "conf")
    try:
        multirun(root / "sweep", synthetic_root, "sweep=comparison_smoke")
    finally:
        sys.path.remove(str(user))
        del os.environ["FOADS_CONFIG_PATH"]
    return root / "sweep"


def test_smoke_comparison_sweep_runs_and_the_report_equals_the_jobs_summaries(
    comparison_sweep, tmp_path
):
    summaries = {}
    for path in comparison_sweep.glob("*/summary.json"):
        s = json.loads(path.read_text())
        overrides = yaml.safe_load((path.parent / ".hydra" / "overrides.yaml").read_text())
        variant = next(o.split("=")[1] for o in overrides if o.startswith("variant="))
        summaries[f"{overrides[0].split('=')[1]} {variant}"] = s
        assert s["mode"] == ("offline" if variant == "offline" else "online")
    methods = ("kng_paper", "mean_distance", "padim", "patchcore")
    variants = ("offline", "online_fair", "online_paper")
    assert sorted(summaries) == [f"{m} {v}" for m in methods for v in variants]
    # the variant picked the gate: published (shots / none for K-NG) or fair (stream + patch)
    for m in methods:
        cfg = yaml.safe_load(
            next(
                (p.parent / ".hydra" / "config.yaml").read_text()
                for p in comparison_sweep.glob("*/summary.json")
                if f"method={m}" in (p.parent / ".hydra" / "overrides.yaml").read_text()
                and "variant=online_fair" in (p.parent / ".hydra" / "overrides.yaml").read_text()
            )
        )
        gate = cfg["method"]["acceptance"]
        assert gate["image_gate"] == "stream" and gate["patch_gate"] == "image"
    made = report(comparison_sweep, tmp_path / "report")
    rows = [
        line.split(",")
        for line in (tmp_path / "report" / "comparison.csv").read_text().splitlines()
    ]
    header = rows[0]
    assert len(header) == 1 + 12 * 3 and [r[0] for r in rows] == [
        "Category",
        "gravel",
        "Average",
        "Jobs finished",
    ]
    labels = {}
    for col, name in enumerate(header[1:], start=1):
        label, metric = name.rsplit(" ", 1)
        key = {"Image": "image_auroc", "Pixel": "pixel_auroc", "PRO": "pro"}[metric]
        labels.setdefault(label, []).append((col, key))
    assert len(labels) == 12
    for label, cols in labels.items():
        s = summaries[label]  # a swept variant stands for the mode: "padim online_fair"
        for col, key in cols:
            assert rows[1][col] == f"{100 * s['categories']['gravel'][key]:.1f}"
            assert rows[2][col] == f"{100 * s[key]:.1f}"
    assert rows[3][1::3] == ["1/1"] * 12
    # Table 7 pairs each method's published online rule with its offline model.
    table7 = (tmp_path / "report" / "table7.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table7] == ["Method", *methods]
    gain = 100 * (
        summaries["padim online_paper"]["image_auroc"] - summaries["padim offline"]["image_auroc"]
    )
    assert f"({gain:+.1f}," in table7[2]
    # The gates table: offline, then each online variant with its learning and its gain.
    gates = list(csv.reader((tmp_path / "report" / "gates.csv").open()))
    assert gates[0][:4] == ["Method", "offline Image", "offline stream Image", "offline PRO"]
    assert [r[0] for r in gates[1:]] == list(methods)
    for row in gates[1:]:
        for arm in ("online_paper", "online_fair"):
            on, off = summaries[f"{row[0]} {arm}"], summaries[f"{row[0]} offline"]
            at = dict(zip(gates[0], row, strict=True))
            assert at[f"{arm} accepted"] == f"{100 * on['accepted_fraction']:.1f}"
            expected = 100 * (on["stream_image_auroc"] - off["stream_image_auroc"])
            assert at[f"{arm} gain (stream Image)"] == f"{expected:+.1f}"
    # The fair gate learns from fewer images than the published one lets through.
    for m in methods:
        fair, paper = summaries[f"{m} online_fair"], summaries[f"{m} online_paper"]
        assert fair["accepted_fraction"] < paper["accepted_fraction"]
    names = {p.name for p in made["figures"]}
    assert {"sessions_image.png", "sessions_pro.png", "maps_gravel.png"} <= names
    assert (tmp_path / "report" / "failures.txt").read_text() == ""
    # Sweeps keep no models (save_checkpoint: false), but each job's maps for Figure 10.
    assert not list(comparison_sweep.rglob("checkpoint.pt"))
    assert len(list(comparison_sweep.rglob("maps.npz"))) == 12
    # The toy method ran as any other: it ranks the smoke stream's clear defects first.
    toy = summaries["mean_distance offline"]
    assert toy["method"] == "mean_distance" and toy["image_auroc"] > 0.8


def test_report_marks_failed_and_missing_jobs(tmp_path, multirun, synthetic_root):
    """One value of a node sweep is invalid (its jobs fail), and a finished job's folder is
    removed afterwards (it shows as missing); the others keep their numbers."""
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit):  # Hydra reports the failed jobs once all have run
        multirun(sweep, synthetic_root, "sweep=nodes_smoke", "method.num_nodes=36,1")
    jobs = sorted(p.parent for p in sweep.glob("*/.hydra"))
    assert len(jobs) == 4  # 2 node counts x 2 seeds all ran
    finished = [j for j in jobs if (j / "summary.json").exists()]
    assert len(finished) == 2
    values = [json.loads((j / "summary.json").read_text())["image_auroc"] for j in finished]
    made = report(sweep, tmp_path / "report", figures=False)
    ablation = made["ablation"]
    assert ablation[0] == ["num_nodes", "36", "1"]
    assert ablation[1] == [
        "Image",
        f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.pstdev(values):.1f}",
        "failed",
    ]
    failures = (tmp_path / "report" / "failures.txt").read_text().splitlines()
    assert len(failures) == 2 and all("num_nodes must be at least 2" in f for f in failures)

    overrides = (finished[0] / ".hydra" / "overrides.yaml").read_text()
    shutil.rmtree(finished[0])
    made = report(sweep, tmp_path / "report2", figures=False)
    assert made["ablation"][1][1] == f"{100 * values[1]:.1f}"  # the remaining seed
    failures = (tmp_path / "report2" / "failures.txt").read_text()
    assert "missing: " in failures and "never ran" in failures

    # Rerun the missing job alone into its old folder: the report has both seeds again.
    again = [line.removeprefix("- ") for line in overrides.splitlines()]
    again = [o for o in again if not o.startswith("paths.data_dir")]
    multirun(sweep, synthetic_root, *again, "hydra.mode=RUN", f"hydra.run.dir={finished[0]}")
    made = report(sweep, tmp_path / "report3", figures=False)
    assert made["ablation"][1] == ablation[1]


# ---------------------------------------------------------------- hand-made summaries
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


def settings_under(root):
    return group_settings(*find_jobs(root))


def test_report_lays_out_runs_and_the_online_gain(tmp_path, capsys):
    write_run(tmp_path, "0", "offline", 0.80, 0.70)
    write_run(tmp_path, "1", "online", 0.85, 0.72, categories=("a",))
    settings = settings_under(tmp_path)
    assert len(settings) == 2
    rows = comparison_rows(settings)
    assert rows[0][1:4] == ["kng offline Image", "kng offline Pixel", "kng offline PRO"]
    assert rows[1] == ["a", "80.0", "90.0", "70.0", "85.0", "90.0", "72.0"]
    assert rows[2][4] == "missing"  # category b did not run online
    assert online_gain(settings) == [
        "kng: online - offline: Image +5.0, Pixel +0.0, PRO +2.0, stream Image +5.0"
    ]
    assert table7_rows(settings)[1] == ["kng", "42.1", "yes (+2.00 MiB)", "(+5.0, +2.0)"]
    main([str(tmp_path), "--no-figures"])
    out = capsys.readouterr().out
    assert "| Average | 80.0 |" in out and "| kng | 42.1 | yes (+2.00 MiB) | (+5.0, +2.0) |" in out


def test_runs_sharing_method_and_mode_keep_separate_columns(tmp_path):
    write_run(tmp_path, "0", "online", 0.80, 0.70)
    write_run(tmp_path, "1", "online", 0.90, 0.75)
    rows = comparison_rows(settings_under(tmp_path))
    assert rows[0][1] == "kng online [0] Image" and rows[0][4] == "kng online [1] Image"
    assert online_gain(settings_under(tmp_path)) == []


def test_several_sweeps_under_one_root_are_told_apart_by_their_overrides(tmp_path):
    # e.g. outputs/comparison_mtd/{kng,spade28}: two multiruns of sweep=comparison, one with an
    # extra override; the report of their parent labels each job by what differs.
    jobs = {
        "kng/0": ["method=kng", "variant=offline"],
        "kng/1": ["method=kng", "variant=online_fair"],
        "spade28/0": ["method=spade", "variant=offline", "method.feature_size=28"],
        "spade28/1": ["method=spade", "variant=online_fair", "method.feature_size=28"],
        # diagnostics beside them, run without the sweep: one option more, an oracle
        "x_shrink/0": ["method=kng", "variant=online_fair", "method.covariance.shrinkage=0.5"],
        "x_oracle/0": ["method=kng", "mode=oracle"],
    }
    for i, (name, overrides) in enumerate(jobs.items()):
        mode = "offline" if "variant=offline" in overrides else "online"
        write_run(tmp_path, name, "oracle" if "oracle" in name else mode, 0.70 + 0.05 * i, 0.7)
        sweep = [] if name.startswith("x_") else ["sweep=comparison"]
        (tmp_path / name / ".hydra").mkdir()
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(
            "\n".join(f"- {o}" for o in sweep + overrides)
        )
    settings = settings_under(tmp_path)
    assert [s.label for s in settings] == [
        "kng offline",
        "kng online_fair",
        "spade offline feature_size=28",
        "spade online_fair feature_size=28",
        "kng oracle",
        "kng online_fair covariance.shrinkage=0.5",
    ]
    gates = gate_rows(settings)
    # a row per method and option set; the oracle is no gate; no offline twin, no gain
    assert [r[0] for r in gates[1:]] == [
        "kng",
        "kng covariance.shrinkage=0.5",
        "spade feature_size=28",
    ]
    gain = gates[0].index("online_fair gain (stream Image)")
    assert [r[gain] for r in gates[1:]] == ["+5.0", "-", "+5.0"]
    assert gates[2][gates[0].index("online_fair Image")] == "90.0"


def test_report_of_a_directory_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no finished run"):
        report(tmp_path)


@pytest.mark.parametrize(
    ("launcher", "target"),
    [("local", "JoblibLauncher"), ("slurm", "SlurmLauncher")],
)
def test_launchers_compose_with_a_sweep(launcher, target):
    cfg = compose_with("sweep=nodes", f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper.params["method.num_nodes"] == "196,784,1764,3136,4900"


@pytest.mark.parametrize(
    ("sweep", "key", "labels"),
    [
        ("age_max_smoke", "method.age_max", ["5", "1500"]),
        ("epochs_smoke", "method.epochs", ["1", "3"]),
        ("threshold_smoke", "method.acceptance.threshold_type", ["median", "none"]),
        ("shots_smoke", "protocol.shots", ["5", "10"]),
    ],
)
def test_each_smoke_sweep_runs_and_reports_its_ablation(
    sweep, key, labels, tmp_path, multirun, synthetic_root
):
    multirun(tmp_path / "sweep", synthetic_root, f"sweep={sweep}")
    made = report(tmp_path / "sweep", tmp_path / "report")
    by_value = {}
    for path in (tmp_path / "sweep").glob("*/summary.json"):
        cfg = OmegaConf.load(path.parent / "config_resolved.yaml")
        by_value[str(OmegaConf.select(cfg, key))] = json.loads(path.read_text())
    assert sorted(by_value) == sorted(labels)
    table = made["ablation"]
    if key == "protocol.shots":  # Table 6 layout: a row per value
        assert [r[0] for r in table[1:]] == [f"{v}-shot" for v in labels]
        assert [r[1] for r in table[1:]] == [
            f"{100 * by_value[v]['image_auroc']:.1f}" for v in labels
        ]
    else:  # Tables 3-5 layout: a column per value
        assert table[0] == [key.split(".", 1)[1], *labels]  # `acceptance.threshold_type`
        assert table[3][1:] == [f"{100 * by_value[v]['pro']:.1f}" for v in labels]
    assert "hyperparameters.png" in {p.name for p in made["figures"]}


def test_drift_smoke_sweep_reports_decisions_and_drift_figures(tmp_path, multirun, synthetic_root):
    multirun(tmp_path / "sweep", synthetic_root, "sweep=drift_smoke")
    made = report(tmp_path / "sweep", tmp_path / "report")
    summaries = {}
    for path in (tmp_path / "sweep").glob("*/summary.json"):
        s = json.loads(path.read_text())
        summaries[(s["drift"], s["mode"])] = s
    assert sorted(summaries) == [
        (d, m) for d in ("abrupt", "illumination", "none") for m in ("offline", "online")
    ]
    # the shots are never drifted: every offline job fits the same model, so decides at the
    # same threshold, and scores the stream's first (undrifted) images alike
    thresholds = {round(s["shots_threshold"], 6) for s in summaries.values()}
    assert len(thresholds) == 1
    header, *rows = made["payoff"]
    assert header[-3:] == ["FPR@shots", "recall@shots", "last-half FPR@shots"]
    by_label = {r[0]: r for r in rows}
    for (drift, mode), s in summaries.items():
        label = next(lab for lab in by_label if drift in lab and mode in lab)
        assert by_label[label][-3] == f"{100 * s['fpr_at_shots']:.1f}"
    names = {p.name for p in made["figures"]}
    assert {"drift_abrupt.png", "drift_illumination.png"} <= names
    assert "drift_none.png" not in names
