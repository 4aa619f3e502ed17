"""Greedy (farthest-point, minimax facility location) coreset subsampling, as PatchCore's."""

from __future__ import annotations

import math

import torch

from foads.components.nearest import knn


def sparse_random_projection(
    in_dim: int, out_dim: int, seed: int = 0, device=None, dtype=torch.float32
) -> torch.Tensor:
    """(in_dim, out_dim) very sparse random projection (Li, Hastie and Church 2006; what
    scikit-learn's SparseRandomProjection draws with density 1 / sqrt(in_dim)): entries
    +-sqrt(s / out_dim) with probability 1 / (2 s) each and 0 otherwise, s = sqrt(in_dim), so
    that squared distances are preserved in expectation. Drawn from `seed` alone."""
    if out_dim < 1:
        raise ValueError(f"method.coreset_projection must be at least 1 (or null), got {out_dim}")
    gen = torch.Generator().manual_seed(int(seed))
    density = 1.0 / math.sqrt(in_dim)
    nonzero = torch.rand(in_dim, out_dim, generator=gen) < density
    sign = torch.randint(0, 2, (in_dim, out_dim), generator=gen) * 2 - 1
    matrix = nonzero * sign * math.sqrt(1.0 / density) / math.sqrt(out_dim)
    return matrix.to(device=device, dtype=dtype)


def greedy_coreset(
    x: torch.Tensor,
    ratio: float,
    existing: torch.Tensor | None = None,
    seed: int = 0,
    count: int | None = None,
    projection: int | None = None,
) -> torch.Tensor:
    """Indices of ceil(ratio * N) rows of x (or exactly `count`) chosen one by one, each the
    farthest from all chosen so far (and from the `existing` bank, when continuing a coreset
    online).

    `projection` p: the distances of the selection are taken after a sparse random
    projection to p dimensions (seeded by `seed`, the same for x and `existing`), as
    PatchCore's approximate greedy coreset does to be fast on wide features; rows of at most
    p dimensions are not projected (that would add distortion and cost, nothing else).
    None: exact distances.

    The loop runs over the chosen points, as the greedy algorithm must; each step is one
    vectorised distance update over all rows.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset_ratio must lie in (0, 1], got {ratio}")
    if projection is not None and int(projection) < 1:
        raise ValueError(
            f"method.coreset_projection must be at least 1 (or null), got {projection}"
        )
    n = x.shape[0]
    count = min(n, math.ceil(ratio * n) if count is None else int(count))
    if count == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    if projection is not None and int(projection) < x.shape[1]:
        matrix = sparse_random_projection(x.shape[1], int(projection), seed, x.device, x.dtype)
        x = x @ matrix
        if existing is not None:
            existing = existing.to(x.dtype) @ matrix
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
