"""MVTec-layout discovery, VisA, MVTec 3D-AD, KolektorSDD and KolektorSDD2 on tiny copies of
their real on-disk layouts: counts, labels, masks, categories, errors, and tiny runs."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foads.data import (
    DISCOVER,
    KOLEKTORSDD2_CATEGORY,
    KOLEKTORSDD_CATEGORY,
    MVTEC3D_CATEGORIES,
    VISA_CATEGORIES,
    DatasetError,
    KolektorSDD,
    KolektorSDD2,
    MVTec3DAD,
    MVTecAD,
    VisA,
    load_mask,
    load_sample_mask,
)
from foads.run import run

SIZE = 40  # every image here is SIZE x SIZE
BOX = (8, 8, 16, 16)  # the defect drawn in every mask: 64 pixels
BOX_PIXELS = 64


def _image(path: Path, seed: int = 0) -> Path:
    """A small noisy RGB image (JPEG, PNG or BMP by the suffix), folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = rng.integers(90, 160, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def _mask(path: Path, value: int = 255, box=BOX) -> Path:
    """A grey mask with ``value`` in ``box`` (none: an empty mask), folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if box is not None:
        left, top, right, bottom = box
        mask[top:bottom, left:right] = value
    Image.fromarray(mask).save(path)
    return path


def _labels(samples) -> Counter:
    return Counter(s.label for s in samples)


# --- MVTec layout, discovered categories --------------------------------------------------


def _mvtec_category(root: Path, name: str, train: int, good: int, defects: dict[str, int]):
    for i in range(train):
        _image(root / name / "train" / "good" / f"{i:03d}.png", i)
    for i in range(good):
        _image(root / name / "test" / "good" / f"{i:03d}.png", 100 + i)
    for defect, n in defects.items():
        for i in range(n):
            _image(root / name / "test" / defect / f"{i:03d}.png", 200 + i)
            _mask(root / name / "ground_truth" / defect / f"{i:03d}_mask.png")


@pytest.fixture
def layout_root(tmp_path: Path) -> Path:
    """MPDD as released plus a user's category, in the MVTec layout, and some noise:
    metal_plate (4 train, 2 good, 2 scratches + 1 rust), my_part (3 train, 1 good, 1 dent);
    a hidden folder, a folder without train/good and a file, none of them categories."""
    root = tmp_path / "mvtec_layout"
    _mvtec_category(root, "metal_plate", 4, 2, {"major_rust": 1, "scratches": 2})
    _mvtec_category(root, "my_part", 3, 1, {"dent": 1})
    _image(root / ".cache" / "train" / "good" / "000.png")
    _image(root / "notes" / "test" / "good" / "000.png")
    (root / "README.txt").write_text("not a category")
    return root


def test_discovery_finds_the_folders_in_mvtec_layout(layout_root):
    reader = MVTecAD(layout_root, "all", known_categories=DISCOVER)
    assert reader.categories() == ["metal_plate", "my_part"]
    assert reader.resolve_categories() == ["metal_plate", "my_part"]
    assert reader.resolve_categories("my_part") == ["my_part"]
    data = reader.load("metal_plate")
    assert data.name == "metal_plate" and data.root == layout_root / "metal_plate"
    assert _labels(data.train) == {0: 4} and _labels(data.test) == {0: 2, 1: 3}
    assert Counter(s.defect_type for s in data.test) == {
        "good": 2,
        "scratches": 2,
        "major_rust": 1,
    }
    for sample in data.test:
        if sample.label == 1:
            assert sample.mask_path == (
                layout_root
                / "metal_plate"
                / "ground_truth"
                / sample.defect_type
                / f"{sample.path.stem}_mask.png"
            )
            assert load_sample_mask(sample).sum() == BOX_PIXELS
    assert len(reader.load("my_part").test) == 2


def test_discovered_category_missing_names_root_and_found_ones(layout_root):
    reader = MVTecAD(layout_root, "all", known_categories=DISCOVER)
    with pytest.raises(DatasetError) as info:
        reader.load("bottle")
    message = str(info.value)
    assert str(layout_root) in message and "'bottle' not found" in message
    assert "found there (sub-folders holding train/good/): metal_plate, my_part" in message
    # "notes" is a folder but not in the layout; resolve_categories refuses it the same way.
    with pytest.raises(DatasetError, match="metal_plate, my_part"):
        reader.resolve_categories("notes")


def test_discovery_without_any_category_is_an_error(tmp_path):
    (tmp_path / "empty" / "something").mkdir(parents=True)
    reader = MVTecAD(tmp_path / "empty", "all", known_categories=DISCOVER)
    assert reader.categories() == []
    with pytest.raises(DatasetError, match="no sub-folder of it holds train/good/"):
        reader.resolve_categories()
    with pytest.raises(DatasetError, match=r"found there .*: none"):
        reader.load("x")
    with pytest.raises(DatasetError, match="does not exist"):
        MVTecAD(tmp_path / "nowhere", known_categories=DISCOVER).load("x")


def test_plain_mvtec_still_refuses_other_names(layout_root):
    with pytest.raises(DatasetError, match="unknown MVTecAD category 'metal_plate'"):
        MVTecAD(layout_root).load("metal_plate")
    with pytest.raises(DatasetError, match="no MVTecAD category found"):
        MVTecAD(layout_root).resolve_categories("all")


def test_known_categories_string_other_than_discover_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="'discover'"):
        MVTecAD(tmp_path, known_categories="bottle")


# --- MVTec 3D-AD ---------------------------------------------------------------------------


@pytest.fixture
def mvtec3d_root(tmp_path: Path) -> Path:
    """MVTec 3D-AD: bagel (3 train, 2 validation, 1 good test, 2 crack, 1 hole; xyz/ folders
    with .tiff files beside every rgb/), tire (2 train, 1 contamination)."""
    root = tmp_path / "mvtec3d"
    bagel = root / "bagel"

    def rgb_xyz(folder: Path, n: int, seed: int):
        for i in range(n):
            _image(folder / "rgb" / f"{i:03d}.png", seed + i)
            _image(folder / "xyz" / f"{i:03d}.tiff", seed + i)

    rgb_xyz(bagel / "train" / "good", 3, 0)
    rgb_xyz(bagel / "validation" / "good", 2, 10)
    rgb_xyz(bagel / "test" / "good", 1, 20)
    for defect, n in (("crack", 2), ("hole", 1)):
        rgb_xyz(bagel / "test" / defect, n, 30)
        for i in range(n):
            _mask(bagel / "test" / defect / "gt" / f"{i:03d}.png")
    tire = root / "tire"
    rgb_xyz(tire / "train" / "good", 2, 0)
    rgb_xyz(tire / "test" / "contamination", 1, 5)
    _mask(tire / "test" / "contamination" / "gt" / "000.png")
    return root


def test_mvtec3d_reads_rgb_with_validation_in_the_pool(mvtec3d_root):
    data = MVTec3DAD(mvtec3d_root, "bagel").load()
    assert len(data.train) == 5 and _labels(data.train) == {0: 5}
    assert sum("validation" in s.path.parts for s in data.train) == 2
    assert data.extra["validation_images"] == 2
    assert _labels(data.test) == {0: 1, 1: 3}
    assert Counter(s.defect_type for s in data.test) == {"good": 1, "crack": 2, "hole": 1}
    for sample in [*data.train, *data.test]:
        assert sample.path.parent.name == "rgb" and sample.path.suffix == ".png"
    for sample in data.test:
        if sample.label == 1:
            assert sample.mask_path == sample.path.parent.parent / "gt" / sample.path.name
            assert load_sample_mask(sample).sum() == BOX_PIXELS
        else:
            assert sample.mask_path is None
    without = MVTec3DAD(mvtec3d_root, "bagel", use_validation=False).load()
    assert len(without.train) == 3 and without.extra["validation_images"] == 0


def test_mvtec3d_categories_and_errors(mvtec3d_root):
    reader = MVTec3DAD(mvtec3d_root, "all")
    assert len(MVTEC3D_CATEGORIES) == 10 and reader.categories() == list(MVTEC3D_CATEGORIES)
    assert reader.resolve_categories() == ["bagel", "tire"]
    with pytest.raises(DatasetError, match="'peach' not found"):
        reader.load("peach")
    with pytest.raises(DatasetError, match=r"unknown MVTec3DAD category 'bottle'.*cable_gland"):
        reader.load("bottle")
    missing = mvtec3d_root / "bagel" / "test" / "hole" / "gt" / "000.png"
    missing.unlink()
    with pytest.raises(DatasetError, match="not found") as info:
        reader.load("bagel")
    assert str(missing) in str(info.value)


def test_mvtec3d_root_read_as_mvtec_layout_points_to_mvtec3d(mvtec3d_root):
    reader = MVTecAD(mvtec3d_root, "all", known_categories=DISCOVER)
    with pytest.raises(DatasetError, match="dataset=mvtec3d"):
        reader.load("bagel")


# --- VisA ---------------------------------------------------------------------------------

VISA_HEADER = ["object", "split", "label", "image", "mask"]


def _visa_rows(root: Path, category: str, train: int, good: int, bad: int, value: int = 1):
    """Write one category's images and masks; return its csv rows (masks hold ``value``)."""
    rows = []
    images = f"{category}/Data/Images"
    for i in range(train + good):
        name = f"{images}/Normal/{i:04d}.JPG"
        _image(root / name, i)
        rows.append([category, "train" if i < train else "test", "normal", name, ""])
    for i in range(bad):
        name, mask = f"{images}/Anomaly/{i:03d}.JPG", f"{category}/Data/Masks/Anomaly/{i:03d}.png"
        _image(root / name, 50 + i)
        _mask(root / mask, value)
        rows.append([category, "test", "anomaly", name, mask])
    return rows


def _write_csv(path: Path, rows, header=VISA_HEADER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def visa_root(tmp_path: Path) -> Path:
    """VisA: candle (4 train, 2 good test, 3 anomalous; masks of value 1, as VisA's are not
    0/255) and pcb1 (3 train, 1 good test, 2 anomalous; masks of value 255), with the csv."""
    root = tmp_path / "VisA"
    rows = _visa_rows(root, "candle", 4, 2, 3, value=1)
    rows += _visa_rows(root, "pcb1", 3, 1, 2, value=255)
    _write_csv(root / "split_csv" / "1cls.csv", rows)
    return root


def test_visa_split_from_the_csv(visa_root):
    data = VisA(visa_root, "candle").load()
    assert data.name == "candle" and data.root == visa_root / "candle"
    assert _labels(data.train) == {0: 4} and _labels(data.test) == {0: 2, 1: 3}
    assert Counter(s.defect_type for s in data.test) == {"good": 2, "anomaly": 3}
    assert all(s.path.parent.name == "Normal" for s in data.train)
    for sample in data.test:
        if sample.label == 0:
            assert sample.mask_path is None and sample.path.parent.name == "Normal"
        else:
            assert sample.path.parent == visa_root / "candle" / "Data" / "Images" / "Anomaly"
            assert sample.mask_path == (
                visa_root / "candle" / "Data" / "Masks" / "Anomaly" / f"{sample.path.stem}.png"
            )
    pcb1 = VisA(visa_root, "pcb1").load()
    assert _labels(pcb1.train) == {0: 3} and _labels(pcb1.test) == {0: 1, 1: 2}


def test_visa_masks_count_every_non_zero_pixel(visa_root):
    defective = [s for s in VisA(visa_root, "candle").load().test if s.label == 1]
    for sample in defective:
        # The mask holds 1 in the box: the default 127 threshold would see no defect.
        assert load_mask(sample.mask_path, (SIZE, SIZE)).sum() == 0
        assert load_sample_mask(sample).sum() == BOX_PIXELS


def test_visa_categories_and_all(visa_root):
    reader = VisA(visa_root, "all")
    assert len(VISA_CATEGORIES) == 12 and "pipe_fryum" in reader.categories()
    assert reader.resolve_categories() == ["candle", "pcb1"]
    with pytest.raises(DatasetError, match=r"unknown VisA category 'pcb5'.*pipe_fryum"):
        reader.load("pcb5")
    with pytest.raises(DatasetError, match="'fryum' not found"):
        reader.load("fryum")
    # A category folder the csv does not list.
    _image(visa_root / "fryum" / "Data" / "Images" / "Normal" / "0000.JPG")
    with pytest.raises(DatasetError, match="no row of category 'fryum'; it lists candle, pcb1"):
        reader.load("fryum")


def test_visa_missing_split_file_and_bad_header(visa_root):
    csv_path = visa_root / "split_csv" / "1cls.csv"
    rows = list(csv.reader(csv_path.open()))[1:]
    csv_path.unlink()
    with pytest.raises(DatasetError, match="expected layout") as info:
        VisA(visa_root, "candle").load()
    assert str(csv_path) in str(info.value) and "object,split,label,image,mask" in str(info.value)
    _write_csv(csv_path, [r[:4] for r in rows], header=VISA_HEADER[:4])
    with pytest.raises(DatasetError, match="lacks the column\\(s\\) mask"):
        VisA(visa_root, "candle").load()
    other = visa_root / "split_csv" / "2cls.csv"
    _write_csv(other, rows)
    assert len(VisA(visa_root, "candle", split_file="split_csv/2cls.csv").load().test) == 5


def test_visa_bad_rows_name_the_file_and_line(visa_root):
    csv_path = visa_root / "split_csv" / "1cls.csv"
    rows = list(csv.reader(csv_path.open()))[1:]
    missing = visa_root / "candle" / "Data" / "Images" / "Normal" / "0001.JPG"
    missing.unlink()
    with pytest.raises(DatasetError, match="1 image\\(s\\) of VisA category 'candle'") as info:
        VisA(visa_root, "candle").load()
    assert f"{missing} ({csv_path}, line 3)" in str(info.value)
    _image(missing)
    bad_label = [r[:] for r in rows]
    bad_label[0][2] = "good"
    _write_csv(csv_path, bad_label)
    with pytest.raises(DatasetError, match="line 2: label 'good'; expected normal or anomaly"):
        VisA(visa_root, "candle").load()
    no_mask = [r[:] for r in rows]
    no_mask[6][4] = ""  # the first anomalous candle row
    _write_csv(csv_path, no_mask)
    with pytest.raises(DatasetError, match=r"line 8: anomalous image .*000\.JPG has no mask"):
        VisA(visa_root, "candle").load()
    mask = visa_root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png"
    _write_csv(csv_path, rows)
    mask.unlink()
    with pytest.raises(DatasetError, match=r"mask for .* not found") as info:
        VisA(visa_root, "candle").load()
    assert str(mask) in str(info.value)


def test_visa_anomalous_train_rows_go_to_the_test_set(visa_root):
    csv_path = visa_root / "split_csv" / "1cls.csv"
    rows = list(csv.reader(csv_path.open()))[1:]
    rows[6][1] = "train"  # the first anomalous candle image, as a 2-class split file has
    _write_csv(csv_path, rows)
    data = VisA(visa_root, "candle").load()
    assert _labels(data.train) == {0: 4} and _labels(data.test) == {0: 2, 1: 3}


# --- KolektorSDD --------------------------------------------------------------------------


@pytest.fixture
def kolektor_root(tmp_path: Path) -> Path:
    """KolektorSDD: kos01 and kos02 of 8 parts, kos03 of 7; kos01/Part3 (mask value 255),
    kos02/Part5 (mask value 1) and kos03/Part0 defective, so 20 good and 3 defective parts.
    A folder that is not kos<NN> is not read."""
    root = tmp_path / "KolektorSDD"
    defective = {("kos01", 3): 255, ("kos02", 5): 1, ("kos03", 0): 255}
    for folder, parts in (("kos01", 8), ("kos02", 8), ("kos03", 7)):
        for part in range(parts):
            _image(root / folder / f"Part{part}.jpg", part)
            value = defective.get((folder, part))
            _mask(root / folder / f"Part{part}_label.bmp", value or 0, BOX if value else None)
    _image(root / "extras" / "Part0.jpg")
    return root


def test_kolektorsdd_labels_parts_by_their_masks(kolektor_root):
    data = KolektorSDD(kolektor_root).load()
    assert data.name == KOLEKTORSDD_CATEGORY == "kolektorsdd"
    assert _labels(data.train) == {0: 20} and _labels(data.test) == {1: 3}
    assert data.extra["good_images"] == 20 and data.extra["defective_images"] == 3
    assert sorted((s.path.parent.name, s.path.name) for s in data.test) == [
        ("kos01", "Part3.jpg"),
        ("kos02", "Part5.jpg"),
        ("kos03", "Part0.jpg"),
    ]
    assert not any("extras" in s.path.parts for s in [*data.train, *data.test])
    assert not any(s.path.stem.endswith("_label") for s in [*data.train, *data.test])
    for sample in data.test:
        assert sample.defect_type == "defect"
        assert sample.mask_path == sample.path.with_name(f"{sample.path.stem}_label.bmp")
        assert load_sample_mask(sample).sum() == BOX_PIXELS


def test_kolektorsdd_categories_and_errors(kolektor_root, tmp_path):
    reader = KolektorSDD(kolektor_root, "all")
    assert reader.resolve_categories() == ["kolektorsdd"]
    with pytest.raises(DatasetError, match="unknown KolektorSDD category 'kos01'"):
        reader.load("kos01")
    label = kolektor_root / "kos02" / "Part6_label.bmp"
    label.unlink()
    with pytest.raises(DatasetError, match=r"mask for .*Part6\.jpg not found") as info:
        reader.load("kolektorsdd")
    assert str(label) in str(info.value)
    (tmp_path / "no_kos").mkdir()
    with pytest.raises(
        DatasetError, match=r"(?s)no KolektorSDD category found.*kos01/ \.\. kos50/"
    ):
        KolektorSDD(tmp_path / "no_kos", "all").resolve_categories()


# --- KolektorSDD2 -------------------------------------------------------------------------


@pytest.fixture
def kolektor2_root(tmp_path: Path) -> Path:
    """KolektorSDD2: train/ 4 good and 2 defective (values 255 and 1), test/ 2 good and 3
    defective; every image <id>.png with <id>_GT.png."""
    root = tmp_path / "KolektorSDD2"
    for split, good, bad in (("train", 4, 2), ("test", 2, 3)):
        for i in range(good + bad):
            ident = f"{10000 + 10 * i + (split == 'test')}"
            _image(root / split / f"{ident}.png", i)
            value = 0 if i < good else (255 if i % 2 else 1)
            _mask(root / split / f"{ident}_GT.png", value, BOX if value else None)
    return root


def test_kolektorsdd2_train_good_pool_and_test_set(kolektor2_root):
    data = KolektorSDD2(kolektor2_root).load()
    assert data.name == KOLEKTORSDD2_CATEGORY == "kolektorsdd2"
    assert _labels(data.train) == {0: 4}
    assert all(s.path.parent.name == "train" for s in data.train)
    # The test split (2 good, 3 defective) and the 2 defective training images.
    assert _labels(data.test) == {0: 2, 1: 5}
    assert data.extra["splits"] == {
        "train": {"good": 4, "defective": 2},
        "test": {"good": 2, "defective": 3},
    }
    for sample in data.test:
        if sample.label == 1:
            assert sample.mask_path == sample.path.with_name(f"{sample.path.stem}_GT.png")
            assert load_sample_mask(sample).sum() == BOX_PIXELS
        else:
            assert sample.mask_path is None and sample.path.parent.name == "test"
    assert not any(s.path.stem.endswith("_GT") for s in [*data.train, *data.test])


def test_kolektorsdd2_categories_and_errors(kolektor2_root, tmp_path):
    assert KolektorSDD2(kolektor2_root, "all").resolve_categories() == ["kolektorsdd2"]
    image = kolektor2_root / "test" / "10001.png"
    gt = image.with_name("10001_GT.png")
    gt.unlink()
    with pytest.raises(DatasetError, match=r"mask for .*10001\.png not found") as info:
        KolektorSDD2(kolektor2_root).load()
    assert str(gt) in str(info.value)
    only_train = tmp_path / "only_train"
    _image(only_train / "train" / "1.png")
    _mask(only_train / "train" / "1_GT.png", 0, None)
    with pytest.raises(DatasetError, match="split folder\\(s\\) test not found"):
        KolektorSDD2(only_train).load()


# --- Tiny runs through foads.run ----------------------------------------------------------

# Tiny images: a 32 px crop gives an 8 x 8 embedding grid; one session holds the stream.
TINY = [
    "protocol.resize=32",
    "protocol.crop=32",
    "protocol.shots=2",
    "protocol.batch_size=4",
    "protocol.session_size=16",
    "method.num_nodes=8",
    "method.epochs=2",
]


def test_visa_runs_end_to_end_with_its_masks(make_cfg, visa_root, tmp_path):
    summary = run(
        make_cfg("dataset=visa", f"dataset.root={visa_root}", "dataset.category=candle", *TINY)
    )
    # 4 good training images less 2 shots, 2 good and 3 defective test images.
    assert summary["dataset"] == "visa"
    assert summary["num_images"] == 2 + 2 + 3 and summary["num_anomalous"] == 3
    assert 0.0 <= summary["stream_pixel_auroc"] <= 1.0
    maps = np.load(tmp_path / "run" / "maps.npz")
    defective = maps["defect_types"] == "anomaly"
    assert defective.sum() == 3
    # The value-1 masks reach the run as defects (a 127 threshold would leave them empty).
    assert all(mask.any() for mask in maps["masks"][defective])
    assert not any(mask.any() for mask in maps["masks"][~defective])


def test_mvtec_layout_runs_every_discovered_category(make_cfg, layout_root, tmp_path):
    summary = run(make_cfg("dataset=mvtec_layout", f"dataset.root={layout_root}", *TINY))
    assert summary["dataset"] == "mvtec_layout"
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(on_disk["categories"]) == {"metal_plate", "my_part"}
    # metal_plate: 2 moved good, 2 good and 3 defective test; my_part: 1, 1 and 1.
    assert on_disk["categories"]["metal_plate"]["num_images"] == 2 + 2 + 3
    assert on_disk["categories"]["my_part"]["num_images"] == 1 + 1 + 1
    assert summary["num_images"] == 7 + 3


@pytest.mark.parametrize(
    ("dataset", "root_fixture", "stream_length", "anomalous"),
    [
        # bagel: 5 good (train and validation) less 2 shots, 1 good, 3 defective.
        ("mvtec3d", "mvtec3d_root", 3 + 1 + 3, 3),
        ("kolektorsdd", "kolektor_root", 18 + 3, 3),
        ("kolektorsdd2", "kolektor2_root", 2 + 2 + 5, 5),
    ],
)
def test_other_layouts_run_end_to_end(
    make_cfg, request, tmp_path, dataset, root_fixture, stream_length, anomalous
):
    root = request.getfixturevalue(root_fixture)
    overrides = [f"dataset={dataset}", f"dataset.root={root}", *TINY]
    if dataset == "mvtec3d":
        overrides.append("dataset.category=bagel")
    summary = run(make_cfg(*overrides))
    assert summary["dataset"] == dataset
    assert summary["num_images"] == stream_length and summary["num_anomalous"] == anomalous
    assert 0.0 <= summary["stream_pixel_auroc"] <= 1.0
