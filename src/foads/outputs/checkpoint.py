"""Checkpoints of a method's learned state and its place in the stream."""

from __future__ import annotations

from pathlib import Path

import torch

FORMAT = 1


def save_checkpoint(path: Path, method: str, state: dict, stream: dict) -> None:
    """Write the method state and stream position (not the frozen backbone)."""
    torch.save({"format": FORMAT, "method": method, "state": state, "stream": stream}, path)


def load_checkpoint(path: str | Path, method: str) -> dict:
    """Read a checkpoint, checking that it belongs to `method`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such checkpoint file")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a foads checkpoint (format {FORMAT})")
    if ckpt["method"] != method:
        raise ValueError(f"{path} holds a {ckpt['method']!r} model, not {method!r}")
    return ckpt
