"""AITEX fabric strips cut into tiles: which tiles are good, which defective, which masks."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from foads.data import AITEX, AITEX_FABRICS, DatasetError, load_sample_image, load_sample_mask

AITEX_TILE = 64  # the fixture's tiles (tests/data/conftest.py)


def _tile_index(sample) -> int:
    """The tile's position in its strip, row by row (8 tiles a row in the fixture)."""
    left, top, _, _ = sample.region
    return top // AITEX_TILE * 8 + left // AITEX_TILE


def _by_strip(samples) -> dict[str, list]:
    strips: dict[str, list] = {}
    for sample in samples:
        strips.setdefault(sample.path.stem, []).append(sample)
    return strips


def test_categories_are_the_fabric_codes_on_disk(aitex_root):
    reader = AITEX(aitex_root, tile=AITEX_TILE)
    assert reader.categories() == list(AITEX_FABRICS) == [f"0{i}" for i in range(7)]
    assert reader.resolve_categories() == ["02", "03"]
    with pytest.raises(DatasetError, match="'07'"):
        reader.load("07")
    with pytest.raises(DatasetError, match="category '05' not found"):
        reader.load("05")


def test_fabric_02_tiles_and_labels(aitex_root):
    data = AITEX(aitex_root, "02", tile=AITEX_TILE).load()
    assert data.name == "02" and data.has_masks
    # Good strips: every tile trains, none has a mask.
    assert len(data.train) == 16 and {s.label for s in data.train} == {0}
    assert all(s.mask_path is None and s.defect_type == "good" for s in data.train)
    assert {s.path.stem for s in data.train} == {"0001_000_02", "0002_000_02"}
    assert [s.region for s in data.train[:8]] == [(x, 0, x + 64, 64) for x in range(0, 512, 64)]
    strips = _by_strip(data.test)
    assert set(strips) == {"0010_006_02", "0011_019_02"} and len(data.test) == 16
    defective = {
        name: [_tile_index(s) for s in tiles if s.label == 1] for name, tiles in strips.items()
    }
    # 0011's faint pixels in tile 6 stay below the threshold: tile 6 is good.
    assert defective == {"0010_006_02": [2], "0011_019_02": [3, 4]}
    for name, tiles in strips.items():
        assert [_tile_index(s) for s in tiles] == list(range(8))
        for sample in tiles:
            if sample.label == 1:
                assert sample.mask_path == aitex_root / "Mask_images" / f"{name}_mask.png"
                assert sample.defect_type == f"code_{name.split('_')[1]}"
            else:
                assert sample.mask_path is None and sample.defect_type == "good"
    assert data.extra["good_strips"] == 2 and data.extra["defective_strips"] == 2
    assert data.extra["train_tiles"] == 16 and data.extra["test_good_tiles"] == 13
    assert data.extra["test_defective_tiles"] == 3
    assert data.extra["strips_without_defective_tile"] == []


def test_defective_tiles_carry_the_mask_of_their_region(aitex_root):
    data = AITEX(aitex_root, "02", tile=AITEX_TILE).load()
    tiles = {(s.path.stem, _tile_index(s)): s for s in data.test}
    mask = load_sample_mask(tiles["0010_006_02", 2])
    expected = np.zeros((64, 64), bool)
    expected[10:20, 2:12] = True  # the strip's box (130, 10, 140, 20) minus the tile's left 128
    np.testing.assert_array_equal(mask, expected)
    # The defect across tiles 3 and 4: its left part in 3, its right part in 4.
    assert load_sample_mask(tiles["0011_019_02", 3])[30:40, 58:64].all()
    assert load_sample_mask(tiles["0011_019_02", 3]).sum() == 6 * 10
    assert load_sample_mask(tiles["0011_019_02", 4]).sum() == 14 * 10
    good = load_sample_mask(tiles["0011_019_02", 6])
    assert good.shape == (64, 64) and not good.any()
    strip = np.asarray(load_sample_image(replace(tiles["0011_019_02", 0], region=None)))
    for index in (0, 5):
        tile = np.asarray(load_sample_image(tiles["0011_019_02", index]))
        np.testing.assert_array_equal(tile, strip[:, 64 * index : 64 * index + 64])


