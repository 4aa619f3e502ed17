"""The README's speed table, written from one `make bench` run (`--readme README.md`).

The table sits between two marker lines in the README; `write_readme` replaces what is
between them and leaves the rest of the file as it is. It says when, on what machine and with
what threads the figures were measured, so that the README never shows figures without their
provenance.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import torch

BEGIN = "<!-- speed table: written by `python -m foads.bench --readme README.md` -->"
END = "<!-- end of speed table -->"


def machine() -> str:
    """A line naming this machine: CPU model, the CPUs this process may use, torch, CUDA."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{model}, {cpus} CPUs, {gpu}, torch {torch.__version__}"


def speed_table(
    kng: dict,
    methods: Sequence[dict] = (),
    sharing: float | None = None,
    date: datetime.date | None = None,
    where: str | None = None,
) -> str:
    """Markdown for the README: K-NG's stages (`foads.bench.bench`'s dict), every method end
    to end (`compare_methods`' rows) and the side-by-side ratio (`bench_sharing.pooled_ratio`)."""
    b = kng["backbone_s_per_image"]
    off = kng["offline_kng_s_per_image"] + b
    lines = [
        f"Measured by `make bench` on {date or datetime.date.today()}: {where or machine()}; "
        f"{kng['threads']} torch threads, K-NG at the paper's sizes ({kng['nodes']} nodes, "
        f"d = 100, 56 x 56 patches, batch 10), EfficientNet-Lite0 included.",
        "",
        "| K-NG | s/image | images/s | x offline |",
        "|---|---:|---:|---:|",
        f"| offline: score | {off:.3f} | {1 / off:.1f} | 1.00 |",
    ]
    for rule, label in (("median", "median rule"), ("none", "every patch accepted")):
        t = kng[f"online_{rule}_kng_s_per_image"] + b
        share = 100 * kng[f"online_{rule}_accepted"]
        lines.append(
            f"| online: score + learn, {label} ({share:.0f}% of patches) | {t:.3f} | "
            f"{1 / t:.1f} | {t / off:.2f} |"
        )
    lines.append("")
    lines.append(
        f"Fit on 10 shots {kng['fit_s']:.1f} s; model state {kng['state_mib']:.0f} MiB "
        f"({kng['checkpoint_mib']:.0f} MiB saved); "
        f"peak RSS {kng['peak_rss_mib']:.0f} MiB."
        + (
            f" Two runs started at once on these cores: each takes {sharing:.2f} x the time "
            f"of running both one after the other."
            if sharing is not None
            else ""
        )
    )
    if methods:
        lines += [
            "",
            "| method (its defaults) | fit s | offline s/image | online s/image | state MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['method']} | {r['fit_s']:.1f} | {r['offline_s_per_image']:.3f} | "
            f"{r['online_s_per_image']:.3f} | {r['state_mib_end']:.0f} |"
            for r in methods
        ]
    return "\n".join(lines)


def readme_parts(path: Path | str) -> tuple[str, str]:
    """The README at `path` before its speed table's first marker and after its last; a
    ValueError naming the file when the markers are not there once each, in order."""
    path = Path(path)
    text = path.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(
            f"{path}: expected the lines {BEGIN!r} and, after it, {END!r} once each, "
            f"around the speed table"
        )
    head, rest = text.split(BEGIN)
    return head, rest.split(END)[1]


def write_readme(path: Path | str, table: str) -> None:
    """Replace what lies between the speed table's markers in the README at `path`."""
    head, tail = readme_parts(path)
    Path(path).write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
