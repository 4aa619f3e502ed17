"""Reader for VisA (Visual Anomaly, Zou et al., ECCV 2022), split by its own csv file."""

from __future__ import annotations

import csv
from pathlib import Path

from foads.data.base import DatasetReader
from foads.data.errors import DatasetError
from foads.data.sample import CategoryData, Sample

VISA_CATEGORIES = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)

# The columns the split file must have (it may have more).
SPLIT_COLUMNS = ("object", "split", "label", "image", "mask")
NORMAL = "normal"
ANOMALY = "anomaly"
# VisA has no defect types in its split file: every defective image is of this type.
DEFECT = "anomaly"

VISA_LAYOUT = """\
<root>/
  <category>/Data/Images/Normal/*.JPG      good images                  e.g. candle
  <category>/Data/Images/Anomaly/*.JPG     defective images
  <category>/Data/Masks/Anomaly/*.png      their masks (any non-zero pixel is defect)
  split_csv/1cls.csv                       object,split,label,image,mask (paths from <root>)"""


class VisA(DatasetReader):
    """VisA: 12 categories whose split is the csv ``split_file`` (default the one-class
    split ``split_csv/1cls.csv``): one row per image with its ``object`` (category),
    ``split`` (``train`` or ``test``), ``label`` (``normal`` or ``anomaly``), and the
    ``image`` and ``mask`` paths relative to the root (no mask for a normal image).

    ``train`` holds the normal rows of the train split and ``test`` the test split's rows;
    an anomalous row of the train split (none in ``1cls.csv``; other split files have some)
    goes to ``test``, since a shot must be good. Defective images have defect type
    ``anomaly``: the split file names none. VisA masks hold small label values rather
    than 255, so every non-zero mask pixel is a defect (``Sample.mask_threshold`` 0).
    A row naming an image that is not on disk, an anomalous row without a mask, or a split
    or label outside those above is a ``DatasetError`` naming the split file and its line.
    """

    def __init__(
        self, root: str | Path, category: str = "candle", split_file: str = "split_csv/1cls.csv"
    ) -> None:
        super().__init__(root, category)
        self.split_file = split_file
        self._rows: dict[str, list[tuple[int, dict[str, str]]]] | None = None

    def categories(self) -> list[str]:
        return list(VISA_CATEGORIES)

    def layout(self) -> str:
        return VISA_LAYOUT

    @property
    def split_path(self) -> Path:
        return self.root / self.split_file

    def rows(self) -> dict[str, list[tuple[int, dict[str, str]]]]:
        """The split file's rows by category, each with its line number; read once."""
        if self._rows is not None:
            return self._rows
        path = self.split_path
        if not path.is_file():
            raise self.layout_error(
                f"VisA split file {path} not found; expected a csv with the header "
                f"{','.join(SPLIT_COLUMNS)} (dataset.split_file names it, relative to the root)"
            )
        rows: dict[str, list[tuple[int, dict[str, str]]]] = {}
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in SPLIT_COLUMNS if name not in header]
            if missing:
                raise DatasetError(
                    f"VisA split file {path} lacks the column(s) {', '.join(missing)}; "
                    f"expected the header {','.join(SPLIT_COLUMNS)}, got {','.join(header)}"
                )
            reader.fieldnames = header
            for row in reader:
                row = {k: (v or "").strip() for k, v in row.items() if k is not None}
                rows.setdefault(row["object"], []).append((reader.line_num, row))
        self._rows = rows
        return rows

    def _read(self, category: str) -> CategoryData:
        path = self.split_path
        rows = self.rows().get(category)
        if not rows:
            found = sorted(self.rows())
            raise DatasetError(
                f"VisA split file {path} has no row of category {category!r}; it lists "
                f"{', '.join(found) if found else 'none'}"
            )
        train: list[Sample] = []
        test: list[Sample] = []
        missing: list[str] = []
        for line, row in rows:
            split, label = row["split"].lower(), row["label"].lower()
            where = f"{path}, line {line}"
            if split not in ("train", "test"):
                raise DatasetError(f"{where}: split {row['split']!r}; expected train or test")
            if label not in (NORMAL, ANOMALY):
                raise DatasetError(
                    f"{where}: label {row['label']!r}; expected {NORMAL} or {ANOMALY}"
                )
            image = self.root / row["image"]
            if not image.is_file():
                missing.append(f"{image} ({where})")
            if label == NORMAL:
                (train if split == "train" else test).append(Sample(image, 0))
                continue
            if not row["mask"]:
                raise DatasetError(f"{where}: anomalous image {image} has no mask path")
            test.append(Sample(image, 1, self.root / row["mask"], DEFECT, mask_threshold=0))
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(
                f"{len(missing)} image(s) of VisA category {category!r} listed in {path} are "
                f"not on disk: {'; '.join(missing[:5])}{more}"
            )
        images = self.root / category / "Data" / "Images"
        return CategoryData(
            name=category,
            train=train,
            test=test,
            has_masks=True,
            root=self.root / category,
            extra={
                "train_dir": f"{images / 'Normal'} (train rows of {path})",
                "test_dir": f"{images} (test rows of {path})",
                "split_file": path,
            },
        )