def test_fabric_03_two_masks_rows_and_dropped_remainder(aitex_root):
    data = AITEX(aitex_root, "03", tile=AITEX_TILE).load()
    # The 512 x 128 good strip gives two rows of 8 tiles.
    assert len(data.train) == 16
    assert data.train[8].region == (0, 64, 64, 128) and data.train[15].region == (448, 64, 512, 128)
    strips = _by_strip(data.test)
    double = [s for s in strips["0097_030_03"] if s.label == 1]
    # Tile 1 is marked in _mask1 only, tile 5 in _mask2 only: the union labels both.
    assert [_tile_index(s) for s in double] == [1, 5]
    masks = aitex_root / "Mask_images"
    for sample in double:
        assert sample.mask_path == (
            masks / "0097_030_03_mask1.png",
            masks / "0097_030_03_mask2.png",
        )
        assert sample.defect_type == "code_030"
    assert load_sample_mask(double[0])[0:5, 6:16].all() and load_sample_mask(double[0]).sum() == 50
    assert (
        load_sample_mask(double[1])[60:64, 10:20].all() and load_sample_mask(double[1]).sum() == 40
    )
    # 544 px wide: 8 full tiles, the last 32 px (where its defect is) dropped.
    dropped = strips["0098_010_03"]
    assert [s.region[2] for s in dropped] == list(range(64, 513, 64))
    assert {s.label for s in dropped} == {0}
    assert data.extra["strips_without_defective_tile"] == ["0098_010_03.png"]
    assert Counter(s.defect_type for s in data.test) == {"good": 14, "code_030": 2}


def test_tile_size_is_an_option(aitex_root):
    data = AITEX(aitex_root, "02", tile=32).load()
    assert len(data.train) == 2 * 32 and len(data.test) == 2 * 32
    # 0010's box (130, 10, 140, 20) lies in one 32 px tile; 0011's (250, 30, 270, 40) in four.
    assert sorted((s.path.stem, s.region[:2]) for s in data.test if s.label == 1) == [
        ("0010_006_02", (128, 0)),
        ("0011_019_02", (224, 0)),
        ("0011_019_02", (224, 32)),
        ("0011_019_02", (256, 0)),
        ("0011_019_02", (256, 32)),
    ]
    with pytest.raises(DatasetError, match=r"512x64 .*smaller than one 128x128 tile"):
        AITEX(aitex_root, "02", tile=128).load()
    with pytest.raises(DatasetError, match="positive"):
        AITEX(aitex_root, tile=0)


def test_a_defective_strip_without_a_mask_is_an_error(aitex_root):
    (aitex_root / "Mask_images" / "0011_019_02_mask.png").unlink()
    with pytest.raises(DatasetError, match=re.escape("0011_019_02.png not found")) as info:
        AITEX(aitex_root, "02", tile=AITEX_TILE).load()
    assert str(aitex_root / "Mask_images" / "0011_019_02_mask.png") in str(info.value)
    # The other fabric is still readable.
    assert len(AITEX(aitex_root, "03", tile=AITEX_TILE).load().test) == 16


def test_a_mask_of_another_size_is_an_error(aitex_root, write_image):
    write_image(aitex_root / "Mask_images" / "0097_030_03_mask2.png", np.zeros((64, 256), np.uint8))
    with pytest.raises(DatasetError, match=re.escape("0097_030_03_mask2.png is 256x64")) as info:
        AITEX(aitex_root, "03", tile=AITEX_TILE).load()
    assert "0097_030_03.png is 512x64" in str(info.value)


def test_a_file_not_named_like_a_strip_is_an_error(aitex_root, write_image):
    write_image(aitex_root / "Defect_images" / "notes.png")
    with pytest.raises(DatasetError, match=re.escape("notes.png is not named <id>_<defect code>")):
        AITEX(aitex_root, "02", tile=AITEX_TILE).load()


def test_missing_root_shows_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="NODefect_images"):
        AITEX(tmp_path / "absent").resolve_categories()
