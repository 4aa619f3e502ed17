"""A wheel built from the repository works on its own: installed into a fresh virtual
environment, run from an unrelated folder, it finds its configs and baselines inside the
package and runs a smoke stream and the report (issue 14: not only an editable install)."""

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = [
    "method=padim",
    "method.feature_dim=16",
    "backbone=efficientnet_lite0",
    "dataset.image_size=96",
    "dataset.num_train=12",
    "dataset.num_test_good=2",
    "dataset.num_test_defect=2",
    "dataset.category=gravel",
    "protocol.resize=96",
    "protocol.crop=96",
    "protocol.batch_size=4",
    "protocol.session_size=4",
    "protocol.decision_folds=null",
    "logger=none",
    "save_checkpoint=false",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(REPO)],
        check=True, cwd=out,
    )  # fmt: skip
    (path,) = out.glob("foads-*.whl")
    return path


def test_wheel_ships_configs_and_baselines_inside_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"foads"}  # nothing installed under a generic top-level name
    assert "foads/conf/config.yaml" in names and "foads/conf/method/kng.yaml" in names
    assert "foads/baselines/padim/lightning_model.py" in names
    assert "foads/outputs/paper_results.csv" in names
    assert not any(n.startswith("foads/conf/local/") for n in names)  # machine-specific
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "foads = foads.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_in_a_fresh_venv_runs_a_stream_and_the_report_from_anywhere(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # The dependencies (torch & co., several GB) come from this environment's site-packages,
    # put after the fresh one's; only foads itself is installed from the wheel. A path in a
    # .pth file does not run that folder's own .pth files, so the editable foads is not seen.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
        if (env_dir / "bin" / "pip").exists()
        else [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
              "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    where = subprocess.run(
        [py, "-c", "import foads, foads.baselines.padim; print(foads.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert str(site) in where  # the wheel's foads, not the repository's

    work = tmp_path / "elsewhere"
    work.mkdir()
    foads = env_dir / "bin" / "foads"
    run = subprocess.run(
        [foads, "run", *SMOKE, "hydra.run.dir=out/run", "paths.data_dir=data"],
        cwd=work, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((work / "out" / "run" / "summary.json").read_text())
    assert summary["method"] == "padim" and 0 <= summary["image_auroc"] <= 1
    assert (work / "data").is_dir()  # generated data went where it was told, not into site

    report = subprocess.run(
        [foads, "report", "out/run", "--no-figures"], cwd=work, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "padim" in report.stdout.lower()
