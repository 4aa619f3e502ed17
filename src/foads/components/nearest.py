"""Exact nearest-neighbour search by Euclidean distance, chunked to bound memory."""

from __future__ import annotations

import torch

# Distance-matrix entries computed at once. On the CPU a block that stays in cache (2 MiB
# of float32) makes the top-k pass cheap: 3065 nodes x 31360 queries took 0.26 s against
# 0.47 s with 256 MiB blocks (2 cores; docs/results.md, "Speed"); a GPU wants few
# large launches.
# A block has at least _MIN_ROWS queries, whatever the bank's size (SPADE's galleries grow
# to 10^5 rows and more: a block of a few queries then costs a pass over the bank each).
_MAX_ENTRIES = {"cpu": 1 << 19}
_MAX_ENTRIES_OTHER = 64 << 20
_MIN_ROWS = 256


def knn(queries: torch.Tensor, bank: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and Euclidean distances of the k nearest bank rows for every query row.

    Returns (N, k) long indices and (N, k) distances, nearest first. Works on any device;
    the distance is computed in the queries' dtype.
    """
    if bank.shape[0] < k:
        raise ValueError(f"k={k} nearest neighbours requested from a bank of {bank.shape[0]} rows")
    bank = bank.to(queries.dtype)
    bank_sq = bank.square().sum(1)
    entries = _MAX_ENTRIES.get(queries.device.type, _MAX_ENTRIES_OTHER)
    chunk = max(_MIN_ROWS, entries // max(1, bank.shape[0]))
    idx_out = torch.empty(queries.shape[0], k, dtype=torch.long, device=queries.device)
    dist_out = torch.empty(queries.shape[0], k, dtype=queries.dtype, device=queries.device)
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        sq = torch.addmm(bank_sq[None, :], q, bank.T, alpha=-2.0)
        sq += q.square().sum(1, keepdim=True)
        d2, idx = torch.topk(sq, k, dim=1, largest=False)
        idx_out[start : start + chunk] = idx
        dist_out[start : start + chunk] = d2.clamp_min(0).sqrt()
    return idx_out, dist_out
