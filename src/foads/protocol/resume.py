"""Runs that survive: checkpoints during the stream, interruption by signal, exact resume.

- `StreamCheckpoint` (a Lightning callback after the evaluator) writes checkpoint.pt every
  `protocol.checkpoint_every` sessions, when the run is interrupted, and before a batch that
  `max_stream_images` cuts short. It only ever saves at a batch boundary of the whole stream
  (a multiple of `batch_size` from position 0), so a resumed run sees the same batches, and
  so the same model, as an uninterrupted one.
- `StopSignals` turns SIGTERM (SLURM preemption, `docker stop`) and SIGINT (Ctrl-C) during the
  stream into a stop at the end of the batch in progress; a second signal stops at once.
- `run_settings` lists every setting that changes a run's result; a checkpoint resumes only a
  run with the same ones (`check_same_settings`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from foads.outputs.checkpoint import save_checkpoint

log = logging.getLogger(__name__)

# Settings that do not change what a run computes: where things are, how fast, how far; and
# the decision calibration, whose threshold travels in the checkpoint (not made again).
_NOT_RESULT = {
    "protocol.max_stream_images",
    "protocol.num_workers",
    "protocol.checkpoint_every",
    "protocol.decision_folds",
    "protocol.decision_quantile",
}
_PATH_WORDS = ("root", "dir", "path", "url", "cache")


class StreamInterrupted(Exception):
    """The run stopped on a signal; what was kept is in the message."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        return 128 + int(getattr(signal, self.signal_name, signal.SIGTERM))


class StopSignals:
    """While active, SIGTERM and SIGINT ask the stream to stop after its current batch.

    Outside the stream (reading data, the few-shot fit) there is nothing to keep yet, and a
    signal stops at once; so does a second signal while the first is pending.
    """

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self) -> None:
        self.requested: str | None = None
        self.in_stream = False
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        for name in self.SIGNALS:
            # ValueError: not the main thread (e.g. a launcher's worker): no handler.
            with contextlib.suppress(ValueError):
                self._previous[name] = signal.signal(getattr(signal, name), self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for name, handler in self._previous.items():
            signal.signal(getattr(signal, name), handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.in_stream and self.requested is None:
            self.requested = name
            log.warning("%s received: stopping after the batch in progress", name)
            return
        raise StreamInterrupted(name, f"interrupted by {name}")


class StreamCheckpoint(L.Callback):
    """Saves the run's checkpoint at safe points of the stream (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        content: Callable[[int], dict],
        evaluator,
        batch_size: int,
        start: int,
        end: int,
        length: int,
        every: int | None,
        stop: StopSignals | None = None,
        enabled: bool = True,
    ) -> None:
        self.path = Path(path)
        self.content = content  # position -> the checkpoint's content at that position
        self.evaluator = evaluator
        self.batch_size = batch_size
        self.start, self.end, self.length = start, end, length
        self.every = every
        self.stop = stop
        self.enabled = enabled
        self.saved_at: int | None = None
        self._sessions_at_save = len(evaluator.sessions)

    def aligned(self, position: int) -> bool:
        return position % self.batch_size == 0 or position == self.length

    def save(self, position: int) -> None:
        if not self.enabled or not self.aligned(position):
            return
        save_checkpoint(self.path, self.content(position))
        self.saved_at = position
        self._sessions_at_save = len(self.evaluator.sessions)

    def on_test_start(self, trainer, pl_module) -> None:
        if self.stop is not None:
            self.stop.in_stream = True

    def on_test_end(self, trainer, pl_module) -> None:
        if self.stop is not None:
            self.stop.in_stream = False

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        first = self.start + batch_idx * self.batch_size
        if first + self.batch_size > self.end and self.end < self.length:
            # max_stream_images cuts this batch short: keep the state before it, so that a
            # resumed run scores the whole batch as the uninterrupted run does.
            self.save(first)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        position = self.evaluator.next_position
        closed = len(self.evaluator.sessions) - self._sessions_at_save
        if self.every and closed >= self.every and position < self.end:
            self.save(position)
        if self.stop is not None and self.stop.requested and position < self.end:
            # (a signal during the last batch lets the run finish: its work is all done)
            self.stop.in_stream = False
            self.save(position)
            kept = self.saved_at
            raise StreamInterrupted(
                self.stop.requested,
                f"interrupted by {self.stop.requested} at stream position {position} of "
                f"{self.length}; "
                + (
                    f"checkpoint {self.path} continues from position {kept}"
                    if kept is not None
                    else "no checkpoint was written (save_checkpoint=false)"
                ),
            )


def run_settings(cfg: DictConfig, category: str, stream_length: int) -> dict:
    """Every setting that changes what a run computes, flattened ("method.num_nodes": 32)."""
    conf = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(conf, dict)  # a DictConfig's container
    chosen = {
        "mode": conf.get("mode"),
        "method": conf.get("method"),
        "protocol": conf.get("protocol"),
        "dataset": {k: v for k, v in (conf.get("dataset") or {}).items() if k != "category"},
        "backbone": conf.get("backbone"),
    }
    flat = {"category": category, "stream_length": stream_length}
    _flatten(chosen, "", flat)
    return {
        k: v
        for k, v in flat.items()
        if k not in _NOT_RESULT and not any(w in k.rsplit(".", 1)[-1] for w in _PATH_WORDS)
    }


def check_same_settings(path: Path, saved: dict, now: dict) -> None:
    """Refuse a checkpoint made with other settings, naming each one with both values."""
    missing = _Unset()
    diff = [
        f"{k}={saved.get(k, missing)!r} in the checkpoint, {now.get(k, missing)!r} now"
        for k in sorted(set(saved) | set(now))
        if saved.get(k, missing) != now.get(k, missing)
    ]
    if diff:
        raise ValueError(
            f"ckpt_path={path} was made with other settings; resuming would mix two runs: "
            + "; ".join(diff)
        )


class _Unset:
    def __repr__(self) -> str:
        return "unset"


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}{k}.", out)
    else:
        out[prefix[:-1]] = value
