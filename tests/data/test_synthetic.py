"""The synthetic texture dataset: determinism, visible exact defects, reuse and read-back."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from foads.data import (
    DEFECT_TYPES,
    SYNTHETIC_CATEGORIES,
    DatasetError,
    MVTecAD,
    Synthetic,
    draw_defect,
    generate_synthetic,
    load_image,
    load_mask,
)

SMALL = {"image_size": 64, "num_train": 4, "num_test_good": 2, "num_test_defect": 8}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_skimage_textures_exist():
    import skimage.data

    for name in SYNTHETIC_CATEGORIES:
        assert getattr(skimage.data, name)().shape == (512, 512)


def test_layout_and_counts(tmp_path):
    root = generate_synthetic(tmp_path, ["brick"], **SMALL)
    brick = root / "brick"
    assert len(list((brick / "train" / "good").glob("*.png"))) == 4
    assert len(list((brick / "test" / "good").glob("*.png"))) == 2
    for defect in DEFECT_TYPES:  # 8 defects spread evenly over 4 types
        images = sorted(p.name for p in (brick / "test" / defect).glob("*.png"))
        masks = sorted(p.name for p in (brick / "ground_truth" / defect).glob("*.png"))
        assert images == ["000.png", "001.png"]
        assert masks == ["000_mask.png", "001_mask.png"]
    params = json.loads((root / "synthetic.json").read_text())
    assert params["seed"] == 0 and params["image_size"] == 64 and params["categories"] == ["brick"]
    image = load_image(brick / "train" / "good" / "000.png")
    assert image.size == (64, 64) and image.mode == "RGB"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = _files(generate_synthetic(tmp_path / "a", ["grass"], seed=3, **SMALL))
    second = _files(generate_synthetic(tmp_path / "b", ["grass"], seed=3, **SMALL))
    other = _files(generate_synthetic(tmp_path / "c", ["grass"], seed=4, **SMALL))
    assert first == second
    assert first.keys() == other.keys()
    images = [k for k in first if k.endswith(".png")]
    assert all(first[k] != other[k] for k in images)


def test_category_does_not_depend_on_the_others(tmp_path):
    alone = _files(generate_synthetic(tmp_path / "a", ["gravel"], **SMALL))
    together = _files(generate_synthetic(tmp_path / "b", SYNTHETIC_CATEGORIES, **SMALL))
    assert all(together[k] == v for k, v in alone.items() if k.startswith("gravel"))


def test_masks_are_binary_sized_and_not_tiny(tmp_path):
    root = generate_synthetic(tmp_path, SYNTHETIC_CATEGORIES, **SMALL)
    for category in SYNTHETIC_CATEGORIES:
        for mask_path in (root / category / "ground_truth").rglob("*.png"):
            values = np.unique(np.asarray(load_image(mask_path))[..., 0])
            assert set(values) <= {0, 255}
            fraction = load_mask(mask_path, (64, 64)).mean()
            minimum = 0.003 if mask_path.parent.name == "scratch" else 0.015
            assert minimum <= fraction < 0.25, (mask_path, fraction)


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_defect_changes_pixels_only_inside_its_mask(tmp_path, defect):
    root = generate_synthetic(
        tmp_path, ["brick"], image_size=128, num_train=3, num_test_good=0, num_test_defect=0
    )
    rng = np.random.default_rng(1)
    for path in sorted((root / "brick" / "train" / "good").glob("*.png")):
        good = np.asarray(load_image(path), dtype=np.float32) / 255
        bad, mask = draw_defect(good, defect, rng, "brick")
        change = np.abs(bad - good).max(axis=2)
        assert mask.any()
        assert not change[~mask].any()
        # Visible but possibly faint (blended at 30-70% strength): a real change in the mask.
        assert change[mask].mean() > 0.04, (defect, change[mask].mean())


def test_read_back_through_mvtec(tmp_path):
    root = generate_synthetic(tmp_path, SYNTHETIC_CATEGORIES, **SMALL)
    reader = MVTecAD(root, known_categories=SYNTHETIC_CATEGORIES)
    assert reader.resolve_categories("all") == list(SYNTHETIC_CATEGORIES)
    data = reader.load("gravel")
    assert len(data.train) == 4
    assert Counter(s.label for s in data.test) == {0: 2, 1: 8}
    assert Counter(s.defect_type for s in data.test if s.label) == dict.fromkeys(DEFECT_TYPES, 2)
    for sample in data.test:
        if sample.label:
            assert load_mask(sample.mask_path, (64, 64)).any()


def test_same_parameters_reuse_the_dataset(tmp_path):
    generate_synthetic(tmp_path, SYNTHETIC_CATEGORIES, **SMALL)
    probe = tmp_path / "grass" / "train" / "good" / "000.png"
    stamp = probe.stat().st_mtime_ns
    generate_synthetic(tmp_path, ["grass"], **SMALL)  # a subset is already there
    assert probe.stat().st_mtime_ns == stamp
    # A recorded category deleted by hand is written again, not assumed present.
    shutil.rmtree(tmp_path / "gravel")
    generate_synthetic(tmp_path, SYNTHETIC_CATEGORIES, **SMALL)
    assert (tmp_path / "gravel" / "train" / "good" / "000.png").is_file()


def test_other_parameters_regenerate_only_its_folders(tmp_path):
    generate_synthetic(tmp_path, ["brick", "grass"], **SMALL)
    (tmp_path / "notes.txt").write_text("keep me")
    before = (tmp_path / "brick" / "test" / "hole" / "000.png").read_bytes()
    generate_synthetic(tmp_path, ["brick"], **{**SMALL, "num_test_defect": 4}, seed=1)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "grass").exists()
    assert (tmp_path / "brick" / "test" / "hole" / "000.png").read_bytes() != before
    assert not (tmp_path / "brick" / "test" / "hole" / "001.png").exists()


def test_foreign_folder_is_never_overwritten(tmp_path, write_image):
    mine = write_image(tmp_path / "brick" / "photo.png")
    with pytest.raises(DatasetError, match="not generated"):
        generate_synthetic(tmp_path, ["brick"], **SMALL)
    assert mine.exists()


def test_unknown_category_is_rejected(tmp_path):
    with pytest.raises(DatasetError, match="marble"):
        generate_synthetic(tmp_path, ["marble"], **SMALL)


def test_synthetic_reader(tmp_path):
    reader = Synthetic(tmp_path, "grass", seed=2, **SMALL)
    assert reader.categories() == list(SYNTHETIC_CATEGORIES)
    data = reader.load()
    assert data.name == "grass" and len(data.train) == 4 and len(data.test) == 10
    assert reader.resolve_categories("all") == list(SYNTHETIC_CATEGORIES)


def test_default_generation(tmp_path):
    generate_synthetic(tmp_path)
    data = Synthetic(tmp_path).load()
    assert len(data.train) == 60 and len(data.test) == 30
    assert load_image(data.train[0].path).size == (256, 256)
