"""Runs that share the cores: importing foads makes OpenMP's idle threads spin only briefly
before they sleep (docs/results.md, "Runs that share a machine"), unless the environment
says otherwise; `trainer.threads` gives torch the CPUs the process may use, or the number
asked for."""

import contextlib
import json
import os
import subprocess
import sys

import lightning as L
import pytest
import torch

from foads import threads
from foads.pipeline import build_trainer, run


def _wait(env: dict) -> dict:
    code = (
        "import foads, os, json; "
        "print(json.dumps({k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_foads_sets_a_short_spin_and_keeps_a_wait_already_set():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert _wait(env) == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}
    passive = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}
    assert _wait({**env, "OMP_WAIT_POLICY": "PASSIVE"}) == passive
    spin = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "5"}
    assert _wait({**env, "GOMP_SPINCOUNT": "5"}) == spin


@pytest.fixture
def no_caps(monkeypatch, tmp_path):
    """An environment with no share given yet: no SLURM, OpenMP or cgroup limit."""
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", tmp_path / "no_cgroup")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    return monkeypatch


def test_available_cpus_is_the_affinity_mask_capped_by_the_share_already_given(no_caps):
    assert threads.available_cpus() == 16
    no_caps.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 5})  # taskset -c 2,3,5
    assert threads.available_cpus() == 3
    no_caps.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    no_caps.setenv("SLURM_CPUS_PER_TASK", "8")
    assert threads.available_cpus() == 8
    no_caps.setenv("OMP_NUM_THREADS", "4")  # Hydra's joblib launcher, pytest-xdist
    assert threads.available_cpus() == 4
    no_caps.setenv("OMP_NUM_THREADS", "2,1")  # nested: the outer level is torch's
    assert threads.available_cpus() == 2
    no_caps.setenv("OMP_NUM_THREADS", "")  # set but empty, or not a number: no cap
    assert threads.available_cpus() == 8
    no_caps.setenv("SLURM_CPUS_PER_TASK", "all")
    assert threads.available_cpus() == 16


def test_available_cpus_rounds_a_cgroup_quota_up(no_caps, tmp_path):
    cpu_max = tmp_path / "cpu.max"
    no_caps.setattr(threads, "CGROUP_CPU_MAX", cpu_max)
    cpu_max.write_text("max 100000\n")  # no quota
    assert threads.available_cpus() == 16
    cpu_max.write_text("250000 100000\n")  # 2.5 CPUs
    assert threads.available_cpus() == 3
    cpu_max.write_text("50000 100000\n")
    assert threads.available_cpus() == 1


def test_resolve_threads_takes_auto_or_a_positive_integer(no_caps):
    no_caps.setenv("OMP_NUM_THREADS", "3")
    assert threads.resolve_threads(None) == threads.resolve_threads("auto") == 3
    assert threads.resolve_threads(5) == 5  # above the share: asked for, so given


@pytest.mark.parametrize("value", [0, -1, "many", True, 2.0])
def test_resolve_threads_names_the_key_the_value_and_what_is_expected(value):
    with pytest.raises(ValueError) as err:
        threads.resolve_threads(value)
    message = str(err.value)
    assert "trainer.threads" in message and repr(value) in message
    assert "positive integer" in message and "auto" in message


def test_apply_threads_never_raises_once_the_inter_op_pool_is_sized():
    before = torch.get_num_threads()
    with contextlib.suppress(RuntimeError):  # sized now, at its size, if not already
        torch.set_num_interop_threads(torch.get_num_interop_threads())
    inter_op = torch.get_num_interop_threads()
    try:
        threads.apply_threads(inter_op + 1)
        assert torch.get_num_threads() == inter_op + 1
        threads.apply_threads(1)  # a second run in the same process
        assert torch.get_num_threads() == 1
        assert torch.get_num_interop_threads() == inter_op
    finally:
        torch.set_num_threads(before)


def test_a_run_with_threads_1_gives_torch_one_thread(tmp_path):
    # A fresh process whose environment gives it every CPU (no share from pytest-xdist): the
    # run's own function sets the threads, and the composed trainer config still makes a
    # Trainer once `threads` is taken out.
    code = f"""
import json, torch
from hydra import compose, initialize_config_dir
from foads.pipeline import build_trainer, use_threads
from foads.registry import CONF_DIR
from foads.threads import available_cpus
def composed(*overrides):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["paths.output_dir={tmp_path}", *overrides])
auto = use_threads(composed()), torch.get_num_threads()
one = use_threads(composed("trainer.threads=1")), torch.get_num_threads()
torch.randn(64, 64) @ torch.randn(64, 64)
trainer = build_trainer(composed("trainer.threads=1"), logger=False, callbacks=[])
print(json.dumps(dict(auto=auto, one=one, cpus=available_cpus(), after=torch.get_num_threads(),
                      trainer=type(trainer).__name__)))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["auto"] == [result["cpus"], result["cpus"]]
    assert result["one"] == [1, 1] and result["after"] == 1
    assert result["trainer"] == "Trainer"


@pytest.mark.parametrize("trainer", ["default", "cpu"])
def test_every_trainer_config_has_threads_and_still_makes_a_trainer(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    assert cfg.trainer.threads is None
    made = build_trainer(cfg, logger=False, callbacks=[])
    assert isinstance(made, L.Trainer) and made.max_epochs == 1


def test_a_wrong_threads_value_stops_the_run_before_any_work(make_cfg, tmp_path):
    cfg = make_cfg("trainer.threads=many", out=tmp_path / "run")
    with pytest.raises(ValueError, match=r"trainer\.threads .*got 'many'"):
        run(cfg)
    assert not (tmp_path / "run").exists()
