"""The vectorised edge walk and thresholds against small sequential references."""

import numpy as np
import pytest
import torch

from foads.methods.kng.graph import (
    keep_nodes,
    node_thresholds,
    prune_edges,
    walk_edges,
)


def sequential_walk(s1, s2, edges, age_max, aging, prune_each_step):
    """The edge walk (docs/kng.md), step by step: refresh (s1, s2) to 0, age the other edges."""
    graph = {tuple(e): a for e, a in edges.items()}
    for a, b in zip(s1, s2, strict=True):
        key = (min(a, b), max(a, b))
        graph[key] = 0
        for other in list(graph):
            if other == key:
                continue
            if aging == "global" or a in other:
                graph[other] += 1
        if prune_each_step:
            graph = {k: v for k, v in graph.items() if v <= age_max}
    return {k: v for k, v in graph.items() if v <= age_max}


def random_pairs(rng, num_nodes, steps):
    s1 = rng.integers(0, num_nodes, steps)
    s2 = (s1 + rng.integers(1, num_nodes, steps)) % num_nodes
    return s1, s2


@pytest.mark.parametrize("aging", ["winner", "global"])
@pytest.mark.parametrize("seed", range(6))
def test_walk_equals_sequential_reference(aging, seed):
    rng = np.random.default_rng(seed)
    num_nodes, age_max = 9, int(rng.integers(3, 40))
    # Start from a graph with ages, as an online update does.
    start = {}
    for a, b in zip(*random_pairs(rng, num_nodes, 12), strict=True):
        start[(min(a, b), max(a, b))] = int(rng.integers(0, age_max + 1))
    s1, s2 = random_pairs(rng, num_nodes, int(rng.integers(1, 300)))
    expected = sequential_walk(
        s1.tolist(), s2.tolist(), start, age_max, aging, prune_each_step=True
    )

    edges = torch.tensor(sorted(start), dtype=torch.long).reshape(-1, 2)
    ages = torch.tensor([start[k] for k in sorted(start)], dtype=torch.long)
    out_edges, out_ages = walk_edges(
        torch.from_numpy(s1), torch.from_numpy(s2), num_nodes, edges, ages, aging
    )
    out_edges, out_ages = prune_edges(out_edges, out_ages, age_max)
    got = {tuple(e): int(a) for e, a in zip(out_edges.tolist(), out_ages.tolist(), strict=True)}
    assert got == expected
    # Pruning at the end equals pruning at every step (the walk relies on it).
    assert expected == sequential_walk(
        s1.tolist(), s2.tolist(), start, age_max, aging, prune_each_step=False
    )


def test_walk_from_empty_graph_and_empty_walk():
    edges = torch.empty(0, 2, dtype=torch.long)
    ages = torch.empty(0, dtype=torch.long)
    e, a = walk_edges(torch.tensor([0, 1, 0]), torch.tensor([1, 2, 1]), 3, edges, ages)
    # (0,1) refreshed at t=2 (age 0); (1,2) made at t=1, node 0 won at t=2 -> not incident: 0.
    assert {tuple(x): int(y) for x, y in zip(e.tolist(), a.tolist(), strict=True)} == {
        (0, 1): 0,
        (1, 2): 0,
    }
    same_e, same_a = walk_edges(
        torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), 3, e, a
    )
    assert torch.equal(same_e, e) and torch.equal(same_a, a)


def test_keep_nodes_renumbers_and_drops_edges():
    edges = torch.tensor([[0, 1], [1, 3], [2, 3]])
    ages = torch.tensor([5, 6, 7])
    e, a = keep_nodes(edges, ages, torch.tensor([True, False, True, True]))
    assert e.tolist() == [[1, 2]] and a.tolist() == [7]


@pytest.mark.parametrize("kind", ["median", "mean", "max", "min"])
def test_thresholds_equal_direct_computation(kind):
    rng = np.random.default_rng(1)
    means = torch.from_numpy(rng.normal(size=(12, 5)))
    pairs = {(0, 1), (0, 2), (0, 3), (1, 2), (4, 5), (6, 7), (6, 8), (6, 9), (6, 10)}
    edges = torch.tensor(sorted(pairs))
    got = node_thresholds(means, edges, kind, scale=1.5).numpy()
    m = means.numpy()
    reduce = {"median": np.median, "mean": np.mean, "max": np.max, "min": np.min}[kind]
    for k in range(12):
        nbrs = [b for a, b in pairs if a == k] + [a for a, b in pairs if b == k]
        if nbrs:
            expected = reduce([np.linalg.norm(m[k] - m[n]) for n in nbrs])
        else:  # isolated (node 11): distance to the nearest other centre [4]
            expected = min(np.linalg.norm(m[k] - m[n]) for n in range(12) if n != k)
        assert got[k] == pytest.approx(1.5 * expected, rel=1e-9)


def test_threshold_none_accepts_everything():
    t = node_thresholds(torch.randn(4, 3), torch.tensor([[0, 1]]), "none")
    assert torch.isinf(t).all()
