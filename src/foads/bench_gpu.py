"""`python -m foads.bench_gpu` (`make bench-gpu`): every method offline and online on CUDA,
in batches of 10 and of 100; prints figures.

Each method at the paper's sizes (its config's defaults, and DRAEM at experiment=draem_paper's
published sizes: its defaults are a CPU budget) on the bench's images, EfficientNet-Lite0
included (foads.bench.bench_method): the fit on 10 shots, offline and online images/s (the
same fit scores the stream, then scores and learns from it), and the peak GPU memory of that
method and batch size; then the total wall time against a 5-minute budget. Without CUDA it
stops with exit status 2 unless `--device cpu`; `--small` runs the same jobs at test sizes.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence

import torch

from foads.bench import METHODS, bench_method, chosen_methods

BATCH_SIZES = (10, 100)
# Stream images per job: 20 batches of 10, 2 of 100 (the first batch of each size is not
# the only one timed).
STREAM_IMAGES = 200
# The paper's sizes where a method config's defaults are not them.
PAPER = {"draem": ("experiment=draem_paper",)}
# --small: the same jobs in seconds on a CPU (the test's sizes).
SMALL_BATCH_SIZES = (2, 4)
SMALL_STREAM_IMAGES = 4
SMALL = {
    "kng": ("method.num_nodes=150", "method.epochs=3"),
    "padim": ("method.feature_size=28",),
    "patchcore": ("method.coreset_ratio=0.01",),
    "spade": ("method.feature_size=28",),
    "draem": ("method.train_steps=2", "method.image_size=64"),
}
BUDGET_S = 300.0

NO_CUDA = (
    "bench-gpu needs CUDA: torch.cuda.is_available() is False on this machine (torch {torch}, "
    "built for CUDA {cuda}); run it where a GPU is, or pass --device cpu (with --small for "
    "test sizes) to run the same jobs on the CPU\n"
)


def job(name: str, device: str, batch_size: int, batches: int, overrides: Sequence[str]) -> dict:
    """One method at one batch size (foads.bench.bench_method), with its own peak GPU memory;
    a failure is a row with its error, so that the other jobs still run."""
    if device == "cuda":  # what the jobs before left allocated is not this one's peak
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    row: dict = {"method": name, "batch_size": batch_size, "images": batches * batch_size}
    start = time.perf_counter()
    try:
        result = bench_method(name, device, batches, batch_size, tuple(overrides))
    except Exception as err:  # a GPU session is short: keep the other methods' figures
        traceback.print_exc()
        return {**row, "error": f"{type(err).__name__}: {err}"}
    return {
        **row,
        "fit_s": result["fit_s"],
        "offline_images_per_s": 1 / result["offline_s_per_image"],
        "online_images_per_s": 1 / result["online_s_per_image"],
        "peak_gpu_mib": result.get("peak_cuda_mib"),
        "wall_s": time.perf_counter() - start,
    }


def jobs(
    device: str,
    methods: Sequence[str],
    batch_sizes: Sequence[int],
    images: int,
    overrides: Mapping[str, Sequence[str]],
) -> Iterator[dict]:
    """Every method at the first batch size, then every method at the next: a row each, as
    it ends (a bench cut short still printed every finished row)."""
    for batch_size in batch_sizes:
        for name in methods:
            yield job(name, device, batch_size, images // batch_size, overrides.get(name, ()))


def format_row(row: dict) -> str:
    """One job as a line of the table."""
    head = f"  {row['method']:10s} {row['batch_size']:>5d}"
    if "error" in row:
        return f"{head}  failed: {row['error']}"
    peak = f"{row['peak_gpu_mib']:.0f}" if row["peak_gpu_mib"] is not None else "-"
    return (
        f"{head} {row['fit_s']:7.1f} {row['offline_images_per_s']:16.1f} "
        f"{row['online_images_per_s']:15.1f} {peak:>13s} {row['wall_s']:7.1f}"
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run and print the jobs; returns their rows. Exit status 2 without CUDA (unless
    --device cpu), 1 when a job failed."""
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"test sizes: batches of {SMALL_BATCH_SIZES}, {SMALL_STREAM_IMAGES} stream images, "
        "small models",
    )
    parser.add_argument(
        "--methods", help=f"comma-separated subset of {','.join(METHODS)} (default: all)"
    )
    args = parser.parse_args(argv)
    methods = chosen_methods(parser, args.methods)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, NO_CUDA.format(torch=torch.__version__, cuda=torch.version.cuda))
    batch_sizes = SMALL_BATCH_SIZES if args.small else BATCH_SIZES
    images = SMALL_STREAM_IMAGES if args.small else STREAM_IMAGES
    overrides = SMALL if args.small else PAPER
    if args.device == "cuda":
        where = (
            f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
        )
        torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")  # CUDA's start-up
        torch.cuda.synchronize()
    else:
        where = f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"Every method on {where}, {'test' if args.small else 'paper'} sizes, "
        f"{images} stream images per job, EfficientNet-Lite0 included",
        flush=True,
    )
    for name in methods:
        if overrides.get(name):
            print(f"  {name}: {' '.join(overrides[name])}")
    print(
        f"  {'method':10s} {'batch':>5s} {'fit s':>7s} {'offline images/s':>16s} "
        f"{'online images/s':>15s} {'peak GPU MiB':>13s} {'wall s':>7s}",
        flush=True,
    )
    rows = []
    for row in jobs(args.device, methods, batch_sizes, images, overrides):
        print(format_row(row), flush=True)
        rows.append(row)
    total = time.perf_counter() - start
    print(f"total wall time {total:.0f} s (budget {BUDGET_S:.0f} s)", flush=True)
    if total > BUDGET_S:
        print(
            f"bench-gpu: {total:.0f} s, over its {BUDGET_S:.0f} s budget: the jobs' wall "
            "times above say which took it",
            file=sys.stderr,
            flush=True,
        )
    failed = [f"{r['method']} batch {r['batch_size']}" for r in rows if "error" in r]
    if failed:
        parser.exit(1, f"bench-gpu: {len(failed)} job(s) failed: {', '.join(failed)}\n")
    return rows


if __name__ == "__main__":
    main()
