"""Tables of finished jobs in the paper's layouts (Tables 3-8), mean and spread over seeds.

Every number is read from the jobs' summary.json files; a setting repeated over seeds shows
`mean ± standard deviation` (population, over the finished seeds). A cell with no finished
job says why: `missing` (never ran, or the category is absent) or `failed`.
"""

from __future__ import annotations

import math
import statistics

from foads.metrics import SESSION_METRICS, columns
from foads.outputs.jobs import REPEAT_KEYS, Job, Setting, other_options, short_key

SESSION_COLUMNS = columns(*SESSION_METRICS)


def _number(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return None if math.isnan(v) else v


def job_value(job: Job, key: str, category: str | None = None) -> float | None:
    """A finished job's value of `key`: its mean over categories, or one category's."""
    if job.summary is None:
        return None
    if category is None:
        part = job.summary.get("mean", job.summary)
    else:
        part = job.summary.get("categories", {}).get(category)
        if part is None or "error" in part:
            return None
    return _number(part.get(key))


def values(setting: Setting, key: str, category: str | None = None) -> list[float]:
    out = [job_value(j, key, category) for j in setting.finished]
    return [v for v in out if v is not None]


def cell(setting: Setting, key: str, category: str | None = None, scale: float = 100) -> str:
    """'77.1', '77.1 ± 0.4' over seeds, or why there is no number."""
    vals = values(setting, key, category)
    if vals:
        mean = statistics.fmean(vals) * scale
        if len(vals) == 1:
            return f"{mean:.1f}"
        return f"{mean:.1f} ± {statistics.pstdev(vals) * scale:.1f}"
    if not setting.finished:
        return "missing" if all(j.status == "missing" for j in setting.jobs) else "failed"
    if category is not None:
        parts = [summary.get("categories", {}).get(category) for summary in setting.summaries]
        if any(p is not None and "error" in p for p in parts):
            return "failed"
        if all(p is None for p in parts):
            return "missing"
    return "-"


def mean_of(setting: Setting, key: str) -> float | None:
    vals = values(setting, key)
    return statistics.fmean(vals) if vals else None


def categories(settings: list[Setting]) -> list[str]:
    return sorted({c for s in settings for summary in s.summaries for c in summary["categories"]})


def comparison_rows(settings: list[Setting]) -> list[list[str]]:
    """Table 8 layout: a row per category and the Average, Image / Pixel / PRO per setting,
    and the number of finished jobs of each setting."""
    rows = [["Category"] + [f"{s.label} {name}" for s in settings for name, _ in SESSION_COLUMNS]]
    for cat in categories(settings):
        rows.append([cat] + [cell(s, k, cat) for s in settings for _, k in SESSION_COLUMNS])
    rows.append(["Average"] + [cell(s, k) for s in settings for _, k in SESSION_COLUMNS])
    rows.append(
        ["Jobs finished"]
        + [part for s in settings for part in (f"{len(s.finished)}/{len(s.jobs)}", "", "")]
    )
    return rows


def ablation_rows(settings: list[Setting], key: str) -> list[list[str]]:
    """Tables 3-5 layout: a column per value of the swept key, rows Image / Pixel / PRO
    (averages over categories); Table 6 layout (a row per value) for the number of shots."""
    labels = [s.values.get(key, s.label) for s in settings]
    if key == "protocol.shots":
        rows = [["Size", "Image-level", "Pixel-level", "PRO"]]
        for label, s in zip(labels, settings, strict=True):
            rows.append([f"{label}-shot"] + [cell(s, k) for _, k in SESSION_COLUMNS])
        return rows
    rows = [[short_key(key), *labels]]
    for name, k in SESSION_COLUMNS:
        rows.append([name] + [cell(s, k) for s in settings])
    return rows


# How a job ran its stream: `variant` (conf/variant/) when swept, else its mode.
OFFLINE = "offline"
ONLINE_ARMS = ("online", "online_paper", "online_fair", "online_fair_median")


def _arm(setting: Setting) -> str:
    return (
        (setting.values.get("variant") if setting.values.get("variant") != "?" else None)
        or setting.values.get("mode")
        or setting.summaries[0].get("mode", "?")
    )


def _by_method_mode(settings: list[Setting]) -> dict[tuple[str, str], Setting]:
    """{(row, arm): setting}. A row is a method config (kng, kng_paper, else the summary's
    method) with any other swept option it ran with ('padim covariance_shrinkage=0.5'), so
    that settings of one method and arm that differ otherwise are never merged."""
    out: dict[tuple[str, str], Setting] = {}
    for s in settings:
        summaries = s.summaries
        if not summaries:
            continue
        method = s.values.get("method") or summaries[0].get("method", "?")
        out.setdefault((" ".join([method, *other_options(s.values)]), _arm(s)), s)
    return out


def _diff(on: Setting, off: Setting, key: str) -> float | None:
    a, b = mean_of(on, key), mean_of(off, key)
    return None if a is None or b is None else a - b


def online_gain(settings: list[Setting]) -> list[str]:
    """Online minus offline per method and online variant (means over seeds), where both
    finished."""
    by = _by_method_mode(settings)
    lines = []
    for method in sorted({m for m, _ in by}):
        off = by.get((method, OFFLINE))
        for arm in ONLINE_ARMS:
            on = by.get((method, arm))
            if not (on and off):
                continue
            parts = []
            for name, k in SESSION_COLUMNS + columns("stream_image_auroc"):
                d = _diff(on, off, k)
                if d is not None:
                    parts.append(f"{name} {100 * d:+.1f}")
            lines.append(f"{method}: {arm} - offline: " + ", ".join(parts))
    return lines


# The comparison under both gates (sweep=comparison): per online variant, what each method
# scored, what it learned from, and what that bought over its own offline model.
GATE_COLUMNS = columns(
    "image_auroc",
    "stream_image_auroc",
    "pro",
    "accepted_fraction",
    "absorbed_anomalous_fraction",
)


def gate_rows(settings: list[Setting]) -> list[list[str]]:
    """A row per method: offline Image / stream Image / PRO, then for each online variant
    run its Image, stream Image, PRO, accepted and absorbed-anomalous fractions and the
    online - offline gain in stream-level image AUROC (points)."""
    by = _by_method_mode(settings)
    arms = [a for a in ONLINE_ARMS if any(arm == a for _, arm in by)]
    header = ["Method"] + [f"offline {name}" for name, _ in GATE_COLUMNS[:3]]
    for arm in arms:
        header += [f"{arm} {name}" for name, _ in GATE_COLUMNS] + [f"{arm} gain (stream Image)"]
    rows = [header]
    for method in sorted({m for m, arm in by if arm in (OFFLINE, *arms)}):
        off = by.get((method, OFFLINE))
        row = [method] + [cell(off, k) if off else "missing" for _, k in GATE_COLUMNS[:3]]
        for arm in arms:
            on = by.get((method, arm))
            row += [cell(on, k) if on else "missing" for _, k in GATE_COLUMNS]
            gain = _diff(on, off, "stream_image_auroc") if on and off else None
            row.append("-" if gain is None else f"{100 * gain:+.1f}")
        rows.append(row)
    return rows


def table7_rows(settings: list[Setting]) -> list[list[str]]:
    """Paper Table 7 layout, as measured: initial parameters (M), whether the state grew
    during the online stream (and by how much), and online - offline (Image, PRO) in points."""
    rows = [["Method", "Initial Parameters(M)", "Extra Memory", "Improvement (Image, PRO)"]]
    by = _by_method_mode(settings)
    for method in sorted({m for m, _ in by}):
        # the paper's Table 7 is about the published online rule
        on = by.get((method, "online_paper")) or by.get((method, "online"))
        off = by.get((method, OFFLINE))
        if not (on and off):
            continue
        params = mean_of(off, "initial_parameters")
        grew = any(bool(summary.get("mean", {}).get("state_grew")) for summary in on.summaries)
        growth = (mean_of(on, "model_state_bytes") or 0) - (
            mean_of(on, "model_state_bytes_start") or 0
        )
        gain = [
            100 * ((mean_of(on, k) or 0) - (mean_of(off, k) or 0)) for k in ("image_auroc", "pro")
        ]
        rows.append(
            [
                method,
                "-" if params is None else f"{params / 1e6:.1f}",
                f"yes (+{growth / 2**20:.2f} MiB)" if grew else "no",
                f"({gain[0]:+.1f}, {gain[1]:+.1f})",
            ]
        )
    return rows


def failure_lines(settings: list[Setting]) -> list[str]:
    """One line per job without a summary: its status, directory, overrides and error."""
    lines = []
    for s in settings:
        for j in s.unfinished:
            where = str(j.dir) if j.dir is not None else "-"
            overrides = " ".join(f"{k}={v}" for k, v in j.overrides.items())
            lines.append(f"{j.status}: {s.label} ({overrides}) in {where}: {j.error}")
    return lines


def swept_parameter(swept: list[str]) -> str | None:
    """The one swept key of an ablation (seeds aside), else None."""
    keys = [k for k in swept if k not in REPEAT_KEYS and k != "run"]
    return keys[0] if len(keys) == 1 and keys[0] not in ("method", "mode") else None


# The stream's payoff (issue 5): what each setting learned and what it cost.
PAYOFF = columns(
    "image_auroc",
    "stream_image_auroc",
    "last_half_image_auroc",
    "pro",
    "last_half_pro",
    "accepted_fraction",
    "absorbed_anomalous_fraction",
    "fpr_at_shots",
    "recall_at_shots",
    "last_half_fpr_at_shots",
)


def payoff_rows(settings: list[Setting]) -> list[list[str]]:
    """A row per setting: per-session, stream-level and last-half figures, and the accepted
    and absorbed-anomalous patch fractions of its updates (averages over categories)."""
    rows = [["Setting", *(name for name, _ in PAYOFF)]]
    for s in settings:
        rows.append([s.label] + [cell(s, k) for _, k in PAYOFF])
    return rows


def oracle_share(settings: list[Setting]) -> list[str]:
    """For each online setting with an offline and an oracle twin (the same values but the
    mode): the share of the oracle's image AUROC gain over offline that it captures."""
    by_values = {tuple(sorted(s.values.items())): s for s in settings if s.finished}
    lines = []
    for s in settings:
        if s.values.get("mode") != "online" or not s.finished:
            continue
        twin = {
            m: by_values.get(tuple(sorted({**s.values, "mode": m}.items())))
            for m in ("offline", "oracle")
        }
        offline, oracle = twin["offline"], twin["oracle"]
        if offline is None or oracle is None:
            continue
        for name, key in (("Image", "image_auroc"), ("stream Image", "stream_image_auroc")):
            on, off, orc = (mean_of(x, key) for x in (s, offline, oracle))
            if on is None or off is None or orc is None:
                continue
            gain = orc - off
            share = (
                f"{(on - off) / gain:.0%} of the oracle's gain"
                if gain > 0
                else "the oracle gains nothing here"
            )
            lines.append(
                f"{s.label}: {name} online - offline {100 * (on - off):+.1f}, oracle - offline "
                f"{100 * gain:+.1f}: {share}"
            )
    return lines
