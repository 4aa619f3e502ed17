"""Every dataset reader runs through the whole pipeline, in its real on-disk layout."""

import json
import math

import pytest

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


@pytest.mark.parametrize(
    ("dataset", "root_fixture", "category", "stream_length"),
    [
        ("mvtec", "mvtec_root", "bottle", 1 + 2 + 3),
        ("btad", "btad_root", "03", 2 + 1 + 2),
        ("mtd", "mtd_root", "magnetic_tile", 1 + 3),
        ("folder", "folder_root", "folder", 1 + 2),
    ],
)
def test_dataset_runs_end_to_end(
    make_cfg, request, tmp_path, dataset, root_fixture, category, stream_length
):
    root = request.getfixturevalue(root_fixture)
    extra = ["dataset.mask_dir=masks", "dataset.mask_suffix=_mask"] if dataset == "folder" else []
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
    with pytest.raises(RuntimeError, match="every category failed: bottle: .*shots=5"):
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
