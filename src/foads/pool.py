"""`python -m foads.pool <dir> [<dir> ...]`: acceptance rules measured on a pool of streams.

Reads every finished job under the directories (runs or replays, any sweep layout), and
groups them by rule, stream (dataset and category) and seed. A rule is the method with its
`method.*` overrides; its offline model and its oracle are the jobs of the same method
without the acceptance options (they never use them), so that rules that differ only in
what they learn share one offline and one oracle job per stream and seed.

For each online rule it writes a table per stream and seed (offline, online and oracle image
AUROC per session / stream-level / last half, PRO, the accepted and absorbed-anomalous patch
fractions, the share of the oracle's per-session gain, and PaDiM's offline model where a
`method=padim mode=offline` job of that stream and seed is found), then the pooled
criterion (docs/acceptance.md): the mean share of the oracle's per-session gain over every
stream and seed where the oracle gains at least `--min-gain` points, subject to no stream
and seed ending more than `--tolerance` points below its offline model in stream-level image
AUROC. It never re-runs a model.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foads.components.options import RENAMED
from foads.outputs.jobs import job_overrides
from foads.outputs.tables import to_markdown

# Method options that only change what the online update learns: offline and oracle jobs
# ignore them, so a rule's offline and oracle twins are found without them. Keys as given
# (`acceptance.threshold_type`, `growth.scale`) or as older runs named them (flat).
LEARNING_GROUPS = ("acceptance", "growth")
FLAT_LEARNING_KEYS = (
    *(k for k, new in RENAMED.items() if new.split(".")[0] in LEARNING_GROUPS),
    "recurrence",
    "recurrence_patches",
)


def _learning_option(key: str) -> bool:
    return key.split(".")[0] in LEARNING_GROUPS or key in FLAT_LEARNING_KEYS


MODES = ("offline", "online", "oracle")
TRIPLE = ("image_auroc", "stream_image_auroc", "last_half_image_auroc")


@dataclass
class Record:
    """One category of one finished job."""

    rule: str
    base: str
    stream: str
    seed: int
    mode: str
    summary: dict


def _labels(overrides: dict[str, str]) -> tuple[str, str]:
    """(rule, base): the method and its options; the base leaves out the acceptance options."""
    method = overrides.get("method", "kng")
    options = sorted(
        (k.removeprefix("method."), v) for k, v in overrides.items() if k.startswith("method.")
    )
    rule = " ".join([method] + [f"{k}={v}" for k, v in options])
    base = " ".join([method] + [f"{k}={v}" for k, v in options if not _learning_option(k)])
    return rule, base


def find_records(roots: list[Path]) -> list[Record]:
    records = []
    for root in roots:
        for path in sorted(Path(root).rglob("summary.json")):
            summary = json.loads(path.read_text())
            if "categories" not in summary:
                continue  # a category's own summary inside a job
            overrides = job_overrides(path.parent)
            rule, base = _labels(overrides)
            seed = int(overrides.get("seed", 0))
            for category, cat in summary["categories"].items():
                if "error" in cat:
                    continue
                stream = f"{summary.get('dataset', '?')}/{category}"
                records.append(Record(rule, base, stream, seed, summary["mode"], cat))
    return records


def _pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _num(summary: dict | None, key: str) -> float | None:
    if summary is None:
        return None
    v = summary.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _triple(summary: dict | None) -> str:
    return " / ".join(_pct(_num(summary, k)) for k in TRIPLE) if summary else "-"


@dataclass
class Row:
    """One stream and seed of one rule, with its twins."""

    stream: str
    seed: int
    online: dict
    offline: dict | None
    oracle: dict | None
    padim: dict | None

    def delta(self, key: str, other: dict | None) -> float | None:
        a, b = _num(self.online, key), _num(other, key)
        return None if a is None or b is None else a - b

    @property
    def oracle_gain(self) -> float | None:
        a, b = _num(self.oracle, "image_auroc"), _num(self.offline, "image_auroc")
        return None if a is None or b is None else a - b

    def share(self, min_gain: float) -> float | None:
        gain = self.oracle_gain
        if gain is None or gain < min_gain:
            return None
        delta = self.delta("image_auroc", self.offline)  # None without the online figure
        return None if delta is None else delta / gain


def rule_rows(records: list[Record], rule: str) -> list[Row]:
    index = {(r.rule, r.stream, r.seed, r.mode): r.summary for r in records}
    base_index = {(r.base, r.stream, r.seed, r.mode): r.summary for r in records}
    base = next(r.base for r in records if r.rule == rule)
    rows = []
    for r in sorted(
        (r for r in records if r.rule == rule and r.mode == "online"),
        key=lambda r: (r.stream, r.seed),
    ):
        rows.append(
            Row(
                r.stream,
                r.seed,
                r.summary,
                base_index.get((base, r.stream, r.seed, "offline")),
                base_index.get((base, r.stream, r.seed, "oracle")),
                index.get(("padim", r.stream, r.seed, "offline")),
            )
        )
    return rows


def table(rows: list[Row], min_gain: float) -> list[list[str]]:
    out = [
        [
            "stream",
            "seed",
            "offline",
            "online",
            "oracle",
            "PRO off / on / oracle",
            "accepted / absorbed",
            "share",
            "PaDiM offline",
        ]
    ]
    for row in rows:
        share = row.share(min_gain)
        pro = " / ".join(_pct(_num(s, "pro")) for s in (row.offline, row.online, row.oracle))
        fractions = " / ".join(
            _pct(_num(row.online, k)) for k in ("accepted_fraction", "absorbed_anomalous_fraction")
        )
        out.append(
            [
                row.stream,
                str(row.seed),
                _triple(row.offline),
                _triple(row.online),
                _triple(row.oracle),
                pro,
                fractions,
                "-" if share is None else f"{share:.0%}",
                _triple(row.padim),
            ]
        )
    return out


def stream_means(rows: list[Row]) -> list[list[str]]:
    """Per stream, the mean over seeds of the per-session image AUROC of the offline model,
    online, the oracle and PaDiM offline (the last column: online minus PaDiM offline)."""
    out = [["stream", "seeds", "offline", "online", "oracle", "PaDiM offline", "online - PaDiM"]]
    streams = sorted({r.stream for r in rows})
    for stream in streams:
        mine = [r for r in rows if r.stream == stream]
        cols = []
        for pick in (
            lambda r: r.offline,
            lambda r: r.online,
            lambda r: r.oracle,
            lambda r: r.padim,
        ):
            values = [_num(pick(r), "image_auroc") for r in mine]
            found = [v for v in values if v is not None]
            cols.append(float(np.mean(found)) if len(found) == len(mine) else None)
        online, padim = cols[1], cols[3]
        diff = None if online is None or padim is None else online - padim
        out.append(
            [
                stream,
                str(len(mine)),
                *(_pct(c) for c in cols),
                "-" if diff is None else f"{100 * diff:+.1f}",
            ]
        )
    return out


def pooled(rows: list[Row], min_gain: float, tolerance: float) -> dict:
    """The pooled criterion and what stands beside it, over the rows of one rule."""
    shares = [s for s in (r.share(min_gain) for r in rows) if s is not None]
    candidates = [
        (r.delta("stream_image_auroc", r.offline), r) for r in rows if r.offline is not None
    ]
    stream_deltas = [(d, r) for d, r in candidates if d is not None]
    worst: tuple[float | None, Row | None] = min(
        stream_deltas, key=lambda x: x[0], default=(None, None)
    )
    below = [f"{r.stream} s{r.seed}" for d, r in stream_deltas if d < -tolerance]
    by_stream: dict[str, list[float]] = defaultdict(list)
    padim: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        d = r.delta("image_auroc", r.padim)
        if d is not None:
            padim[r.stream].append(d)
        d = r.delta("image_auroc", r.offline)
        if d is not None:
            by_stream[r.stream].append(d)
    return {
        "stream_seeds": len(rows),
        "share_mean": float(np.mean(shares)) if shares else None,
        "share_count": len(shares),
        "gain_mean": float(np.mean([d for v in by_stream.values() for d in v]))
        if by_stream
        else None,
        "worst_stream_delta": worst[0],
        "worst_stream": None if worst[1] is None else f"{worst[1].stream} s{worst[1].seed}",
        "below_offline": below,
        "admissible": not below and len(stream_deltas) == len(rows),
        "above_padim": sum(np.mean(v) > 0 for v in padim.values()),
        "padim_streams": len(padim),
    }


def pooled_rows(records: list[Record], min_gain: float, tolerance: float) -> list[list[str]]:
    out = [
        [
            "rule",
            "stream-seeds",
            "mean share of oracle gain",
            "mean online - offline",
            "worst stream-level online - offline",
            f"below offline by > {100 * tolerance:.1f}",
            "streams above PaDiM offline",
        ]
    ]
    rules = sorted({r.rule for r in records if r.mode == "online"})
    for rule in rules:
        p = pooled(rule_rows(records, rule), min_gain, tolerance)
        share = "-" if p["share_mean"] is None else f"{p['share_mean']:.0%} ({p['share_count']})"
        worst = (
            "-"
            if p["worst_stream_delta"] is None
            else f"{100 * p['worst_stream_delta']:+.1f} ({p['worst_stream']})"
        )
        gain = "-" if p["gain_mean"] is None else f"{100 * p['gain_mean']:+.2f}"
        out.append(
            [
                rule,
                str(p["stream_seeds"]),
                share,
                gain,
                worst,
                ", ".join(p["below_offline"]) or "none",
                f"{p['above_padim']} of {p['padim_streams']}",
            ]
        )
    return out


def report(
    roots: list[Path],
    out_dir: Path | None = None,
    min_gain: float = 0.005,
    tolerance: float = 0.005,
) -> str:
    records = find_records(roots)
    if not records:
        raise SystemExit(f"no finished job under {', '.join(map(str, roots))}")
    text = [
        to_markdown(
            pooled_rows(records, min_gain, tolerance),
            f"Pooled over streams and seeds (share: mean over the stream-seeds where the oracle "
            f"gains >= {100 * min_gain:.1f} points per session, their count in brackets)",
        )
    ]
    for rule in sorted({r.rule for r in records if r.mode == "online"}):
        rows = rule_rows(records, rule)
        text.append(
            to_markdown(
                table(rows, min_gain),
                f"{rule}: image AUROC per session / stream / last half, in %",
            )
        )
        text.append(
            to_markdown(stream_means(rows), f"{rule}: per-session image AUROC, mean over seeds")
        )
    out = "\n".join(text)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "pool.md").write_text(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", type=Path, nargs="+", help="run or multirun directories")
    parser.add_argument("--out", type=Path, help="write pool.md here")
    parser.add_argument(
        "--min-gain",
        type=float,
        default=0.5,
        help="points of per-session oracle gain below which a share is not counted (0.5)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="points a rule may end below offline at stream level (0.5)",
    )
    args = parser.parse_args(argv)
    print(report(args.roots, args.out, args.min_gain / 100, args.tolerance / 100))


if __name__ == "__main__":
    main()
