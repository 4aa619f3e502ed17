"""`python -m foads.report <dir>`: lay out finished runs or a multirun the way the paper does.

Reads the jobs under <dir> (see `foads.outputs.jobs`): a multirun's sweep tells which jobs
were asked for, so failed and never-run jobs are listed and marked in the tables instead of
dropped. Jobs differing only in `seed` are repeats: tables show mean ± spread over them.
Prints and writes to `<dir>/report/` (or `--out`):

- `comparison.md/.csv`: Table 8 layout (a row per category and the Average, Image / Pixel /
  PRO per setting) and the online - offline gain per method;
- `table7.md/.csv` when methods were run offline and online: Table 7 layout, as measured;
- `gates.md/.csv` when `variant` was swept (sweep=comparison): a row per method, offline and
  each online variant (published gate, fair gate) with the accepted and absorbed-anomalous
  fractions and the online - offline gain in stream-level image AUROC;
- `ablation.md/.csv` when one hyper-parameter was swept: Tables 3-5 layout (Table 6 for
  `protocol.shots`), and `hyperparameters.png` (Figures 8 and 11);
- `sessions_image.png`, `sessions_pixel.png`, `sessions_pro.png`: per-session curves, a panel
  per category and a line per setting (Figure 6);
- `maps_<category>.png`: every setting's anomaly maps on the same stream images (Figure 10);
- `drift_<scenario>.png` for drifted streams: image AUROC and the false-positive rate at the
  shots' threshold per session against stream position, a line per mode, the drift shaded;
- `failures.txt`: the jobs without a summary and why;
- with `--paper`, `paper_comparison.md`: the paper's published numbers (Tables 3-8, MVTec AD,
  ResNet18) beside the measured ones and measured - paper (`foads.outputs.paper`).

It never re-runs a model: every number is a job's summary.json value (or their mean).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from foads.outputs.jobs import find_jobs, group_settings
from foads.outputs.paper import paper_comparison, paper_markdown
from foads.outputs.report_figures import (
    drift_curves,
    hyperparameter_curves,
    method_grid,
    session_curves_by_setting,
)
from foads.outputs.report_tables import (
    ablation_rows,
    comparison_rows,
    failure_lines,
    gate_rows,
    online_gain,
    oracle_share,
    payoff_rows,
    swept_parameter,
    table7_rows,
)
from foads.outputs.tables import to_markdown


def _write(rows: list[list[str]], out_dir: Path, name: str, title: str) -> str:
    text = to_markdown(rows, title)
    (out_dir / f"{name}.md").write_text(text)
    with (out_dir / f"{name}.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return text


def report(
    root: Path, out_dir: Path | None = None, figures: bool = True, paper: bool = False
) -> dict:
    """Write the report of the jobs under root; returns what it made (for callers and tests).
    paper: also `paper_comparison.md`, the paper's numbers beside the measured ones."""
    root = Path(root)
    swept, jobs = find_jobs(root)
    if not any(j.status == "ok" for j in jobs):
        detail = "; ".join(f"{j.status}: {j.dir or j.overrides}" for j in jobs) or "no job"
        raise SystemExit(f"no finished run (summary.json) under {root} ({detail})")
    settings = group_settings(swept, jobs)
    out_dir = Path(out_dir) if out_dir else root / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict = {"settings": settings, "swept": swept}
    text = [_write(comparison_rows(settings), out_dir, "comparison", f"Runs under {root}")]
    gains = online_gain(settings)
    text += gains
    if any(s.values.get("variant") for s in settings):  # sweep=comparison: both gates
        made["gates"] = gate_rows(settings)
        title = "Offline and online under the published and the fair gate"
        text.append("\n" + _write(made["gates"], out_dir, "gates", title))
    # The payoff table when learning is what differs: the mode, or the oracle's images.
    if any(
        s.values.get(k) for s in settings for k in ("mode", "variant", "protocol.oracle_images")
    ):
        made["payoff"] = payoff_rows(settings)
        text.append("\n" + _write(made["payoff"], out_dir, "payoff", "What the stream paid"))
        text += oracle_share(settings)
    table7 = table7_rows(settings)
    if len(table7) > 1:
        text.append("\n" + _write(table7, out_dir, "table7", "Table 7 layout (measured)"))
    key = swept_parameter(swept)
    if key is not None:
        made["ablation"] = ablation_rows(settings, key)
        text.append("\n" + _write(made["ablation"], out_dir, "ablation", f"Ablation of {key}"))
    failures = failure_lines(settings)
    (out_dir / "failures.txt").write_text("".join(f"{line}\n" for line in failures))
    if failures:
        text.append(f"\n{len(failures)} job(s) without results:\n" + "\n".join(failures))
    if paper:
        made["paper"] = paper_comparison(settings, swept)
        made["paper_text"] = paper_markdown(made["paper"], root)
        (out_dir / "paper_comparison.md").write_text(made["paper_text"])
        text.append("\n" + made["paper_text"])
    if figures:
        made["figures"] = session_curves_by_setting(settings, out_dir)
        if key is not None:
            made["figures"].append(hyperparameter_curves(settings, key, out_dir))
        made["figures"] += method_grid(settings, out_dir)
        made["figures"] += drift_curves(settings, out_dir)
    made["text"] = "\n".join(text)
    made["out_dir"] = out_dir
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a run or multirun directory")
    parser.add_argument("--out", type=Path, help="where to write (default <root>/report)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument(
        "--paper",
        action="store_true",
        help="also paper_comparison.md: the paper's Tables 3-8 beside the measured numbers",
    )
    args = parser.parse_args(argv)
    made = report(args.root, args.out, figures=not args.no_figures, paper=args.paper)
    print(made["text"])
    for figure in made.get("figures", []):
        if figure.name.startswith("drift_"):  # the figure that shows a drifting stream
            print(f"\nfigure: {figure}")
    print(f"\nreport written to {made['out_dir']}")


if __name__ == "__main__":
    main()
