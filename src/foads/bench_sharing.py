"""`python -m foads.bench_sharing`: two runs sharing the cores against the same run alone.

Issue 15 asks that two runs started at once on the machine's cores each stay within 1.3x of
the time of running them one after the other: a run sharing the cores may take up to
1.3 x 2 = 2.6x its per-image time alone. Each run is an online K-NG stream at the paper's
sizes on the bench's images (foads.bench.bench_method) in a process of its own, at its
defaults: the parent's environment without OMP_NUM_THREADS or MKL_NUM_THREADS, so that each
takes every core as two shells would. Per trial: run A alone, then B alone, then A and B at
once; the same run twice, so that the two streams overlap from start to end. Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from foads.bench import bench_method
from foads.threads import apply_threads, resolve_threads

# What a worker must not inherit: a thread cap its parent was given (a shell has none).
THREAD_CAPS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# How OpenMP's idle threads wait (GNU OpenMP, torch's): --wait names what the workers get.
# foads: what importing foads sets where the environment sets nothing (foads/__init__.py);
# openmp: GNU OpenMP's own default (spin 300000 rounds, then sleep); passive: sleep at once;
# active: spin; env: this environment as it is (after foads's own default).
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
WAIT_POLICIES: dict[str, dict[str, str] | None] = {
    "foads": {},
    "openmp": {"GOMP_SPINCOUNT": "300000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "env": None,
}
# The ratio that issue 15 accepts: a run sharing the cores / (2 x the same run alone).
TARGET = 1.3

# (count, batches) -> what `count` workers started at once printed, and the wall time until
# the last one ended.
Runner = Callable[[int, int], tuple[list[dict], float]]


def worker_env(wait_policy: str, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of a worker: `base` without thread caps, with the wait policy that
    `wait_policy` (a key of WAIT_POLICIES) names."""
    env = {k: v for k, v in base.items() if k not in THREAD_CAPS}
    policy = WAIT_POLICIES[wait_policy]
    if policy is not None:
        env = {k: v for k, v in env.items() if k not in WAIT_VARIABLES} | policy
    return env


def wait_policy() -> str:
    """This process's OpenMP wait settings, as the environment gives them."""
    found = [f"{k}={os.environ[k]}" for k in WAIT_VARIABLES if k in os.environ]
    return " ".join(found) or "OpenMP default"


def start_workers(
    count: int, batches: int, env: Mapping[str, str] | None = None, overrides: Sequence[str] = ()
) -> tuple[list[dict], float]:
    """Start `count` workers at once (`python -m foads.bench_sharing --worker`), wait for all
    of them; returns the dict each printed and the wall time until the last one ended."""
    command = [sys.executable, "-m", "foads.bench_sharing", "--worker", f"--batches={batches}"]
    command += [f"--override={o}" for o in overrides]
    with tempfile.TemporaryDirectory() as tmp:
        # Files, not pipes: a worker never waits for the parent to read what it wrote.
        outs = [Path(tmp) / f"{i}.out" for i in range(count)]
        errs = [Path(tmp) / f"{i}.err" for i in range(count)]
        start = time.perf_counter()
        procs = []
        for out, err in zip(outs, errs, strict=True):
            with out.open("w") as stdout, err.open("w") as stderr:
                procs.append(subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr))
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        results = []
        for code, out, err in zip(codes, outs, errs, strict=True):
            if code != 0:
                tail = err.read_text().strip().splitlines()[-5:]
                raise RuntimeError(
                    f"{' '.join(command)} exited with status {code}: " + " | ".join(tail)
                )
            results.append(json.loads(out.read_text().strip().splitlines()[-1]))
    return results, wall


def worker(batches: int, overrides: Sequence[str]) -> dict:
    """One run: online K-NG on `batches` batches of 10 with the threads of a run at its
    defaults (trainer.threads: null); its figures, threads and wait policy."""
    apply_threads(resolve_threads(None))
    result = bench_method("kng", "cpu", batches, overrides=tuple(overrides))
    return {
        **result,
        "threads": torch.get_num_threads(),
        "wait_policy": wait_policy(),
    }


