"""`python -m foads.report <dir>`: compare finished runs (e.g. a multirun over modes).

Reads every summary.json at the top of a run directory below <dir> and prints one table:
a row per category, Image / Pixel / PRO columns per (method, mode), an Average row, and the
online-minus-offline difference where both modes are present. It never re-runs a model.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from foads.outputs.tables import to_markdown

METRICS = (("Image", "image_auroc"), ("Pixel", "pixel_auroc"), ("PRO", "pro"))


def find_runs(root: Path) -> list[dict]:
    """Top-level summaries of the runs under root (a run's per-category files are skipped)."""
    runs = []
    for path in sorted(root.rglob("summary.json")):
        summary = json.loads(path.read_text())
        if "categories" in summary:
            summary["_dir"] = str(path.parent)
            runs.append(summary)
    return runs


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _label(run: dict, runs: list[dict]) -> str:
    """'method mode', plus the run directory where several runs share method and mode."""
    label = f"{run['method']} {run['mode']}"
    same = [r for r in runs if (r["method"], r["mode"]) == (run["method"], run["mode"])]
    return label if len(same) == 1 else f"{label} [{Path(run['_dir']).name}]"


def comparison_rows(runs: list[dict]) -> list[list[str]]:
    """Header + a row per category + Average; one column group per run."""
    runs = sorted(runs, key=lambda r: (r["method"], r["mode"] != "offline", r["_dir"]))
    categories = sorted({c for r in runs for c in r["categories"]})
    header = ["Category"] + [f"{_label(r, runs)} {name}" for r in runs for name, _ in METRICS]
    rows = [header]
    for cat in categories:
        row = [cat]
        for run in runs:
            summary = run["categories"].get(cat)
            for _, key in METRICS:
                if summary is None or "error" in summary:
                    row.append("missing" if summary is None else "failed")
                else:
                    row.append(_pct(summary.get(key)))
        rows.append(row)
    rows.append(["Average"] + [_pct(r["mean"].get(k)) for r in runs for _, k in METRICS])
    return rows


def online_gain(runs: list[dict]) -> list[str]:
    """Online minus offline per method, where the method has exactly one run of each."""
    lines = []
    pairs = [(r["method"], r["mode"]) for r in runs]
    modes = {key: r["mean"] for key, r in zip(pairs, runs) if pairs.count(key) == 1}
    for method in sorted({m for m, _ in modes}):
        on, off = modes.get((method, "online")), modes.get((method, "offline"))
        if on and off:
            parts = [
                f"{name} {100 * (on[k] - off[k]):+.1f}"
                for name, k in METRICS + (("stream Image", "stream_image_auroc"),)
                if on.get(k) is not None and off.get(k) is not None
            ]
            lines.append(f"{method}: online - offline: " + ", ".join(parts))
    return lines


def table7_rows(runs: list[dict]) -> list[list[str]]:
    """Paper Table 7 layout, as measured: initial parameters (M), whether the state grew
    during the online stream (and by how much: K-NG's edge list varies a little, a memory
    bank grows with every accepted image), and online - offline (Image, PRO) in points."""
    rows = [["Method", "Initial Parameters(M)", "Extra Memory", "Improvement (Image, PRO)"]]
    pairs = [(r["method"], r["mode"]) for r in runs]
    by = {key: r for key, r in zip(pairs, runs) if pairs.count(key) == 1}
    for method in sorted({m for m, _ in by}):
        on, off = by.get((method, "online")), by.get((method, "offline"))
        if not (on and off):
            continue
        on_m, off_m = on["mean"], off["mean"]
        params = off_m.get("initial_parameters")
        grew = on_m.get("state_grew")
        growth = on_m.get("model_state_bytes", 0) - on_m.get("model_state_bytes_start", 0)
        gain = [100 * (on_m[k] - off_m[k]) for k in ("image_auroc", "pro")]
        rows.append(
            [
                method,
                "-" if params is None else f"{params / 1e6:.1f}",
                "-" if grew is None else (f"yes (+{growth / 2**20:.2f} MiB)" if grew else "no"),
                f"({gain[0]:+.1f}, {gain[1]:+.1f})",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a run or multirun directory")
    args = parser.parse_args(argv)
    runs = find_runs(args.root)
    if not runs:
        raise SystemExit(f"no summary.json of a finished run under {args.root}")
    print(to_markdown(comparison_rows(runs), f"Runs under {args.root}"))
    for line in online_gain(runs):
        print(line)
    table7 = table7_rows(runs)
    if len(table7) > 1:
        print("\n" + to_markdown(table7, "Table 7 layout (measured)"))


if __name__ == "__main__":
    main()
