"""Checkpoints: a method's learned state, the evaluator's record and the place in the stream.

A checkpoint is data, not code: it is read with `torch.load(weights_only=True)`, which
rebuilds tensors, numbers, strings, lists, tuples and dicts and refuses anything else, so a
crafted file cannot run code when it is loaded. It is written to a temporary file and then
renamed over the old one, so a run killed while writing leaves the previous checkpoint whole.
The content travels with its SHA-256, so a truncated or bit-flipped file is refused when it
is read instead of failing (or worse, not failing) somewhere in the stream.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch

# 2: the evaluator's record, the run's settings and the final summary travel with the state.
FORMAT = 2
KEYS = ("format", "method", "state", "evaluator", "stream", "settings")


def save_checkpoint(path: Path, content: dict) -> None:
    """Write `content` (see `KEYS`) atomically: temporary file, flush, rename."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(_plain({"format": FORMAT, **content}), buffer)
    payload = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        envelope = {"foads_checkpoint": FORMAT, "sha256": _digest(payload), "payload": payload}
        torch.save(envelope, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict:
    """The content of a checkpoint file, checked whole (any method).

    Every failure is a ValueError or FileNotFoundError that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"ckpt_path={path}: the file is empty, not a foads checkpoint")
    envelope = _load(path, path)
    if not isinstance(envelope, dict) or "foads_checkpoint" not in envelope:
        raise ValueError(f"ckpt_path={path}: not a foads checkpoint")
    payload = envelope.get("payload")
    if not isinstance(payload, bytes) or envelope.get("sha256") != _digest(payload):
        raise ValueError(
            f"ckpt_path={path}: the checkpoint is corrupted (its content does not match the "
            "SHA-256 written with it)"
        )
    ckpt = _load(io.BytesIO(payload), path)
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise ValueError(f"ckpt_path={path}: not a foads checkpoint")
    return ckpt


def load_checkpoint(path: str | Path, method: str) -> dict:
    """Read a checkpoint, checking that it is whole, of this format and of `method`."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if ckpt["format"] != FORMAT:
        raise ValueError(
            f"ckpt_path={path}: checkpoint format {ckpt['format']!r}, this foads reads "
            f"format {FORMAT} only (rerun the stream to make a new one)"
        )
    missing = [k for k in KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"ckpt_path={path}: incomplete checkpoint, missing {missing}")
    if ckpt["method"] != method:
        raise ValueError(f"ckpt_path={path} holds a {ckpt['method']!r} model, not {method!r}")
    return ckpt


def _load(source, path: Path):
    """torch.load with weights_only=True: plain data only, never code."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupted, or more than plain data
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        raise ValueError(
            f"ckpt_path={path}: cannot be read as a foads checkpoint (truncated, corrupted, "
            f"or holding more than tensors and plain values): {first}"
        ) from None


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _plain(value):
    """numpy arrays and scalars as tensors and Python numbers (what weights_only reads)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value
