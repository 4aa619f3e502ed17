"""The new readers on the real data in /work/shared/data (slow: `pytest -m slow`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from foads.data import load_sample_image, load_sample_mask

# The configs' default roots: ${paths.root_dir}/../shared/data/<name>.
REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"

pytestmark = pytest.mark.slow


def _reader(make_cfg, dataset: str):
    """The reader of conf/dataset/<dataset>.yaml with its default root."""
    cfg = make_cfg(f"dataset={dataset}", f"paths.root_dir={REPO}")
    conf = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(conf, dict)
    conf.pop("name")
    return instantiate(conf)


@pytest.mark.skipif(not (SHARED / "aitex").is_dir(), reason=f"no AITEX at {SHARED / 'aitex'}")
def test_real_aitex(make_cfg):
    reader = _reader(make_cfg, "aitex")
    assert reader.root.resolve() == (SHARED / "aitex").resolve() and reader.tile == 256
    assert reader.resolve_categories() == ["02", "03"]
    expected = {
        # fabric: (good strips, defective strips, train tiles, good test, defective test)
        "02": (20, 38, 320, 570, 38),
        "03": (20, 31, 320, 407, 89),
    }
    for fabric, (good, bad, train, test_good, test_bad) in expected.items():
        data = reader.load(fabric)
        assert data.extra["good_strips"] == good and data.extra["defective_strips"] == bad
        assert len(data.train) == train and {s.label for s in data.train} == {0}
        assert Counter(s.label for s in data.test) == {0: test_good, 1: test_bad}
        assert len(data.test) == 16 * bad
    data = reader.load("03")
    # 0106_010_03's mask file is empty: its 16 tiles are good test tiles.
    assert data.extra["strips_without_defective_tile"] == ["0106_010_03.png"]
    double = [s for s in data.test if s.path.stem == "0097_030_03" and s.label == 1]
    assert len(double) == 1 and isinstance(double[0].mask_path, tuple)
    assert len(double[0].mask_path) == 2
    assert load_sample_image(double[0]).size == (256, 256)
    assert load_sample_mask(double[0]).shape == (256, 256) and load_sample_mask(double[0]).any()
    assert Counter(s.defect_type for s in data.test if s.label == 1) == {
        "code_010": 63,
        "code_016": 7,
        "code_019": 5,
        "code_022": 4,
        "code_025": 5,
        "code_030": 5,
    }


@pytest.mark.skipif(
    not (SHARED / "mpdd_metal_plate").is_dir(), reason=f"no MPDD at {SHARED / 'mpdd_metal_plate'}"
)
def test_real_mpdd_metal_plate(make_cfg):
    reader = _reader(make_cfg, "mpdd")
    assert reader.resolve_categories() == ["metal_plate"]
    data = reader.load("metal_plate")
    assert len(data.train) == 80 and len(data.test) == 81
    assert {s.label for s in data.test} == {1} and {s.defect_type for s in data.test} == {"defect"}
    assert data.extra["splits"] == {
        "test": {"good": 26, "defective": 21},
        "train": {"good": 41, "defective": 53},
        "val": {"good": 13, "defective": 7},
    }
