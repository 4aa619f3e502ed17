"""Entry point: `python -m foads.run method=kng dataset=mvtec ...` (and `foads run`), a Hydra
app over the pipeline (foads.pipeline): each job runs `run`, writes error.txt when it fails,
and says in one line what went wrong."""

from __future__ import annotations

import math
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from foads.components.options import renamed_message, renamed_overrides
from foads.outputs.run_folder import OutputDirTaken
from foads.pipeline import OpenInputs, in_multirun, method_class, run, stream_drift
from foads.protocol.resume import StreamInterrupted
from foads.registry import CONF_DIR

# `run`, `method_class` and `stream_drift` are the pipeline's; imported from here as well.
__all__ = ["OutputDirTaken", "main", "main_job", "method_class", "run", "run_job", "stream_drift"]


def run_job(cfg: DictConfig, open_inputs: OpenInputs | None = None) -> float:
    """One Hydra job: `run`, with the reason and the full trace written to error.txt if it
    fails (a sweep's report lists failed jobs with it; Hydra only prints it)."""
    out_dir = Path(cfg.paths.output_dir)
    try:
        summary = run(cfg, open_inputs)
    except Exception as err:
        if not isinstance(err, OutputDirTaken):  # never write into another run's folder
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "error.txt").write_text(
                f"{error_line(err, out_dir)}\n\n{traceback.format_exc()}"
            )
        raise
    return summary.get("image_auroc", math.nan)


def error_line(err: BaseException, out_dir: Path) -> str:
    """The one line that says what went wrong (and, when interrupted, how to go on)."""
    if isinstance(err, StreamInterrupted):
        return f"{err}; resume with the same command and ckpt_path={out_dir}"
    return " ".join(f"{type(err).__name__}: {err}".split())  # one line, however it was written


def main_job(cfg: DictConfig, open_inputs: OpenInputs | None = None) -> float:
    """`run_job` for the command line: a failure prints its one line (and where the full
    trace is) instead of a traceback, and exits non-zero (128 + the signal when
    interrupted, else 1)."""
    try:
        return run_job(cfg, open_inputs)
    except Exception as err:
        if in_multirun() and not isinstance(err, StreamInterrupted):
            raise  # the sweep records the failed job and goes on (its error.txt is written)
        out_dir = Path(cfg.paths.output_dir)
        trace = (
            "" if isinstance(err, OutputDirTaken) else f" (full trace in {out_dir / 'error.txt'})"
        )
        print(f"foads: {error_line(err, out_dir)}{trace}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code if isinstance(err, StreamInterrupted) else 1)


def refuse_renamed_overrides(argv: list[str]) -> None:
    """Flat method options of older commands (`method.covariance_shrinkage=0.5`): name their
    new keys and exit, before Hydra says only that the key is not in the config."""
    old = renamed_overrides(argv)
    if old:
        print(f"foads: {renamed_message(old)}", file=sys.stderr, flush=True)
        sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    return main_job(cfg)


def main() -> None:
    """`python -m foads.run <overrides>` (and `foads run`)."""
    refuse_renamed_overrides(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
