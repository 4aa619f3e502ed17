"""The protocol's settings checked before anything runs: each wrong type or range is named
with its key, its value and what was expected (not a TypeError deep in the stream)."""

from __future__ import annotations

import numbers

from omegaconf import DictConfig

from foads.components.anomaly_map import check_map_smoothing
from foads.protocol.evaluator import MODES, ORACLE_IMAGES

# key: (kind, lowest, highest, may be null); kind "int" or "number"; None: no such limit.
PROTOCOL = {
    "shots": ("int", 1, None, False),
    "batch_size": ("int", 1, None, False),
    "session_size": ("int", 1, None, False),
    "split_seed": ("int", None, None, False),
    "stream_seed": ("int", None, None, False),
    "resize": ("int", 1, None, False),
    "crop": ("int", 1, None, False),
    "num_workers": ("int", 0, None, False),
    "max_stream_images": ("int", 0, None, True),  # 0: the fit alone (and its checkpoint)
    "checkpoint_every": ("int", 1, None, True),
    "anomaly_rate": ("number", 0.0, 1.0, True),
    "oracle_window": ("int", 1, None, False),
    "decision_folds": ("int", 2, None, True),
    "decision_quantile": ("number", 0.0, 1.0, False),
}
DRIFT = {
    "strength": ("number", 0.0, None, False),
    "change_at": ("number", 0.0, 1.0, False),
    "period": ("int", 1, None, False),
}


def check_settings(cfg: DictConfig) -> None:
    """Raise ValueError naming the first setting of the protocol that is of the wrong type or
    out of range."""
    if cfg.get("mode") not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.get('mode')!r}")
    for key in ("save_checkpoint", "overwrite"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise ValueError(f"{key} must be true or false, got {cfg[key]!r}")
    protocol = cfg.protocol
    for key, rule in PROTOCOL.items():
        if key in protocol:
            _check(f"protocol.{key}", protocol[key], *rule)
    if protocol.crop > protocol.resize:
        raise ValueError(
            f"protocol.crop={protocol.crop} must not exceed protocol.resize={protocol.resize}"
        )
    oracle = protocol.get("oracle_images", "all")
    if oracle not in ORACLE_IMAGES:
        raise ValueError(f"protocol.oracle_images must be one of {ORACLE_IMAGES}, got {oracle!r}")
    if "map_smoothing" in protocol:
        check_map_smoothing(protocol.map_smoothing)
    drift = protocol.get("drift") or {}
    for key, rule in DRIFT.items():
        if key in drift:
            _check(f"protocol.drift.{key}", drift[key], *rule)


def _check(name: str, value, kind: str, low, high, nullable: bool) -> None:
    if value is None:
        if nullable:
            return
        raise ValueError(f"{name} must be set, got null")
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    is_number = is_int or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    if (kind == "int" and not is_int) or (kind == "number" and not is_number):
        expected = ("an integer" if kind == "int" else "a number") + (" or null" * nullable)
        raise ValueError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "" if low is None else f">= {low}"
        hi = "" if high is None else f"<= {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
