"""Every dataset reader runs through the whole pipeline, in its real on-disk layout."""

import json
import math

import numpy as np
import pytest

from foads.data import AITEX, ImageTransform, denormalise, load_sample_image, load_sample_mask
from foads.protocol.split import few_shot_split
from foads.run import run

# Tiny images: a 32 px crop gives an 8 x 8 embedding grid.
TINY = [
    "protocol.resize=32",
    "protocol.crop=32",
    "protocol.shots=2",
    "protocol.batch_size=2",
    "protocol.session_size=2",
    "method.num_nodes=8",
    "method.epochs=2",
]
# Options a dataset's tiny fixture needs beyond root and category.
EXTRA = {
    "folder": ["dataset.mask_dir=masks", "dataset.mask_suffix=_mask"],
    "aitex": ["dataset.tile=64"],
}


@pytest.mark.parametrize(
    ("dataset", "root_fixture", "category", "stream_length"),
    [
        ("mvtec", "mvtec_root", "bottle", 1 + 2 + 3),
        ("btad", "btad_root", "03", 2 + 1 + 2),
        ("mtd", "mtd_root", "magnetic_tile", 1 + 3),
        ("folder", "folder_root", "folder", 1 + 2),
        # 16 good-strip tiles less 2 shots, and the 16 tiles of the two defective strips.
        ("aitex", "aitex_root", "02", 14 + 16),
        ("masked_folder", "masked_folder_root", "masked_folder", 2 + 2),
        ("mpdd", "masked_folder_root", "metal_plate", 2 + 2),
    ],
)
def test_dataset_runs_end_to_end(
    make_cfg, request, tmp_path, dataset, root_fixture, category, stream_length
):
    root = request.getfixturevalue(root_fixture)
    extra = EXTRA.get(dataset, [])
    summary = run(
        make_cfg(
            f"dataset={dataset}",
            f"dataset.root={root}",
            f"dataset.category={category}",
            *TINY,
            *extra,
        )
    )
    assert summary["num_images"] == stream_length
    assert summary["dataset"] == dataset
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["categories"][category]["num_images"] == stream_length
    assert 0.0 <= on_disk["stream_pixel_auroc"] <= 1.0


def test_aitex_tiles_carry_their_own_ground_truth_through_the_run(make_cfg, aitex_root, tmp_path):
    # anomaly_rate 0.5 keeps 3 good and the 3 defective tiles of fabric 02: all six are among
    # the last images that maps.npz keeps.
    cfg = make_cfg(
        "dataset=aitex",
        f"dataset.root={aitex_root}",
        "dataset.category=02",
        "dataset.tile=64",
        "protocol.anomaly_rate=0.5",
        *TINY,
    )
    summary = run(cfg)
    assert summary["num_images"] == 6 and summary["num_anomalous"] == 3
    maps = np.load(tmp_path / "run" / "maps.npz")
    assert maps["images"].shape == (6, 32, 32, 3) and maps["masks"].shape == (6, 32, 32)
    data = AITEX(aitex_root, "02", tile=64).load()
    p = cfg.protocol
    stream = few_shot_split(data, p.shots, p.split_seed, p.stream_seed, p.anomaly_rate).stream
    transform = ImageTransform(32, 32)
    for position, image, mask in zip(maps["positions"], maps["images"], maps["masks"], strict=True):
        sample = stream[position]
        # The run's mask and image are the tile's, not the strip's.
        expected = transform.mask(load_sample_mask(sample)).numpy()
        np.testing.assert_array_equal(mask, expected)
        assert mask.any() == (sample.label == 1)
        tile = denormalise(transform(load_sample_image(sample))).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(image, (tile * 255).round().astype(np.uint8))


def test_folder_without_masks_has_no_pixel_metrics(make_cfg, folder_root):
    summary = run(make_cfg("dataset=folder", f"dataset.root={folder_root}", *TINY))
    assert summary["num_images"] == 3
    assert math.isnan(summary["stream_pixel_auroc"]) and math.isnan(summary["pro"])


def test_one_failing_category_does_not_lose_the_others(make_cfg, mvtec_root, tmp_path):
    # screw has a single good training image: 2 shots cannot be drawn from it.
    summary = run(
        make_cfg("dataset=mvtec", f"dataset.root={mvtec_root}", "dataset.category=all", *TINY)
    )
    assert "shots=2" in summary["categories"]["screw"]["error"]
    assert summary["categories"]["bottle"]["num_images"] == 6
    assert summary["num_images"] == 6
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| screw | failed |" in table and "| bottle |" in table


def test_missing_root_names_the_expected_layout(make_cfg, tmp_path):
    with pytest.raises(Exception, match="ground_truth"):
        run(make_cfg("dataset=mvtec", f"dataset.root={tmp_path / 'nowhere'}", *TINY))


def test_a_run_where_every_category_fails_is_an_error(make_cfg, mvtec_root, tmp_path):
    overrides = [o for o in TINY if not o.startswith("protocol.shots")]
    with pytest.raises(RuntimeError, match=r"every category failed: bottle: .*shots=5"):
        run(
            make_cfg(
                "dataset=mvtec",
                f"dataset.root={mvtec_root}",
                "dataset.category=all",
                "protocol.shots=5",
                *overrides,
            )
        )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["categories"]) == {"bottle", "screw"}
