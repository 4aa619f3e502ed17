"""One folder, one run: a run refuses a folder holding another run's results."""

from __future__ import annotations

import shutil
from pathlib import Path

from omegaconf import DictConfig


class OutputDirTaken(FileExistsError):
    """The output folder holds another run."""


# What a run writes into its folder; a folder holding any of them holds a run.
RESULT_FILES = (
    "summary.json",
    "sessions.csv",
    "images.csv",
    "checkpoint.pt",
    "error.txt",
    "table.md",
    "sessions.png",
    "overlays.png",
    "maps.npz",
)


def claim_output_dir(out_dir: Path, cfg: DictConfig) -> None:
    """One folder, one run: refuse a folder that holds another run's results, unless this run
    resumes it (ckpt_path inside it) or `overwrite=true` (then they are deleted first)."""
    if not out_dir.is_dir():
        if out_dir.exists():
            raise NotADirectoryError(f"paths.output_dir={out_dir} is a file, not a folder")
        return
    held = [out_dir / f for f in RESULT_FILES if (out_dir / f).exists()]
    held += [
        d
        for d in sorted(out_dir.iterdir())
        if d.is_dir() and any((d / f).exists() for f in RESULT_FILES)
    ]
    if not held:
        return
    ckpt = cfg.get("ckpt_path")
    if ckpt and Path(ckpt).resolve().is_relative_to(out_dir.resolve()):
        # Resuming the run that lives here: its stale error.txt goes, the rest is rewritten.
        (out_dir / "error.txt").unlink(missing_ok=True)
        return
    if cfg.get("overwrite", False):
        for path in held:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    names = ", ".join(p.name for p in held[:6]) + (" ..." if len(held) > 6 else "")
    raise OutputDirTaken(
        f"paths.output_dir={out_dir} holds the results of another run ({names}); choose "
        f"another folder, resume that run with ckpt_path={out_dir}, or pass overwrite=true "
        "to replace it"
    )
