"""K-NG as a plain torch module: a neural-gas graph of k-means nodes with per-node Gaussians.

The state (docs/kng.md) is, per node, a mean, a count, a scatter matrix (float64), an
acceptance threshold and a cached whitening factor, plus an undirected edge list with ages.
The scatter matrices (symmetric) and whitening factors (lower-triangular) are stored packed,
d (d + 1) / 2 numbers each (components/gaussian.py, `Packing`).
It never stores images or old embeddings: memory is O(K d^2) whatever the stream length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from foads.components.gaussian import (
    Packing,
    group_stats,
    mahalanobis,
    merge_stats,
    packing,
    regularised_covariance,
    whitening,
)
from foads.components.nearest import knn
from foads.components.options import Covariance, options_of, refuse_renamed
from foads.components.state import PackedGaussians
from foads.methods.kng.graph import (
    EDGE_AGING,
    THRESHOLD_TYPES,
    empty_edges,
    keep_nodes,
    node_thresholds,
    prune_edges,
    walk_edges,
)
from foads.methods.kng.options import Growth


@dataclass
class NodeAssignment:
    """Nearest (s1) and second-nearest (s2) node of each embedding, and the distance to s1.

    Scoring and the online update need the same search; it is done once per batch.
    """

    s1: torch.Tensor
    s2: torch.Tensor
    distance: torch.Tensor


class KNGModel(PackedGaussians):
    """The K-NG model: initial fit on shot embeddings, scoring, exact incremental updates."""

    # Buffers (registered in __init__; they change shape as the model learns).
    counts: torch.Tensor
    means: torch.Tensor
    scatter: torch.Tensor
    thresholds: torch.Tensor
    prior: torch.Tensor
    whiten: torch.Tensor
    updates: torch.Tensor
    last_win: torch.Tensor
    grown: torch.Tensor
    removed: torch.Tensor
    edges: torch.Tensor
    edge_ages: torch.Tensor

    def __init__(
        self,
        num_nodes: int = 3136,
        epochs: int = 10,
        age_max: int = 25,
        edge_aging: str = "winner",
        threshold_type: str = "median",
        threshold_scale: float = 1.0,
        covariance: Covariance | dict | None = None,
        growth: Growth | dict | None = None,
        seed: int = 0,
        **renamed,
    ) -> None:
        super().__init__()
        refuse_renamed("KNGModel", renamed)
        covariance = options_of(Covariance, covariance, "covariance")
        growth = options_of(Growth, growth, "growth")
        if num_nodes < 2:
            raise ValueError(
                f"num_nodes must be at least 2 (a node needs a runner-up), got {num_nodes}"
            )
        # The paper's epochs ablation (Figure 8) runs N = 1 to 40; with no k-means round the
        # graph would have no edge at all, which is not a K-NG the paper describes.
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(
                f"method.epochs must be an integer >= 1 (the initial k-means rounds N; the "
                f"paper's ablation starts at 1), got {epochs!r}"
            )
        if edge_aging not in EDGE_AGING:
            raise ValueError(f"edge_aging must be one of {EDGE_AGING}, got {edge_aging!r}")
        if threshold_type not in THRESHOLD_TYPES:
            raise ValueError(
                f"threshold_type must be one of {THRESHOLD_TYPES}, got {threshold_type!r}"
            )
        if growth.max_nodes is not None and growth.max_nodes < num_nodes:
            raise ValueError(
                f"method.growth.max_nodes={growth.max_nodes} is below num_nodes={num_nodes}"
            )
        self.num_nodes = num_nodes
        self.epochs = epochs
        self.age_max = age_max
        self.edge_aging = edge_aging
        self.threshold_type = threshold_type
        self.threshold_scale = threshold_scale
        self.covariance = covariance
        self.growth = growth
        # The hot paths read these often: plain attributes.
        self.covariance_prior = covariance.prior
        self.covariance_shrinkage = covariance.shrinkage
        self.eps = covariance.eps
        self.max_nodes = growth.max_nodes
        self.grow_scale = growth.scale
        self.grow_min_count = growth.min_count
        self.remove_after = growth.remove_after
        self.seed = seed
        for name in ("counts", "means", "scatter", "thresholds", "prior", "whiten"):
            self.register_buffer(name, torch.empty(0))
        # Growth bookkeeping: updates so far, and the update at which each node last won.
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_win", torch.empty(0, dtype=torch.long))
        self.register_buffer("grown", torch.zeros((), dtype=torch.long))
        self.register_buffer("removed", torch.zeros((), dtype=torch.long))
        edges, ages = empty_edges()
        self.register_buffer("edges", edges)
        self.register_buffer("edge_ages", ages)

    # ---------------------------------------------------------------- state
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # States saved before the centres became means.float() on demand carry them.
        state_dict.pop(prefix + "centres", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def fitted(self) -> bool:
        return self.means.numel() > 0

    @property
    def current_nodes(self) -> int:
        return int(self.means.shape[0])

    # ---------------------------------------------------------------- fit (Algorithm 1)
    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Build the graph from the shot embeddings x (M, d)."""
        if x.ndim != 2:
            raise ValueError(f"expected embeddings of shape (M, d), got {tuple(x.shape)}")
        m = x.shape[0]
        if m < self.num_nodes:
            raise ValueError(
                f"num_nodes={self.num_nodes} is more than the {m} training embeddings; "
                f"lower method.num_nodes or use more shots"
            )
        gen = torch.Generator().manual_seed(self.seed)
        start = torch.randperm(m, generator=gen)[: self.num_nodes].to(x.device)
        centres = x[start].clone()
        edges, ages = empty_edges(x.device)
        s1 = torch.zeros(m, dtype=torch.long, device=x.device)
        for _ in range(self.epochs):
            idx, _ = knn(x, centres, k=2)
            s1, s2 = idx[:, 0], idx[:, 1]
            k = centres.shape[0]
            edges, ages = walk_edges(s1, s2, k, edges, ages, self.edge_aging)
            edges, ages = prune_edges(edges, ages, self.age_max)
            counts = torch.bincount(s1, minlength=k)
            sums = torch.zeros_like(centres).index_add_(0, s1, x)
            keep = counts > 0
            centres = sums[keep] / counts[keep, None]
            edges, ages = keep_nodes(edges, ages, keep)
            s1 = (torch.cumsum(keep.long(), 0) - 1)[s1]
        counts, means, scatter = group_stats(x, s1, centres.shape[0], packed=True)
        # A node needs two embeddings for a covariance; fewer would give NaN.
        keep = counts >= 2
        self.edges, self.edge_ages = keep_nodes(edges, ages, keep)
        self.counts, self.means, self.scatter = counts[keep], means[keep], scatter[keep]
        x64 = x.to(torch.float64)
        d = x.shape[1]
        self.prior = torch.cov(x64.T) if m > 1 else x64.new_zeros(d, d)
        self.last_win = torch.zeros(self.current_nodes, dtype=torch.long, device=x.device)
        self.updates.zero_()
        self.grown.zero_()
        self.removed.zero_()
        self.whiten = torch.empty(0, Packing.size(d), device=x.device)
        self.refresh(torch.ones(self.current_nodes, dtype=torch.bool, device=x.device))

    def refresh(self, changed: torch.Tensor | None = None) -> None:
        """Recompute the scoring caches (whitening factors) of the `changed` nodes ((K,) bool;
        None: every node) and every threshold, e.g. after the rule or the state was set."""
        nodes = (
            torch.arange(self.current_nodes, device=self.means.device)
            if changed is None
            else changed.nonzero().squeeze(1)
        )
        self._factorise(nodes, self.counts[nodes], self.scatter[nodes])
        self._refresh_radii()

    def _factorise(self, nodes: torch.Tensor, counts: torch.Tensor, scatter: torch.Tensor) -> None:
        """Whitening factors of `nodes` (indices) from their counts and packed scatters."""
        cov = regularised_covariance(
            scatter,
            counts,
            self.prior,
            self.covariance_prior,
            self.eps,
            dtype=torch.float32,
            shrinkage=self.covariance_shrinkage,
            lower=True,
        )
        d = self.means.shape[1]
        missing = self.current_nodes - self.whiten.shape[0]
        if missing > 0:  # new nodes (fit or growth) get rows; `nodes` covers them
            pad = self.whiten.new_zeros(missing, Packing.size(d), dtype=cov.dtype)
            self.whiten = torch.cat([self.whiten.to(cov.dtype), pad])
        self.whiten[nodes] = packing(d).pack(whitening(cov))

    def _refresh_radii(self) -> None:
        self.thresholds = node_thresholds(
            self.means.float(), self.edges, self.threshold_type, self.threshold_scale
        )

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> NodeAssignment:
        """Nearest and second-nearest node of every embedding (Euclidean [10])."""
        idx, dist = knn(x, self.means, k=2)
        return NodeAssignment(idx[:, 0], idx[:, 1], dist[:, 0])

    @torch.no_grad()
    def score(self, x: torch.Tensor, assignment: NodeAssignment | None = None) -> torch.Tensor:
        """Mahalanobis distance of each embedding to its nearest node [11]."""
        if assignment is None:
            assignment = self.assign(x)
        return mahalanobis(x, self.means, self.whiten, assignment.s1)

    # ---------------------------------------------------------------- online update (Algorithm 2)
    @torch.no_grad()
    def accept(self, assignment: NodeAssignment) -> torch.Tensor:
        """Pseudo-labels: an embedding is normal if it lies within its nearest node's radius."""
        return assignment.distance < self.thresholds[assignment.s1].to(assignment.distance)

    @torch.no_grad()
    def update(
        self,
        x: torch.Tensor,
        assignment: NodeAssignment | None = None,
        labels: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        also: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Absorb the pseudo-normal embeddings of x; returns the accepted mask (N,).

        `also` (N,) bool adds embeddings to those within their node's radius (a rule that
        widens it, e.g. recurrence). `allowed` (N,) bool restricts the result to those
        embeddings (an image-level gate passes the patches of the images it lets through).
        `labels` (N,) bool, when given,
        replaces the pseudo-labels: exactly those embeddings are absorbed (the oracle
        diagnostic).
        """
        if assignment is None:
            assignment = self.assign(x)
        if labels is not None:
            accepted = labels.to(assignment.s1.device)
        else:
            accepted = self.accept(assignment)
            if also is not None:
                accepted = accepted | also.to(accepted.device)
            if allowed is not None:
                accepted = accepted & allowed.to(accepted.device)
        if not bool(accepted.any()):
            self._after_update(torch.zeros_like(self.last_win, dtype=torch.bool))
            return accepted
        merge = accepted
        grow_rows = None
        # Growth settings always come with max_nodes (Growth checks it).
        if (
            self.grow_scale is not None
            and self.max_nodes is not None
            and self.current_nodes < self.max_nodes
        ):
            merge, grow_rows = self._split_far(x, assignment, accepted)
        s1, s2 = assignment.s1[merge], assignment.s2[merge]
        k = self.current_nodes
        edges, ages = walk_edges(s1, s2, k, self.edges, self.edge_ages, self.edge_aging)
        self.edges, self.edge_ages = prune_edges(edges, ages, self.age_max)
        # Only the nodes that won something: their new statistics, merged into theirs.
        nodes, node_of_row = torch.unique(s1, return_inverse=True)
        changed = torch.zeros(k, dtype=torch.bool, device=s1.device)
        if nodes.numel():
            new = group_stats(x[merge], node_of_row, nodes.shape[0], packed=True)
            old = (self.counts[nodes], self.means[nodes], self.scatter[nodes])
            n, mean, scatter = merge_stats(*old, *new)
            self.counts[nodes], self.means[nodes], self.scatter[nodes] = n, mean, scatter
            self._factorise(nodes, n, scatter)
            changed[nodes] = True
        if grow_rows is not None and grow_rows.numel():
            changed = self._add_nodes(x[grow_rows], changed)
        self._after_update(changed)
        return accepted

    # ---------------------------------------------------------------- growth (option)
    def _split_far(
        self, x: torch.Tensor, assignment: NodeAssignment, accepted: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Accepted embeddings farther than grow_scale node radii from their nearest node
        seed new nodes (when there are at least grow_min_count of them); the rest merge."""
        assert self.grow_scale is not None  # only called when the graph may grow
        radius = node_thresholds(self.means.float(), self.edges, "median", 1.0)
        far = accepted & (assignment.distance > self.grow_scale * radius[assignment.s1])
        if int(far.sum()) < self.grow_min_count:
            return accepted, None
        return accepted & ~far, far.nonzero().squeeze(1)

    def _add_nodes(self, x: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        """k-means of the far embeddings into at most the free node slots; clusters of at
        least two become nodes with their exact statistics (the others are dropped)."""
        assert self.max_nodes is not None  # only called when the graph may grow
        free = self.max_nodes - self.current_nodes
        k = min(free, x.shape[0] // self.grow_min_count)
        gen = torch.Generator().manual_seed(self.seed + 7919 * int(self.updates) + 1)
        centres = x[torch.randperm(x.shape[0], generator=gen)[:k].to(x.device)].clone()
        for _ in range(5):
            idx, _ = knn(x, centres, k=1)
            counts = torch.bincount(idx[:, 0], minlength=k)
            sums = torch.zeros_like(centres).index_add_(0, idx[:, 0], x)
            filled = counts > 0
            centres[filled] = sums[filled] / counts[filled, None]
        idx, _ = knn(x, centres, k=1)
        counts, means, scatter = group_stats(x, idx[:, 0], k, packed=True)
        keep = counts >= 2
        added = int(keep.sum())
        self.counts = torch.cat([self.counts, counts[keep]])
        self.means = torch.cat([self.means, means[keep]])
        self.scatter = torch.cat([self.scatter, scatter[keep]])
        self.last_win = torch.cat([self.last_win, self.last_win.new_full((added,), 0)])
        self.grown += added
        first = self.current_nodes - added
        new_nodes = torch.arange(first, self.current_nodes, device=changed.device)
        self._factorise(new_nodes, counts[keep], scatter[keep])
        new = torch.ones(added, dtype=torch.bool, device=changed.device)
        return torch.cat([changed, new])

    def _after_update(self, changed: torch.Tensor) -> None:
        """Count the update, note the winners, remove long-idle nodes, refresh the radii."""
        self.updates += 1
        self.last_win[changed] = self.updates
        if self.remove_after is not None:
            idle = (self.updates - self.last_win) >= self.remove_after
            if bool(idle.any()) and int((~idle).sum()) >= 2:
                keep = ~idle
                self.edges, self.edge_ages = keep_nodes(self.edges, self.edge_ages, keep)
                for name in ("counts", "means", "scatter", "whiten", "last_win"):
                    setattr(self, name, getattr(self, name)[keep])
                self.removed += int(idle.sum())
                changed = changed[keep]
        if bool(changed.any()) or self.thresholds.shape[0] != self.current_nodes:
            self._refresh_radii()

    def growth_summary(self) -> dict:
        """Nodes added and removed over the stream (only when the graph may change size)."""
        if self.max_nodes is None:
            return {}
        return {"nodes_grown": int(self.grown), "nodes_removed": int(self.removed)}
