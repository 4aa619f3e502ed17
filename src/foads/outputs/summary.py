"""summary.json: the numbers of one run, averaged over categories, written as JSON."""

from __future__ import annotations

import math

import numpy as np


def mean_summary(summaries: list[dict]) -> dict:
    if not summaries:
        return {}
    keys = [
        k
        for k, v in summaries[0].items()
        if isinstance(v, (int, float)) and k not in ("category", "resumed_at")
    ]
    out = {}
    for key in keys:
        values = np.array([s.get(key, math.nan) for s in summaries], dtype=float)
        finite = values[~np.isnan(values)]
        out[key] = float(finite.mean()) if finite.size else math.nan
    for key in [k for k, v in summaries[0].items() if isinstance(v, bool)]:
        out[key] = any(s.get(key, False) for s in summaries)
    for key in ("num_images", "skipped_images", "num_anomalous", "num_skipped_shots"):
        if key in out:
            out[key] = int(sum(s.get(key, 0) for s in summaries))
    return out


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return jsonable(value.item())
    return value


def pct(value) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"
