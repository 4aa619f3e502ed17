"""The decision threshold fixed from the shots alone, the same way for every method.

An inspection line runs at a threshold, and on the first day all it has is the shots. Each
shot is scored as a stream image would be, by the method fitted without it: the shots are
split into `folds` folds (in order), a fresh method is fitted on the other folds and scores
the held-out one. The threshold is the largest held-out score (`quantile` 1.0), the level
above which no good image of the first day scored. The evaluator then reports, per session
and for the stream, how many good images a line would reject (FPR) and how many defective
ones it would catch (recall) at this threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from foads.data.sample import Sample
from foads.protocol.method import StreamingMethod


def held_out_shot_scores(
    make_method: Callable[[], StreamingMethod],
    make_trainer: Callable,
    loader: Callable[[Sequence[Sample]], object],
    shots: Sequence[Sample],
    folds: int,
) -> np.ndarray:
    """(K,) image score of each of the K shots by a method fitted on the other folds."""
    shots = list(shots)
    folds = min(int(folds), len(shots))
    if folds < 2:
        raise ValueError(
            f"protocol.decision_folds needs at least 2 folds of shots, got {folds} "
            f"({len(shots)} shots); set it to null to report no shot-threshold decisions"
        )
    fold_of = np.arange(len(shots)) % folds
    scores = np.full(len(shots), np.nan)
    for f in range(folds):
        held = np.flatnonzero(fold_of == f)
        rest = [s for s, g in zip(shots, fold_of, strict=True) if g != f]
        method = make_method()
        trainer = make_trainer()
        trainer.fit(method, train_dataloaders=loader(rest))
        batches = trainer.predict(method, dataloaders=loader([shots[i] for i in held]))
        scores[held] = np.concatenate([b.detach().float().cpu().numpy() for b in batches])
    return scores


def shots_threshold(scores: np.ndarray, quantile: float = 1.0) -> float:
    """The decision threshold: the `quantile` of the held-out shot scores (1.0: the max)."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"protocol.decision_quantile must lie in (0, 1], got {quantile}")
    return float(np.quantile(scores, quantile))
