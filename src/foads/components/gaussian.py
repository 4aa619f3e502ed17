"""Gaussian statistics of groups of embeddings, merged exactly as data streams in.

A group is summarised by (n, mean, scatter) with scatter = sum (x - mean)(x - mean)^T.
Merging two summaries with the parallel-variance formula gives the summary of the union,
so a model never needs old embeddings (docs/kng.md). K-NG keeps one group per
node, PaDiM one per feature-map position; both use these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Bound on the bytes of d x d matrices gathered or produced at once.
_CHUNK_BYTES = 128 << 20


@dataclass
class GroupBlocks:
    """Rows sorted by group and packed into blocks of at most `size` rows of one group.

    A block is multiplied by one matrix of its group, so per-group linear algebra runs as
    batched matmuls without a loop over groups and without a d x d matrix per row.
    """

    order: torch.Tensor  # rows in sorted order
    block_id: torch.Tensor  # block of each sorted row
    slot: torch.Tensor  # position of each sorted row inside its block
    block_group: torch.Tensor  # group of each block
    size: int

    @classmethod
    def build(cls, group: torch.Tensor, num_groups: int, size: int = 16) -> GroupBlocks:
        order = torch.argsort(group, stable=True)
        g = group[order]
        counts = torch.bincount(group, minlength=num_groups)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(group.shape[0], device=group.device) - first[g]
        per_group = (counts + size - 1) // size
        block_first = torch.cumsum(per_group, 0) - per_group
        block_group = torch.repeat_interleave(
            torch.arange(num_groups, device=group.device), per_group
        )
        return cls(order, block_first[g] + rank // size, rank % size, block_group, size)

    def pack(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, d) rows in sorted order -> (blocks, size, d), zero-padded."""
        out = rows.new_zeros(self.block_group.shape[0], self.size, rows.shape[1])
        out[self.block_id, self.slot] = rows
        return out

    def chunks(self, d: int, element_size: int):
        """Slices over blocks that keep gathered d x d matrices within the byte bound."""
        step = max(1, _CHUNK_BYTES // max(1, d * d * element_size))
        for start in range(0, self.block_group.shape[0], step):
            yield slice(start, start + step)


def group_stats(
    x: torch.Tensor, group: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, mean and scatter of the rows of `x` in each group (float64, on x's device).

    Groups without members get count 0, mean 0 and scatter 0.
    """
    d = x.shape[1]
    x64 = x.to(torch.float64)
    counts = torch.bincount(group, minlength=num_groups).to(torch.float64)
    sums = torch.zeros(num_groups, d, dtype=torch.float64, device=x.device)
    sums.index_add_(0, group, x64)
    means = sums / counts.clamp_min(1.0)[:, None]
    blocks = GroupBlocks.build(group, num_groups, size=32)
    packed = blocks.pack(x64[blocks.order] - means[group[blocks.order]])
    scatter = torch.zeros(num_groups, d, d, dtype=torch.float64, device=x.device)
    for part in blocks.chunks(d, 8):
        p = packed[part]
        scatter.index_add_(0, blocks.block_group[part], torch.bmm(p.transpose(1, 2), p))
    return counts, means, scatter


def merge_stats(
    n_a: torch.Tensor,
    mean_a: torch.Tensor,
    scatter_a: torch.Tensor,
    n_b: torch.Tensor,
    mean_b: torch.Tensor,
    scatter_b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact summary of the union of two groups, vectorised over a leading group axis.

    scatter = S_a + S_b + n_a n_b / (n_a + n_b) (mean_a - mean_b)(mean_a - mean_b)^T
    (the paper's equation [8], correctly bracketed). Either side may be empty (n = 0).
    """
    n = n_a + n_b
    safe_n = n.clamp_min(1.0)
    delta = mean_b - mean_a
    mean = mean_a + (n_b / safe_n)[:, None] * delta
    coef = (n_a * n_b / safe_n)[:, None, None]
    scatter = torch.baddbmm(scatter_a + scatter_b, coef * delta[:, :, None], delta[:, None, :])
    return n, mean, scatter


def regularised_covariance(
    scatter: torch.Tensor,
    counts: torch.Tensor,
    prior: torch.Tensor | None = None,
    prior_weight: float = 0.0,
    eps: float = 0.01,
    dtype: torch.dtype | None = None,
    shrinkage: float = 0.0,
) -> torch.Tensor:
    """(1 - s) (S + n0 G) / (n - 1 + n0) + s G + eps I for each group, in `dtype`.

    n0 = `prior_weight` pseudo-observations of the prior covariance G (docs/kng.md, "Covariance"),
    whose weight fades as a group fills in; s = `shrinkage`, a fixed share of G that never
    fades. With n0 = s = 0 this is the paper's sample covariance [2] plus eps I. The
    division happens in the scatter's precision; only the result is cast.
    """
    denom = (counts - 1.0 + prior_weight).clamp_min(1.0)[:, None, None]
    if prior is not None and prior_weight > 0:
        cov = (scatter + prior_weight * prior.to(scatter)).div_(denom)
    else:
        cov = scatter / denom
    if prior is not None and shrinkage > 0:
        cov = cov.mul_(1.0 - shrinkage).add_(shrinkage * prior.to(cov))
    cov = cov.to(dtype or scatter.dtype)
    cov.diagonal(dim1=-2, dim2=-1).add_(eps)
    return cov


def whitening(covariance: torch.Tensor) -> torch.Tensor:
    """W with W^T W = Sigma^-1 (W = L^-1 of the Cholesky factor), so d^T Sigma^-1 d = |W d|^2."""
    chol = torch.linalg.cholesky(covariance)
    eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
    return torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)


def mahalanobis(
    x: torch.Tensor, means: torch.Tensor, whiten: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    """Mahalanobis distance of each row of x to the Gaussian of its group [11]: |W_g (x - mu_g)|."""
    n, d = x.shape
    blocks = GroupBlocks.build(group, whiten.shape[0])
    g = group[blocks.order]
    packed = blocks.pack(x[blocks.order] - means[g].to(x.dtype))
    for part in blocks.chunks(d, x.element_size()):
        w = whiten[blocks.block_group[part]].to(x.dtype)
        packed[part] = torch.bmm(packed[part], w.transpose(1, 2))
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    out[blocks.order] = packed[blocks.block_id, blocks.slot].square().sum(-1).sqrt()
    return out
