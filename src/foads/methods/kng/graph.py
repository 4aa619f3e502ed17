"""The neural-gas topology of K-NG: edges with ages, the edge walk, node thresholds.

Edges are an undirected list `(E, 2)` with `a < b` and an age per edge. The walk over a
sequence of (winner s1, runner-up s2) pairs has a sequential definition (docs/kng.md):
for each pair, create or refresh edge (s1, s2) to age 0, then age by one every *other* edge
incident to s1 (`winner` ageing, as in Growing Neural Gas) or every other edge of the graph
(`global` ageing, the paper's text). Here the final ages are derived without a loop: an
edge's age is what it had (or 0 at its last refresh) plus the number of ageing events after
that, counted with sorted win times.
"""

from __future__ import annotations

import torch

EDGE_AGING = ("winner", "global")
THRESHOLD_TYPES = ("median", "mean", "max", "min", "none")


def empty_edges(device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty edge list and its ages."""
    return (
        torch.empty(0, 2, dtype=torch.long, device=device),
        torch.empty(0, dtype=torch.long, device=device),
    )


def _wins_after(
    winners: torch.Tensor, num_nodes: int, nodes: torch.Tensor, times: torch.Tensor
) -> torch.Tensor:
    """For each (node, time) query: how many steps after `time` the node was the winner."""
    steps = winners.shape[0]
    keys = winners * steps + torch.arange(steps, device=winners.device)
    keys, _ = torch.sort(keys)
    query = nodes * steps + times
    at_or_before = torch.searchsorted(keys, query, right=True)
    upto_node_end = torch.searchsorted(keys, (nodes + 1) * steps, right=False)
    return upto_node_end - at_or_before


def walk_edges(
    s1: torch.Tensor,
    s2: torch.Tensor,
    num_nodes: int,
    edges: torch.Tensor,
    ages: torch.Tensor,
    aging: str = "winner",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges and ages after walking the (s1, s2) pairs in order, from the given graph.

    Pruning is left to `prune_edges`: ages only grow until a refresh, so dropping edges
    older than age_max at the end equals dropping them at every step.
    """
    if aging not in EDGE_AGING:
        raise ValueError(f"edge_aging must be one of {EDGE_AGING}, got {aging!r}")
    steps = s1.shape[0]
    if steps == 0:
        return edges, ages
    device = s1.device
    a = torch.minimum(s1, s2)
    b = torch.maximum(s1, s2)
    pair_key = a * num_nodes + b
    walk_keys, inverse = torch.unique(pair_key, return_inverse=True)
    times = torch.arange(steps, device=device)
    last = torch.full_like(walk_keys, -1).scatter_reduce(0, inverse, times, reduce="amax")
    wa, wb = walk_keys // num_nodes, walk_keys % num_nodes

    old_keys = edges[:, 0] * num_nodes + edges[:, 1]
    refreshed = torch.isin(old_keys, walk_keys)
    kept_old = ~refreshed
    oa, ob = edges[kept_old, 0], edges[kept_old, 1]
    if aging == "winner":
        total_wins = torch.bincount(s1, minlength=num_nodes)
        new_ages = _wins_after(s1, num_nodes, wa, last) + _wins_after(s1, num_nodes, wb, last)
        old_ages = ages[kept_old] + total_wins[oa] + total_wins[ob]
    else:
        new_ages = steps - 1 - last
        old_ages = ages[kept_old] + steps
    out_edges = torch.cat([torch.stack([oa, ob], 1), torch.stack([wa, wb], 1)])
    out_ages = torch.cat([old_ages, new_ages])
    order = torch.argsort(out_edges[:, 0] * num_nodes + out_edges[:, 1])
    return out_edges[order], out_ages[order]


def prune_edges(
    edges: torch.Tensor, ages: torch.Tensor, age_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop edges whose age exceeds age_max."""
    keep = ages <= age_max
    return edges[keep], ages[keep]


def keep_nodes(
    edges: torch.Tensor, ages: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the edges of removed nodes and renumber the rest to the kept nodes' order."""
    new_index = torch.cumsum(keep.long(), 0) - 1
    alive = keep[edges[:, 0]] & keep[edges[:, 1]]
    return new_index[edges[alive]], ages[alive]


def node_thresholds(
    means: torch.Tensor,
    edges: torch.Tensor,
    threshold_type: str = "median",
    scale: float = 1.0,
) -> torch.Tensor:
    """Per-node acceptance radius T_k from the graph (docs/kng.md, "Node radius").

    Nodes with neighbours reduce the Euclidean distances to their neighbours' means with
    `threshold_type`; nodes without use the distance to the nearest other centre [4].
    `none` accepts everything (infinite radius).
    """
    if threshold_type not in THRESHOLD_TYPES:
        raise ValueError(f"threshold_type must be one of {THRESHOLD_TYPES}, got {threshold_type!r}")
    num_nodes = means.shape[0]
    if threshold_type == "none":
        return torch.full((num_nodes,), float("inf"), dtype=means.dtype, device=means.device)
    from foads.components.nearest import knn  # local: graph has no other dependency on it

    _, nn_dist = knn(means, means, k=min(2, num_nodes))
    isolated = nn_dist[:, -1].clone()

    node = torch.cat([edges[:, 0], edges[:, 1]])
    dist = (means[edges[:, 0]] - means[edges[:, 1]]).norm(dim=1).repeat(2)
    degree = torch.bincount(node, minlength=num_nodes)
    out = isolated
    if node.numel() == 0:
        return out * scale
    if threshold_type in ("max", "min"):
        reduce = "amax" if threshold_type == "max" else "amin"
        init = torch.full_like(isolated, float("-inf") if reduce == "amax" else float("inf"))
        value = init.scatter_reduce(0, node, dist, reduce=reduce)
    elif threshold_type == "mean":
        value = torch.zeros_like(isolated).index_add_(0, node, dist) / degree.clamp_min(1)
    else:  # median, averaging the two middle values for an even count (numpy's convention)
        order = _sort_by(node, dist)
        sorted_dist = dist[order]
        start = torch.cumsum(degree, 0) - degree
        lo = start + (degree - 1).clamp_min(0) // 2
        hi = start + degree // 2
        has = degree > 0
        value = torch.zeros_like(isolated)
        value[has] = 0.5 * (sorted_dist[lo[has]] + sorted_dist[hi[has].clamp_max(node.numel() - 1)])
    out = torch.where(degree > 0, value, isolated)
    return out * scale


def _sort_by(major: torch.Tensor, minor: torch.Tensor) -> torch.Tensor:
    """Permutation sorting by `major`, ties broken by `minor` (two stable sorts)."""
    first = torch.argsort(minor, stable=True)
    second = torch.argsort(major[first], stable=True)
    return first[second]
