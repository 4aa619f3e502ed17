"""The paper's published numbers (Tables 3-8) beside the measured ones: `foads.report --paper`.

`paper_results.csv` (shipped with the package) holds every number of Tables 3-8 as printed,
one row each, with the configuration it belongs to in our terms: method, mode, the swept key
and value (Tables 3-6), the summary.json metric and its unit, dataset, category, backbone.
A measured setting (jobs differing only in their seed, `foads.outputs.jobs`) is compared with
a paper row when its method, mode, dataset and backbone are the row's; for an ablation row
(Tables 3-6), when the run swept that key and the value is the row's; and when its other
settings the paper fixes (10 shots, 3136 nodes, 10 epochs, age_max 25; section 4.7) are the
paper's where the job's config says them. A setting that swept another key is only compared
with that key's table. Each compared cell shows the paper value, the measured mean (± the
standard deviation over seeds) in the paper's unit, and measured - paper. Rows of a table
that nothing measured say `not run` (in Tables 7 and 8, only the Average rows of a method
and mode that did not run at all, so one run does not drag 350 empty lines along); measured
numbers the paper has no row for are left out. One-line notes say when runs are on a dataset
or backbone the paper has no number for, when a setting is left out only for the settings
the paper fixes, and when a compared setting ran K-NG as method=kng or the fair gate (its
job's Hydra choices) instead of the paper's rules.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml

from foads.outputs.jobs import REPEAT_KEYS, Job, Setting
from foads.outputs.report_tables import values
from foads.outputs.tables import to_markdown

PAPER = "Wei et al., Few-shot Online Anomaly Detection and Segmentation (K-NG)"
TITLES = {
    "3": "Table 3: number of nodes K (method.num_nodes)",
    "4": "Table 4: maximum edge age (method.age_max)",
    "5": "Table 5: node threshold (method.acceptance.threshold_type)",
    "6": "Table 6: number of shots (protocol.shots)",
    "7": "Table 7: initial parameters, extra memory, online - offline",
    "8": "Table 8: per category, offline and online (average of all sessions)",
}
# What the paper fixes when it does not ablate it (section 4.7 and the gray columns); the
# method.* keys are K-NG's own.
PAPER_SETTING = {
    "protocol.shots": "10",
    "method.num_nodes": "3136",
    "method.epochs": "10",
    "method.age_max": "25",
}
# Swept keys that do not change which paper number a setting is compared with (the method,
# mode and gate show in the setting's label; the notes say which are not the paper's).
NEUTRAL_KEYS = (
    *REPEAT_KEYS,
    *("method", "mode", "variant", "gate", "run"),
    *("dataset", "dataset.category", "backbone"),  # matched by the summary's own labels
)
# Keys an online setting and its offline twin may differ in (Table 7's online - offline).
MODE_KEYS = ("mode", "variant", "gate", "run")
# Paper unit per measured unit (summary.json holds fractions and counts).
SCALE = {"percent": 100.0, "points": 100.0, "M": 1e-6, "bool": 1.0}
NUM_MVTEC = 15
HEADER = ["Row", "Column", "Paper", "Measured", "Measured - paper", "Run", "Note"]


@dataclass(frozen=True)
class PaperRow:
    table: str
    row: str
    column: str
    method: str
    mode: str
    sweep_key: str
    sweep_value: str
    metric: str
    unit: str
    dataset: str
    category: str
    backbone: str
    value: float


def load_paper(path: Path | None = None) -> list[PaperRow]:
    """The rows of paper_results.csv (or `path`), in the file's order ('#' lines skipped)."""
    if path is None:
        text = resources.files("foads.outputs").joinpath("paper_results.csv").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    rows = []
    for r in csv.DictReader(lines):
        text_fields = {k: v for k, v in r.items() if k != "value"}
        rows.append(PaperRow(**text_fields, value=float(r["value"])))
    return rows


# ---------------------------------------------------------------- measured settings
def _yaml(job: Job, name: str) -> dict | None:
    """A yaml file of a job's directory (None without one, e.g. hand-made summaries)."""
    path = None if job.dir is None else job.dir / name
    return yaml.safe_load(path.read_text()) if path is not None and path.exists() else None


