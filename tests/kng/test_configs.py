"""`method=kng` runs the measured defaults; `method=kng_paper` / `experiment=paper_kng` the
paper's exact rules; the issue-5 sweeps run at test size and their reports say what paid."""

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from foads.registry import CONF_DIR
from foads.report import report

PAPER = {
    "covariance.prior": 0.0,
    "covariance.shrinkage": 0.0,
    "acceptance.threshold_type": "median",
    "acceptance.threshold_scale": 1.0,
    "acceptance.image_gate": None,
    "acceptance.patch_gate": None,
    "acceptance.reject_dilation": 0,
    "acceptance.recurrence_window": None,
    "acceptance.radius_window": None,
    "growth.max_nodes": None,
    "growth.scale": None,
    "growth.remove_after": None,
}


def flat(method) -> dict:
    """The method config as {'acceptance.image_gate': ..., 'num_nodes': ...}."""
    container = OmegaConf.to_container(method)
    assert isinstance(container, dict)
    out = {}
    for key, value in container.items():
        name = str(key)
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def composed(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.parametrize("overrides", [["method=kng_paper"], ["experiment=paper_kng"]])
def test_paper_rules_are_the_papers(overrides):
    method = flat(composed(*overrides).method)
    assert {k: method[k] for k in PAPER} == PAPER
    default = flat(composed().method)
    # Everything but the rules is shared with the default K-NG.
    shared = set(default) - set(PAPER)
    assert {k: default[k] for k in shared} == {k: method[k] for k in shared}


def test_the_default_differs_from_the_paper_by_shrinkage_stream_gate_and_stream_radius():
    default = composed().method
    changed = {k for k in PAPER if flat(default)[k] != PAPER[k]}
    assert changed == {"covariance.shrinkage", "acceptance.image_gate", "acceptance.radius_window"}
    assert default.covariance.shrinkage == 0.5
    gate = default.acceptance
    assert (gate.image_gate, gate.gate_quantile, gate.gate_window) == ("stream", 0.5, 20)
    assert gate.radius_window == 20


def test_old_flat_keys_are_refused_with_their_new_names(capsys):
    from foads.components.options import RenamedOptionError
    from foads.methods.kng.lightning_model import KNGModule
    from foads.run import refuse_renamed_overrides

    with pytest.raises(RenamedOptionError, match=r"method.grow_scale -> method.growth.scale"):
        KNGModule(None, grow_scale=0.5)
    with pytest.raises(RenamedOptionError, match=r"method.eps -> method.covariance.eps"):
        KNGModule(None, eps=0.1)
    with pytest.raises(TypeError, match=r"method.covariance.shrinkge"):
        KNGModule(None, covariance={"shrinkge": 0.5})
    with pytest.raises(SystemExit) as stop:
        refuse_renamed_overrides(["method=kng", "+method.covariance_shrinkage=0.5"])
    assert stop.value.code == 2
    assert "method.covariance_shrinkage -> method.covariance.shrinkage" in capsys.readouterr().err
    refuse_renamed_overrides(["method.covariance.shrinkage=0.5", "method.num_nodes=10"])


def run_sweep(multirun, tmp_path, synthetic_root, sweep):
    """Run `sweep=<sweep>` on the synthetic data; (config, summary.json) of each job."""
    sweep_dir = tmp_path / "sweep"
    multirun(sweep_dir, synthetic_root, f"sweep={sweep}")
    out = []
    for path in sorted(sweep_dir.glob("*/summary.json")):
        cfg = OmegaConf.load(path.parent / "config_resolved.yaml")
        out.append((cfg, json.loads(path.read_text())))
    return out


def test_payoff_sweep_reports_each_rule_set_and_its_share_of_the_oracle_gain(
    tmp_path, multirun, synthetic_root
):
    jobs = run_sweep(multirun, tmp_path, synthetic_root, "payoff_smoke")
    assert len(jobs) == 6
    for cfg, summary in jobs:
        assert summary["uses_labels"] == (cfg.mode == "oracle")
        expected = 0.5 if cfg.method.covariance.shrinkage else 0.0
        assert cfg.method.covariance.shrinkage == expected
        if cfg.mode == "offline":
            assert summary["model_state_bytes"] == summary["model_state_bytes_start"]
    made = report(tmp_path / "sweep", tmp_path / "report", figures=False)
    rows = made["payoff"]
    assert rows[0][:4] == ["Setting", "Image", "stream Image", "last-half Image"]
    assert len(rows) == 7
    by_label = {r[0]: r for r in rows[1:]}
    for cfg, summary in jobs:
        label = f"{'kng_paper' if cfg.method.covariance.shrinkage == 0 else 'kng'} {cfg.mode}"
        row = by_label[label]
        assert row[1] == f"{100 * summary['image_auroc']:.1f}"
        assert row[3] == f"{100 * summary['last_half_image_auroc']:.1f}"
    text = (tmp_path / "report" / "payoff.md").read_text()
    assert "absorbed anomalous" in text


def test_contamination_sweep_streams_have_the_asked_defect_share(
    tmp_path, multirun, synthetic_root
):
    jobs = run_sweep(multirun, tmp_path, synthetic_root, "contamination_smoke")
    assert len(jobs) == 4
    for cfg, summary in jobs:
        share = summary["num_anomalous"] / summary["num_images"]
        assert share == pytest.approx(cfg.protocol.anomaly_rate, abs=0.06)
    # The smoke stream has 8 good and 8 defective images: the scarcer class stays whole.
    for cfg, s in jobs:
        good = s["num_images"] - s["num_anomalous"]
        assert (good, s["num_anomalous"]) == (
            (8, 3) if cfg.protocol.anomaly_rate == 0.3 else (3, 8)
        )


def test_growth_sweep_grows_within_the_bound(tmp_path, multirun, synthetic_root):
    jobs = run_sweep(multirun, tmp_path, synthetic_root, "growth_smoke")
    assert len(jobs) == 2
    by_scale = {cfg.method.growth.scale: s for cfg, s in jobs}
    fixed, grown = by_scale[None], by_scale[0.5]
    assert fixed["nodes_grown"] == 0 and fixed["num_nodes"] <= 100
    assert grown["nodes_grown"] > 0
    assert fixed["num_nodes"] < grown["num_nodes"] <= 150


def test_oracle_split_sweep_learns_all_or_part_of_the_good_images(
    tmp_path, multirun, synthetic_root
):
    jobs = run_sweep(multirun, tmp_path, synthetic_root, "oracle_split_smoke")
    assert len(jobs) == 3
    accepted = {}
    for cfg, summary in jobs:
        assert cfg.mode == "oracle" and summary["uses_labels"] is True
        assert summary["oracle_images"] == cfg.protocol.oracle_images
        accepted[summary["oracle_images"]] = summary["accepted_fraction"]
    # The oracle absorbs every patch of the images it learns: all = the good share (8 of 16).
    good_share = 1 - jobs[0][1]["num_anomalous"] / jobs[0][1]["num_images"]
    assert accepted["all"] == pytest.approx(good_share)
    assert 0 < accepted["easy"] < good_share and 0 < accepted["hard"] < good_share
    made = report(tmp_path / "sweep", tmp_path / "report", figures=False)
    assert len(made["payoff"]) == 4
