"""Per-category result tables in the layout of one method's columns of the paper's Table 8."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from foads.metrics import SESSION_METRICS, columns

COLUMNS = columns(*SESSION_METRICS)


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def category_table(per_category: dict[str, dict], mean: dict) -> list[list[str]]:
    """Rows: header, one row per category, then the Average row (values in %)."""
    rows = [["Category", *[c for c, _ in COLUMNS]]]
    for name, summary in per_category.items():
        if "error" in summary:
            rows.append([name, *["failed"] * len(COLUMNS)])
        else:
            rows.append([name, *[_pct(summary.get(k)) for _, k in COLUMNS]])
    rows.append(["Average", *[_pct(mean.get(k)) for _, k in COLUMNS]])
    return rows


def to_markdown(rows: list[list[str]], title: str = "") -> str:
    lines = [f"{title}\n"] if title else []
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def write_table(rows: list[list[str]], out_dir: Path, title: str = "") -> None:
    (out_dir / "table.md").write_text(to_markdown(rows, title))
    with (out_dir / "table.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