def _select(cfg: dict | None, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _str(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


@dataclass
class Measured:
    """A setting with finished jobs, as the paper rows see it."""

    setting: Setting
    method: str
    mode: str
    dataset: str
    backbone: str
    config: dict | None  # its first finished job's resolved config
    choices: dict  # and the config groups it chose (method: kng_paper, gate: paper, ...)

    def value(self, key: str) -> str | None:
        """The setting's value of a config key: swept, else from its job's config."""
        if key in self.setting.values:
            return self.setting.values[key]
        v = _select(self.config, key)
        return None if v is None else _str(v)

    @cached_property
    def categories(self) -> set[str]:
        return {
            c
            for summary in self.setting.summaries
            for c, part in summary.get("categories", {}).items()
            if "error" not in part
        }


def measured_settings(settings: list[Setting]) -> list[Measured]:
    out = []
    for s in settings:
        if not s.finished:
            continue
        summary = s.summaries[0]
        out.append(
            Measured(
                s,
                str(summary.get("method", s.values.get("method", "?"))),
                str(summary.get("mode", s.values.get("mode", "?"))),
                str(summary.get("dataset", "unknown")).lower(),
                str(summary.get("backbone", "unknown")),
                _yaml(s.finished[0], "config_resolved.yaml"),
                _select(_yaml(s.finished[0], ".hydra/hydra.yaml"), "hydra.runtime.choices") or {},
            )
        )
    return out


def _differs(row: PaperRow, m: Measured) -> list[str]:
    """The paper-fixed settings in which m differs from row ('method.epochs=2 (paper 10)')."""
    out = []
    for key, paper in PAPER_SETTING.items():
        if key == row.sweep_key or (key.startswith("method.") and row.method != "kng"):
            continue
        v = m.value(key)
        if v is not None and v != paper:
            out.append(f"{key}={v} (paper {paper})")
    return out


def _matches(row: PaperRow, m: Measured, swept: list[str], mode: str) -> bool | list[str]:
    """True when m is the row's configuration; a list of differing settings when only those
    stand between them; False otherwise."""
    if (m.method, m.mode, m.dataset, m.backbone) != (row.method, mode, row.dataset, row.backbone):
        return False
    other = [k for k in swept if k not in NEUTRAL_KEYS and k != row.sweep_key]
    if other:
        return False  # a sweep of another key belongs to that key's table
    if row.sweep_key and (row.sweep_key not in swept or m.value(row.sweep_key) != row.sweep_value):
        return False
    if row.category != "mean" and row.category not in m.categories:
        return False
    return _differs(row, m) or True


# ---------------------------------------------------------------- cells
def _fmt(x: float, unit: str, sign: bool = False) -> str:
    if unit == "bool":
        return "yes" if x else "no"
    x = round(x, 1) + 0.0  # no "-0.0"
    return f"{x:+.1f}" if sign else f"{x:.1f}"


def _diff(measured: float, paper: float, unit: str) -> str:
    if unit == "bool":
        return "same" if bool(measured) == bool(paper) else "differs"
    return _fmt(measured - paper, unit, sign=True)


def _measure(row: PaperRow, m: Measured) -> tuple[float, str] | None:
    """(mean in the paper's unit, 'mean ± std' text) of m for row, None without a value."""
    if row.unit == "bool":
        found = [s.get("mean", s).get(row.metric) for s in m.setting.summaries]
        grew = [bool(g) for g in found if g is not None]
        return (float(any(grew)), _fmt(any(grew), "bool")) if grew else None
    vals = values(m.setting, row.metric, None if row.category == "mean" else row.category)
    if not vals:
        return None
    vals = [v * SCALE[row.unit] for v in vals]
    mean = statistics.fmean(vals)
    text = _fmt(mean, row.unit)
    if len(vals) > 1:
        text += f" ± {statistics.pstdev(vals):.1f}"
    return mean, text


def _note(row: PaperRow, *ms: Measured) -> str:
    if row.category != "mean" or row.dataset != "mvtec":
        return ""
    n = min(len(m.categories) for m in ms)
    return f"mean of {n}/{NUM_MVTEC} categories" if n < NUM_MVTEC else ""


def _pairs(row: PaperRow, measured: list[Measured], swept: list[str]):
    """(online, offline) settings for an online - offline row: both match, same other values."""
    out = []
    for on in measured:
        if _matches(row, on, swept, "online") is not True:
            continue
        rest = {k: v for k, v in on.setting.values.items() if k not in MODE_KEYS}
        for off in measured:
            twin = {k: v for k, v in off.setting.values.items() if k not in MODE_KEYS}
            if twin == rest and _matches(row, off, swept, "offline") is True:
                out.append((on, off))
                break
    return out


def _row_lines(row: PaperRow, measured: list[Measured], swept: list[str]):
    """The table lines of one paper row (one per matching setting), the settings compared,
    and those that only differ in the paper-fixed values ({label: [differences]})."""
    paper = _fmt(row.value, row.unit, sign=row.unit == "points")
    lines, compared, differing = [], [], {}
    if row.mode == "online-offline":
        for on, off in _pairs(row, measured, swept):
            a, b = _measure(row, on), _measure(row, off)
            if a is None or b is None:
                continue
            gain = a[0] - b[0]
            measured_text = _fmt(gain, row.unit, sign=True)
            label = f"{on.setting.label} - {off.setting.label}"
            diff = _diff(gain, row.value, row.unit)
            lines.append(
                [row.row, row.column, paper, measured_text, diff, label, _note(row, on, off)]
            )
            compared += [on, off]
        modes: tuple[str, ...] = ("online", "offline")
    else:
        for m in measured:
            if _matches(row, m, swept, row.mode) is not True:
                continue
            got = _measure(row, m)
            if got is None:
                continue
            diff = _diff(got[0], row.value, row.unit)
            lines.append([row.row, row.column, paper, got[1], diff, m.setting.label, _note(row, m)])
            compared.append(m)
        modes = (row.mode,)
    for m in measured:
        for mode in modes:
            found = _matches(row, m, swept, mode)
            if isinstance(found, list):
                differing[m.setting.label] = found
    return lines, compared, differing


# ---------------------------------------------------------------- the comparison
def _rules_note(m: Measured) -> str | None:
    """A line when a compared setting ran other rules than the paper's, as its job's config
    choices say: K-NG as method=kng (ours) rather than kng_paper, or the fair gate."""
    notes = []
    if m.method == "kng" and m.choices.get("method") == "kng":
        notes.append(
            "method=kng: our defaults chosen by measurement, not the paper's rules "
            "(method=kng_paper)"
        )
    if m.mode == "online" and m.choices.get("gate") == "fair":
        notes.append(
            "gate=fair: one pseudo-labeller for every method, not each method's published rule "
            "(gate=paper)"
        )
    return f"{m.setting.label}: " + "; ".join(notes) if notes else None


def paper_comparison(
    settings: list[Setting], swept: list[str], paper: list[PaperRow] | None = None
) -> dict:
    """{'tables': {table: rows with a header}, 'notes': [one-line warnings]} for the
    settings of a report (`foads.outputs.jobs.group_settings`) and its swept keys."""
    paper = load_paper() if paper is None else paper
    measured = measured_settings(settings)
    notes = []
    # Runs on a dataset or backbone the paper has no number for: one line per pair.
    known = {(r.method, r.dataset, r.backbone) for r in paper}
    other: dict[tuple[str, str], list[str]] = {}
    for m in measured:
        if (m.method, m.dataset, m.backbone) not in known:
            other.setdefault((m.dataset, m.backbone), []).append(m.setting.label)
    for (dataset, backbone), labels in other.items():
        notes.append(
            f"no paper number for dataset {dataset} with backbone {backbone} "
            f"({len(labels)} setting(s): {', '.join(labels)}): the paper's Tables 3-8 are "
            "MVTec AD (mvtec) with ResNet18 (resnet18; DRAEM: none), so these are not compared"
        )
    by_table: dict[str, list[PaperRow]] = {}
    for r in paper:
        by_table.setdefault(r.table, []).append(r)
    tables: dict[str, list[list[str]]] = {}
    compared: dict[str, Measured] = {}
    differing: dict[str, list[str]] = {}
    for table, rows in by_table.items():
        lines = {}
        for r in rows:
            lines[r], found, diff = _row_lines(r, measured, swept)
            compared.update((m.setting.label, m) for m in found)
            differing.update(diff)
        if not any(lines.values()):
            continue
        ran = {(r.method, r.mode) for r, found in lines.items() if found}
        out = [HEADER]
        for r, found in lines.items():
            if found:
                out += found
            elif (r.method, r.mode) in ran or r.category == "mean":
                paper_text = _fmt(r.value, r.unit, sign=r.unit == "points")
                out.append([r.row, r.column, paper_text, "not run", "", "", ""])
        tables[table] = out
    for label, diffs in differing.items():
        if label not in compared:
            notes.append(
                f"{label}: not compared, it differs from the paper's setting: {', '.join(diffs)}"
            )
    notes += [n for n in map(_rules_note, compared.values()) if n]
    if not tables and not other:
        notes.append("no measured setting is one of the paper's Tables 3-8")
    return {"tables": tables, "notes": notes}


def paper_markdown(comparison: dict, root: Path | str) -> str:
    """The comparison as markdown: the warnings, then a table per paper table."""
    parts = [
        f"# Paper vs measured: runs under {root}\n",
        (
            f"Paper: {PAPER}, Tables 3-8 as printed (foads/outputs/paper_results.csv). "
            "Measured: mean ± standard deviation over seeds, in the paper's units (percent; "
            "Table 7: millions, points); the difference is measured - paper.\n"
        ),
    ]
    parts += [f"- {note}" for note in comparison["notes"]]
    if comparison["notes"]:
        parts.append("")
    for table, rows in comparison["tables"].items():
        parts.append(to_markdown(rows, f"## {TITLES.get(table, f'Table {table}')}"))
    return "\n".join(parts)
