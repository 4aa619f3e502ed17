"""Shared fixtures: Hydra configs composed into tmp_path, small synthetic data."""

import os
import sys
from pathlib import Path

# foads before torch: importing it shortens OpenMP's spin while idle threads wait
# (GOMP_SPINCOUNT), which OpenMP reads once, when torch loads it. Otherwise the tests' own
# torch threads spin long, and a test run beside another process on the same cores takes
# several times as long.
from foads.registry import CONF_DIR

# isort: split
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

# Under pytest-xdist (`make test` runs `-n auto`) each worker takes its share of the cores:
# torch processes that each spin every core's threads slow each other several-fold.
# The runs a test starts in a subprocess take the same share: some tests compare them with an
# in-process run bit for bit, and the thread count changes the order of float sums.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _threads = max(1, (os.cpu_count() or 1) // _workers)
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_threads)

# Small sizes for the default suite: 112 px crops give a 28 x 28 embedding grid.
SMALL = [
    "backbone=efficientnet_lite0",
    "protocol.resize=128",
    "protocol.crop=112",
    "protocol.batch_size=4",
    "protocol.session_size=4",
    "logger=none",
    "trainer.enable_progress_bar=false",
    # The shots' decision threshold costs decision_folds extra fits (DRAEM: trainings); the
    # tests of decisions and drift turn it on.
    "protocol.decision_folds=null",
]
# K-NG's own sizes (the default method).
SMALL_KNG = ["method.num_nodes=150", "method.epochs=3"]
# The synthetic dataset's own sizes (the default dataset).
SMALL_SYNTHETIC = [
    "dataset.image_size=128",
    "dataset.num_train=14",
    "dataset.num_test_good=4",
    "dataset.num_test_defect=8",
    "dataset.defect_strength=[0.8,1.0]",  # easy synthetic defects: the pipeline must find them
    "dataset.variation=0.2",
]


def pytest_collection_modifyitems(config, items):
    """Leave `slow` tests (real data, long runs) out of the default run; a -m expression that
    names them (`pytest -m slow`, `-m "slow or not slow"`) decides instead."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """One small synthetic dataset shared by the tests that only read it."""
    return tmp_path_factory.mktemp("data")


def small_run_overrides(out: Path, data_dir: Path, *overrides: str) -> list[str]:
    """The command-line overrides of a small test run into `out` (what `make_cfg` composes)."""
    other_dataset = any(o.startswith("dataset=") for o in overrides)
    other_method = any(o.startswith("method=") and o != "method=kng" for o in overrides)
    return [
        f"paths.output_dir={out}",
        f"paths.data_dir={data_dir}",
        *SMALL,
        *([] if other_method else SMALL_KNG),
        *([] if other_dataset else SMALL_SYNTHETIC),
        *overrides,
    ]


def compose_config(overrides: list[str]):
    """The root config composed with `overrides`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def small_overrides(tmp_path, synthetic_root):
    """`small_run_overrides` into tmp_path/run unless `out` is given."""

    def _overrides(*overrides, out=None) -> list[str]:
        return small_run_overrides(out or tmp_path / "run", synthetic_root, *overrides)

    return _overrides


@pytest.fixture
def make_cfg(small_overrides):
    """Compose the real root config with overrides, outputs into tmp_path."""

    def _make(*overrides, out=None):
        return compose_config(small_overrides(*overrides, out=out))

    return _make


def run_multirun(sweep_dir: Path, data_dir: Path, *overrides):
    """`python -m foads.run <overrides>` in this process (Hydra's basic launcher)."""
    from foads.run import main as run_main

    argv = sys.argv
    sys.argv = [
        "foads.run",
        f"hydra.sweep.dir={sweep_dir}",
        f"paths.data_dir={data_dir}",
        *overrides,
    ]
    try:
        run_main()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def multirun():
    """`run_multirun` for tests in other folders."""
    return run_multirun
