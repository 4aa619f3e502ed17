"""`python -m foads.bench_memory`: a run's memory over a long stream; prints figures.

Runs the real `foads.run.run` (method, evaluator, checkpoints every 10 sessions, images.csv)
online over a stream of `--images` small synthetic images (64 px; the test images of one
category repeated in a shuffled order, so that the stream is long without generating
thousands of files) and prints the process's resident memory (RSS) at 1k, 5k and 10k
images and its growth after the first 1k. Target (issue 12): under 100 MB of growth after
the first 1k images, for K-NG and for SPADE and PatchCore with their bounds set.

    python -m foads.bench_memory                        # K-NG, SPADE and PatchCore, 10k images
    python -m foads.bench_memory --methods kng --images 2000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from foads.bench import proc_status_mib
from foads.data.synthetic import Synthetic
from foads.protocol.inputs import FileInputs
from foads.registry import CONF_DIR
from foads.run import run

CHECKPOINTS = (1000, 5000, 10000)
# The bounds that keep the baselines' memory flat (their defaults have none, as the paper).
BOUNDS = {"spade": ["method.max_gallery=200"], "patchcore": ["method.max_bank=20000"]}


class LongSynthetic(Synthetic):
    """The synthetic category's test images repeated, in a seeded shuffle, `repeat` times."""

    def __init__(self, repeat: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.repeat = repeat

    def _read(self, category):
        data = super()._read(category)
        rng = random.Random(0)
        test = []
        for _ in range(self.repeat):
            copies = [replace(s) for s in data.test]
            rng.shuffle(copies)
            test += copies
        data.test = test
        return data


def rss_mib() -> float:
    """This process's resident memory now (MiB)."""
    rss = proc_status_mib("VmRSS")
    return float("nan") if rss is None else rss


class MeteredInputs(FileInputs):
    """File inputs whose stream loader records RSS as it reaches each position of `at`."""

    def __init__(self, transform, backbone, at, figures) -> None:
        super().__init__(transform, backbone)
        self.at, self.figures = at, figures

    def loader(self, samples, batch_size, skip_unreadable=False, offset=0, **kwargs):
        loader = super().loader(samples, batch_size, skip_unreadable, offset, **kwargs)
        if not skip_unreadable:  # the shots' loader (the stream's skips unreadable images)
            return loader
        return _Metered(loader, self.at, self.figures)


class _Metered:
    def __init__(self, loader, at, figures) -> None:
        self.loader, self.at, self.figures = loader, at, figures

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        t0 = time.perf_counter()
        for batch in self.loader:
            # RSS before the batch whose first position is the mark: that many images done.
            first = int(batch["index"][0]) if len(batch["index"]) else -1
            if first in self.at:
                self.figures[first] = (rss_mib(), time.perf_counter() - t0)
            yield batch


def measure(method: str, images: int, data_dir: Path, out_dir: Path) -> dict:
    per_copy = 40  # test images of the category (20 good, 20 defective)
    repeat = -(-(images + 20) // per_copy)
    figures: dict[int, tuple[float, float]] = {}
    marks = {m for m in (*CHECKPOINTS, 1) if m <= images} | {images}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"method={method}",
                "backbone=efficientnet_lite0",
                "dataset.category=brick",
                f"+dataset.repeat={repeat}",
                "dataset._target_=foads.bench_memory.LongSynthetic",
                "dataset.image_size=64",
                "dataset.num_train=20",
                "dataset.num_test_good=20",
                "dataset.num_test_defect=20",
                f"paths.data_dir={data_dir}",
                f"paths.output_dir={out_dir / method}",
                "protocol.resize=64",
                "protocol.crop=64",
                f"protocol.max_stream_images={images}",
                "protocol.decision_folds=null",
                "logger=none",
                "trainer.enable_progress_bar=false",
                *(["method.num_nodes=100", "method.epochs=2"] if method == "kng" else []),
                *BOUNDS.get(method, []),
            ],
        )
    GlobalHydra.instance().clear()

    def open_inputs(category, data, transform, backbone):
        return MeteredInputs(transform, backbone, marks, figures)

    summary = run(cfg, open_inputs)
    figures[images] = figures.get(images, (rss_mib(), float("nan")))
    return {"figures": figures, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["kng", "spade", "patchcore"])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=None, help="run folders (default: temp)")
    args = parser.parse_args(argv)
    if len(args.methods) > 1:
        # One process per method: each starts from a fresh interpreter's memory.
        lines: list[list[str]] = []
        for method in args.methods:
            command = [sys.executable, "-m", "foads.bench_memory", "--methods", method]
            command += ["--images", str(args.images)]
            command += ["--out", str(args.out)] if args.out else []
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            lines.append(done.stdout.strip().splitlines())
            print(lines[-1][0], flush=True)
        print("\n" + lines[0][2] + "\n" + lines[0][3])
        for output in lines:  # each process's table row
            print(output[-1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "runs"
        rows = []
        for method in args.methods:
            with contextlib.redirect_stdout(io.StringIO()):  # the run's own table
                result = measure(method, args.images, Path(tmp) / "data", out)
            f = result["figures"]
            marks = sorted(m for m in f if m >= 1000) or sorted(f)
            first = f[marks[0]][0]
            line = {m: f[m][0] for m in marks}
            growth = max(line.values()) - first
            s = result["summary"]
            rows.append((method, line, growth, s))
            print(
                f"{method}: "
                + ", ".join(f"RSS at {m} images {v:.0f} MiB" for m, v in line.items())
                + f"; growth after {marks[0]}: {growth:+.0f} MiB; "
                f"{s['num_images']} images, stream image AUROC {s['stream_image_auroc']:.3f}, "
                f"model state {s['model_state_bytes'] / 2**20:.1f} MiB",
                flush=True,
            )
        print("\n| method | " + " | ".join(f"RSS at {m}" for m in rows[0][1]) + " | growth |")
        print("|---|" + "---:|" * (len(rows[0][1]) + 1))
        for method, line, growth, _ in rows:
            cells = " | ".join(f"{v:.0f} MiB" for v in line.values())
            print(f"| {method} | {cells} | {growth:+.0f} MiB |")


if __name__ == "__main__":
    main()