def side_by_side(trials: int = 2, batches: int = 4, runner: Runner = start_workers) -> list[dict]:
    """Per trial, run A alone, B alone, then A and B at once (`runner(count, batches)`
    starts them); a row of `trial_summary` each."""
    rows = []
    for trial in range(1, trials + 1):
        (a,), wall_a = runner(1, batches)
        (b,), wall_b = runner(1, batches)
        together, wall_pair = runner(2, batches)
        rows.append(
            {"trial": trial, **trial_summary([a, b], [wall_a, wall_b], together, wall_pair)}
        )
    return rows


def trial_summary(
    alone: Sequence[dict], alone_walls: Sequence[float], together: Sequence[dict], pair_wall: float
) -> dict:
    """Runs A and B alone (one after the other) against A and B at once: per-image online
    seconds, each shared run against twice the lone mean (issue 15's ratio), each against
    its own lone run (the plain slowdown), and the pair's wall time against the lone runs'."""
    alone_s = [r["online_s_per_image"] for r in alone]
    together_s = [r["online_s_per_image"] for r in together]
    alone_mean = statistics.mean(alone_s)
    return {
        "alone_s": alone_s,
        "together_s": together_s,
        "ratio": [t / (2 * alone_mean) for t in together_s],
        "slowdown": [t / a for t, a in zip(together_s, alone_s, strict=True)],
        "alone_wall_s": list(alone_walls),
        "pair_wall_s": pair_wall,
        "wall_ratio": pair_wall / sum(alone_walls),
        "threads": sorted({r["threads"] for r in [*alone, *together]}),
        "wait_policy": sorted({r["wait_policy"] for r in [*alone, *together]}),
    }


def pooled_ratio(rows: Sequence[dict]) -> float:
    """Every trial's shared runs' mean per-image seconds / (2 x every lone run's mean)."""
    together = statistics.mean(s for r in rows for s in r["together_s"])
    alone = statistics.mean(s for r in rows for s in r["alone_s"])
    return together / (2 * alone)


def print_table(rows: Sequence[dict]) -> None:
    """The trials and the pooled ratio, figures only."""

    def pair(values: Sequence[float], digits: int = 3) -> str:
        return ", ".join(f"{v:.{digits}f}" for v in values)

    print(
        f"  {'trial':>5s}  {'alone s/img A, B':>18s}  {'together s/img A, B':>20s}  "
        f"{'together / (2 x alone)':>22s}  {'together / alone':>16s}  "
        f"{'wall: pair / (A + B)':>26s}"
    )
    for r in rows:
        walls = f"{r['pair_wall_s']:.1f} / {sum(r['alone_wall_s']):.1f} s = {r['wall_ratio']:.2f}"
        print(
            f"  {r['trial']:>5d}  {pair(r['alone_s']):>18s}  {pair(r['together_s']):>20s}  "
            f"{pair(r['ratio'], 2):>22s}  {pair(r['slowdown'], 2):>16s}  {walls:>26s}"
        )
    print(
        f"  all trials: a run sharing the cores takes {pooled_ratio(rows):.2f} x the time of "
        f"running both one after the other (issue 15: <= {TARGET})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="stream batches of 10 per run")
    parser.add_argument(
        "--wait",
        choices=list(WAIT_POLICIES),
        default="foads",
        help="how the runs' idle OpenMP threads wait: foads (foads's default, a short spin), "
        "openmp (GNU OpenMP's default, a long spin), passive (sleep), active (spin), env "
        "(this environment's)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="K-NG at other sizes, e.g. method.num_nodes=150 for a quick check (repeatable)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("trials", "batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.worker:
        print(json.dumps(worker(args.batches, args.override)), flush=True)
        return
    env = worker_env(args.wait)

    def runner(count: int, batches: int) -> tuple[list[dict], float]:
        return start_workers(count, batches, env, args.override)

    print(
        f"Two online K-NG runs at once against each alone, {args.trials} trial(s), "
        f"{args.batches} batches of 10 per run"
        + (f", {' '.join(args.override)}" if args.override else ", paper sizes")
        + f"; --wait {args.wait}; no thread cap given to the runs",
        flush=True,
    )
    rows = side_by_side(args.trials, args.batches, runner)
    print(
        f"  each run: {', '.join(map(str, rows[0]['threads']))} torch thread(s), "
        f"{', '.join(rows[0]['wait_policy'])} (as the runs report them)"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
