"""Hostile inputs: each gets a clear word naming the file or key, and never a lost run."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from foads.data.images import list_images, load_sample_image
from foads.data.sample import Sample
from foads.protocol.split import few_shot_split
from foads.run import run

BASE = ("dataset.category=brick", "protocol.max_stream_images=8")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("protocol.shots=ten", "protocol.shots must be an integer, got 'ten' (str)"),
        ("protocol.max_stream_images=-1", "protocol.max_stream_images must be >= 0, got -1"),
        ("protocol.batch_size=0", "protocol.batch_size must be >= 1, got 0"),
        ("protocol.anomaly_rate=1.5", "protocol.anomaly_rate must be >= 0.0 and <= 1.0"),
        ("protocol.drift.strength=-1", "protocol.drift.strength must be >= 0.0, got -1"),
        ("protocol.checkpoint_every=0.5", "protocol.checkpoint_every must be an integer or null"),
        ("mode=onlin", "mode must be one of"),
    ],
)
def test_a_wrong_setting_is_named_before_anything_runs(make_cfg, tmp_path, override, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        run(make_cfg(*BASE, override))
    assert not (tmp_path / "run" / "sessions.csv").exists()


def test_a_synthetic_root_that_is_a_file_is_named(make_cfg, tmp_path):
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    with pytest.raises(Exception, match=f"dataset.root={a_file} is a file"):
        run(make_cfg(*BASE, f"dataset.root={a_file}"))


def test_the_command_line_prints_one_line_and_keeps_the_trace(small_overrides, tmp_path):
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    overrides = small_overrides(*BASE, "protocol.shots=ten", out=out)
    proc = subprocess.run(
        [sys.executable, "-m", "foads.run", *overrides],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("foads: ValueError: protocol.shots must be an integer")
    assert str(out / "error.txt") in last
    assert "Traceback" in (out / "error.txt").read_text()


def _dataset(cfg):
    conf = OmegaConf.to_container(cfg.dataset, resolve=True)
    conf.pop("name", None)
    return instantiate(conf)


def test_an_unreadable_good_image_is_skipped_as_a_shot_and_in_the_stream(make_cfg, tmp_path):
    data_dir = tmp_path / "data"
    cfg = make_cfg(*BASE, f"paths.data_dir={data_dir}")
    data = _dataset(cfg).load("brick")
    bad = few_shot_split(data, 10, 0, 0).shots[0].path
    bad.write_bytes(b"")  # 0 bytes: cannot be decoded
    first = run(make_cfg(*BASE, f"paths.data_dir={data_dir}", out=tmp_path / "a"))
    brick = first["categories"]["brick"]
    assert brick["num_shots"] == 9 and brick["num_skipped_shots"] == 1
    assert str(bad) in brick["skipped_shots"][0]["path"]
    # A seed that puts the same file in the stream: skipped there, by name.
    seed = next(
        s for s in range(1, 20) if any(x.path == bad for x in few_shot_split(data, 10, s, s).stream)
    )
    second = run(
        make_cfg(
            "dataset.category=brick",
            f"paths.data_dir={data_dir}",
            f"seed={seed}",
            out=tmp_path / "b",
        )
    )
    assert second["skipped_images"] == 1
    assert str(bad) in second["categories"]["brick"]["skipped"][0]["error"]
    assert second["categories"]["brick"]["num_skipped_shots"] == 0


def test_an_empty_defect_image_with_masks_is_skipped_not_fatal(tmp_path, caplog):
    from foads.data.folder import ImageFolder

    root = tmp_path / "folder"
    for i in range(3):
        for sub in ("good", "defect"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(root / sub / f"{i}.png")
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / f"{i}.png")
    (root / "defect" / "1.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        data = ImageFolder(root, mask_dir="masks").load()
    assert len(data.test) == 3  # listed; the stream skips it when its turn comes
    assert str(root / "defect" / "1.png") in caplog.text


def test_links_and_folders_with_image_names_are_reported(tmp_path, caplog):
    folder = tmp_path / "good"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "real.png")
    (folder / "dangling.png").symlink_to(tmp_path / "missing.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "a_folder.jpg").mkdir()
    with caplog.at_level(logging.WARNING):
        found = list_images(folder)
    assert found == [folder / "real.png"]
    assert f"{folder / 'dangling.png'}: a dangling symbolic link" in caplog.text
    assert f"{folder / 'loop.png'}: a symbolic link loop" in caplog.text
    assert f"{folder / 'a_folder.jpg'}: a folder" in caplog.text


def test_a_tiny_image_is_reported_once(tmp_path, caplog):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with caplog.at_level(logging.WARNING):
        load_sample_image(Sample(path, 0))
        load_sample_image(Sample(path, 0))
    assert caplog.text.count(f"{path} is 8x8 (WxH)") == 1
