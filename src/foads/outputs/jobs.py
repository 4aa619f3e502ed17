"""The jobs of a run or multirun directory: what was asked for, what finished, what failed.

A Hydra multirun writes `multirun.yaml` (the sweep) at its root and one directory per job
with `.hydra/overrides.yaml` (that job's overrides) and, once finished, `summary.json`. The
sweep is expanded again here, so a job that never started is reported as missing and one
that started but wrote no summary as failed, instead of silently dropping out of a table.
Jobs that only differ in `seed` are repeats of one setting.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from foads.registry import options

REPEAT_KEYS = ("seed",)


@dataclass
class Job:
    """One job: its directory (None when it never started), overrides and summary."""

    overrides: dict[str, str]
    dir: Path | None = None
    summary: dict | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.summary is not None:
            return "ok"
        return "missing" if self.dir is None else "failed"


@dataclass
class Setting:
    """Jobs that differ only in their seed: one column of a table, one line of a figure."""

    label: str
    values: dict[str, str]  # the swept keys that define the setting (seed excluded)
    jobs: list[Job] = field(default_factory=list)

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "ok"]

    @property
    def summaries(self) -> list[dict]:
        """The finished jobs' summaries, in the same order."""
        return [j.summary for j in self.jobs if j.summary is not None]

    @property
    def unfinished(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "ok"]


def parse_overrides(lines: list[str], search_path: Sequence[str] = ()) -> dict[str, list[str]]:
    """Override strings -> {key: [values]} (a sweep such as `a=1,2`, `range(3)` or a config
    group's `glob(*)` expanded; a glob over the group's configs in foads and `search_path`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    parsed = OverridesParser.create().parse_overrides(list(lines))
    out: dict[str, list[str]] = {}
    for o in parsed:
        value = o.value()
        if isinstance(value, Glob):
            key = o.get_key_element()
            out[key] = value.filter(list(options(key, search_path)))
        elif o.is_sweep_override():
            out[o.get_key_element()] = [str(v) for v in o.sweep_string_iterator()]
        else:
            out[o.get_key_element()] = [o.get_value_element_as_str()]
    return out


def job_overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    return {k: v[0] for k, v in parse_overrides(yaml.safe_load(path.read_text()) or []).items()}


def expected_grid(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The swept keys and every combination of their values that the multirun at root asked
    for (from multirun.yaml: command-line sweeps and `hydra.sweeper.params`). ([], []) when
    root is not a multirun."""
    path = root / "multirun.yaml"
    if not path.exists():
        return [], []
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    params = (hydra.get("sweeper") or {}).get("params") or {}
    # The command line wins over the sweep config's params for the same key (Hydra's rule).
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += list(hydra.get("overrides", {}).get("task", []) or [])
    # A group's glob(*) as the sweep saw it: over every config folder it searched.
    sources = (hydra.get("runtime") or {}).get("config_sources") or []
    folders = [s["path"] for s in sources if s.get("schema") == "file"]
    values = parse_overrides(lines, folders + list(hydra.get("searchpath") or []))
    swept = [k for k, v in values.items() if len(v) > 1]
    grid = [
        dict(zip(swept, combo, strict=True))
        for combo in itertools.product(*(values[k] for k in swept))
    ]
    return swept, grid


def _failure(job_dir: Path) -> str:
    """The error a failed job wrote (error.txt), else the last error-like line of its log."""
    if (job_dir / "error.txt").exists():
        # Its first line is the reason; the full trace follows it.
        text = (job_dir / "error.txt").read_text(errors="replace").strip()
        return " ".join(text.splitlines()[0].split())[-300:] if text else "error.txt is empty"
    log = job_dir / "run.log"
    if log.exists():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if "Error" in ln]
        if lines:
            return lines[-1].strip()[-200:]
    return "no summary.json (the job failed or has not finished)"


def find_jobs(root: Path) -> tuple[list[str], list[Job]]:
    """The swept keys and the jobs under root: finished, failed and (for a multirun) missing.

    A job directory is one with a top-level summary.json (it has `categories`) or a
    `.hydra/overrides.yaml`; a category's own summary.json inside a job is not a job.
    """
    root = Path(root)
    dirs = {p.parent for p in root.rglob("summary.json")}
    dirs |= {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    jobs = []
    for job_dir in sorted(dirs):
        path = job_dir / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else None
        if summary is not None and "categories" not in summary:
            continue  # a category's summary inside a job
        error = job_dir / "error.txt"
        if summary is not None and error.exists() and error.stat().st_mtime >= path.stat().st_mtime:
            summary = None  # a later attempt failed: the old summary is not this job's result
        job = Job(job_overrides(job_dir), job_dir, summary)
        if summary is None:
            job.error = _failure(job_dir)
        jobs.append(job)
    swept, grid = expected_grid(root)
    for combo in grid:
        if not any(all(j.overrides.get(k) == v for k, v in combo.items()) for j in jobs):
            jobs.append(Job(dict(combo), error="never ran: no job directory"))
    if not grid:  # separate runs or several multiruns under root: tell them apart by the
        # overrides that differ among them and what their summaries say, else by folder
        # (`sweep` only names a sweep config; what it sets shows in the other keys)
        keys = [
            "method",
            "mode",
            *sorted({k for j in jobs for k in j.overrides} - {"method", "mode", "sweep"}),
        ]
        swept = [k for k in keys if len({_value(j, k) for j in jobs}) > 1]
        if len({tuple(_value(j, k) for k in swept) for j in jobs}) < len(jobs):
            swept.append("run")
    return swept, jobs


def _value(job: Job, key: str) -> str:
    if key == "run":
        return job.dir.name if job.dir is not None else "?"
    if key in job.overrides:
        return job.overrides[key]
    if job.summary is not None and key in job.summary:
        return str(job.summary[key])
    return "?"


def group_settings(swept: list[str], jobs: list[Job]) -> list[Setting]:
    """Settings in sweep order: the swept keys but the repeat keys (seed) define a setting."""
    keys = [k for k in swept if k not in REPEAT_KEYS]
    settings: dict[tuple, Setting] = {}
    for job in jobs:
        values = {k: _value(job, k) for k in keys}
        key = tuple(values.values())
        settings.setdefault(key, Setting("", values)).jobs.append(job)
    for setting in settings.values():  # labelled from a finished job where there is one
        named = setting.finished or setting.jobs
        setting.label = _label(setting.values, named[0])
    return list(settings.values())


def _label(values: dict[str, str], job: Job) -> str:
    """'kng online', then the other swept keys: 'kng online num_nodes=196', 'kng online [0]';
    a swept `variant` (conf/variant/) stands for the mode: 'padim online_fair'."""
    summary = job.summary or {}
    arm = "variant" if values.get("variant", "?") != "?" else "mode"
    parts = [values.get(k) or str(summary.get(k, "?")) for k in ("method", arm)]
    parts += other_options(values)
    if "run" in values:  # always the last swept key
        parts.append(f"[{values['run']}]")
    return " ".join(parts)


def short_key(key: str) -> str:
    """A swept key as labels show it: its config group's name dropped."""
    return key.split(".", 1)[1] if "." in key else key


def other_options(values: dict[str, str]) -> list[str]:
    """The swept options of a setting beside its method, mode/variant and folder, as
    'key=value' (without the `method.` or `protocol.` part: 'num_nodes=196',
    'covariance.shrinkage=0.5'); an option this setting's jobs did not set ('?') is left
    out."""
    return [
        f"{short_key(k)}={v}"
        for k, v in values.items()
        if k not in ("method", "mode", "variant", "run") and v != "?"
    ]
