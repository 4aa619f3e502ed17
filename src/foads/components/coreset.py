"""Greedy (farthest-point, minimax facility location) coreset subsampling, as PatchCore's."""

from __future__ import annotations

import math

import torch

from foads.components.nearest import knn


def greedy_coreset(
    x: torch.Tensor,
    ratio: float,
    existing: torch.Tensor | None = None,
    seed: int = 0,
    count: int | None = None,
) -> torch.Tensor:
    """Indices of ceil(ratio * N) rows of x (or exactly `count`) chosen one by one, each the
    farthest from all chosen so far (and from the `existing` bank, when continuing a coreset
    online).

    The loop runs over the chosen points, as the greedy algorithm must; each step is one
    vectorised distance update over all rows.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset_ratio must lie in (0, 1], got {ratio}")
    n = x.shape[0]
    count = min(n, math.ceil(ratio * n) if count is None else int(count))
    if count == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    chosen = torch.empty(count, dtype=torch.long, device=x.device)
    if existing is not None and existing.shape[0] > 0:
        min_dist = knn(x, existing, k=1)[1][:, 0]
        first = 0
    else:
        gen = torch.Generator().manual_seed(seed)
        chosen[0] = int(torch.randint(n, (1,), generator=gen))
        min_dist = (x - x[chosen[0]]).norm(dim=1)
        first = 1
    for i in range(first, count):
        chosen[i] = torch.argmax(min_dist)
        min_dist = torch.minimum(min_dist, (x - x[chosen[i]]).norm(dim=1))
    return chosen
