"""Gaussian statistics of groups of embeddings, merged exactly as data streams in.

A group is summarised by (n, mean, scatter) with scatter = sum (x - mean)(x - mean)^T.
Merging two summaries with the parallel-variance formula gives the summary of the union,
so a model never needs old embeddings (docs/kng.md). K-NG keeps one group per
node, PaDiM one per feature-map position; both use these functions.

Scatter matrices are symmetric and whitening factors lower-triangular, so models store
both packed: the d (d + 1) / 2 entries on and below the diagonal, row by row (`Packing`),
half of the d x d. A packed argument has one axis fewer than its full form: (K, P)
against (K, d, d).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

# Bound on the bytes of d x d matrices gathered or produced at once.
_CHUNK_BYTES = 128 << 20
# Factors of at most this size are computed by LAPACK; larger ones by halves (`whitening`).
_LEAF = 16


@dataclass(frozen=True)
class Packing:
    """The packed layout of d x d matrices: their lower triangle, d (d + 1) / 2 numbers.

    Row i of the matrix (its first i + 1 entries) is the slice i (i + 1) / 2 : (i + 1) (i + 2) / 2
    of the packed form; packing and unpacking copy those d slices (a gather per entry is
    twice as slow on the CPU).
    """

    d: int

    @staticmethod
    def size(d: int) -> int:
        return d * (d + 1) // 2

    @staticmethod
    def dim(size: int) -> int:
        """d from the packed size d (d + 1) / 2; a ValueError for a size that is none."""
        d = (math.isqrt(8 * size + 1) - 1) // 2
        if Packing.size(d) != size:
            raise ValueError(f"{size} is not the packed size d (d + 1) / 2 of any d")
        return d

    def _rows(self):
        for i in range(self.d):
            yield i, slice(i * (i + 1) // 2, (i + 1) * (i + 2) // 2)

    def pack(self, matrices: torch.Tensor) -> torch.Tensor:
        """(..., d, d) -> (..., P): the entries on and below the diagonal."""
        out = matrices.new_empty(*matrices.shape[:-2], Packing.size(self.d))
        for i, part in self._rows():
            out[..., part] = matrices[..., i, : i + 1]
        return out

    def unpack(self, packed: torch.Tensor, triangular: bool = False) -> torch.Tensor:
        """(..., P) -> (..., d, d): symmetric, or lower-triangular with zeros above."""
        out = packed.new_zeros(*packed.shape[:-1], self.d, self.d)
        for i, part in self._rows():
            out[..., i, : i + 1] = packed[..., part]
        if not triangular:
            out += out.tril(-1).transpose(-1, -2)
        return out

    def add_outer_(self, packed: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """packed += the packed u v^T (u, v (..., d); u v^T symmetric, e.g. v a multiple of
        u), in place, without the (..., P) product."""
        for i, part in self._rows():
            packed[..., part].addcmul_(u[..., i : i + 1], v[..., : i + 1])
        return packed


@functools.lru_cache(maxsize=16)
def packing(d: int) -> Packing:
    """The packed layout of d x d matrices (any device, any dtype)."""
    return Packing(d)


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
    x: torch.Tensor, group: torch.Tensor, num_groups: int, packed: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, mean and scatter of the rows of `x` in each group (float64, on x's device);
    the scatters (num_groups, d, d), or packed (num_groups, P) with `packed`.

    Groups without members get count 0, mean 0 and scatter 0.
    """
    d = x.shape[1]
    x64 = x.to(torch.float64)
    counts = torch.bincount(group, minlength=num_groups).to(torch.float64)
    sums = torch.zeros(num_groups, d, dtype=torch.float64, device=x.device)
    sums.index_add_(0, group, x64)
    means = sums / counts.clamp_min(1.0)[:, None]
    blocks = GroupBlocks.build(group, num_groups, size=16)
    rows = blocks.pack(x64[blocks.order] - means[group[blocks.order]])
    pack = packing(d).pack if packed else None
    shape = (num_groups, Packing.size(d)) if pack else (num_groups, d, d)
    scatter = torch.zeros(shape, dtype=torch.float64, device=x.device)
    for part in blocks.chunks(d, 8):
        p = rows[part]
        block_scatter = torch.bmm(p.transpose(1, 2), p)
        scatter.index_add_(
            0, blocks.block_group[part], pack(block_scatter) if pack else block_scatter
        )
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
    Scatters full (K, d, d) or packed (K, P), both alike.
    """
    n = n_a + n_b
    safe_n = n.clamp_min(1.0)
    delta = mean_b - mean_a
    mean = mean_a + (n_b / safe_n)[:, None] * delta
    coef = n_a * n_b / safe_n
    if scatter_a.ndim == mean_a.ndim:  # packed
        scatter = packing(delta.shape[1]).add_outer_(
            scatter_a + scatter_b, coef[:, None] * delta, delta
        )
    else:
        scatter = torch.baddbmm(
            scatter_a + scatter_b, coef[:, None, None] * delta[:, :, None], delta[:, None, :]
        )
    return n, mean, scatter


def regularised_covariance(
    scatter: torch.Tensor,
    counts: torch.Tensor,
    prior: torch.Tensor | None = None,
    prior_weight: float = 0.0,
    eps: float = 0.01,
    dtype: torch.dtype | None = None,
    shrinkage: float = 0.0,
    lower: bool = False,
) -> torch.Tensor:
    """(1 - s) (S + n0 G) / (n - 1 + n0) + s G + eps I for each group, (K, d, d) in `dtype`.

    n0 = `prior_weight` pseudo-observations of the prior covariance G (docs/kng.md, "Covariance"),
    whose weight fades as a group fills in; s = `shrinkage`, a fixed share of G that never
    fades. With n0 = s = 0 this is the paper's sample covariance [2] plus eps I. Computed as
    a_k S + c_k G + eps I with the per-group a_k = (1 - s) / (n - 1 + n0) and
    c_k = n0 a_k + s in float64 and the matrices in `dtype`. The scatter may be packed
    (K, P); with `lower`, only the lower triangle is filled (what `whitening` reads), zeros
    above.
    """
    packed = scatter.ndim == counts.ndim + 1
    dtype = dtype or scatter.dtype
    if prior is None or not (prior_weight > 0 or shrinkage > 0):
        prior, shrinkage = None, 0.0
    a = (1.0 - shrinkage) / (counts - 1.0 + prior_weight).clamp_min(1.0)
    c = prior_weight * a + shrinkage
    if packed:
        cov = packing(Packing.dim(scatter.shape[-1])).unpack(scatter.to(dtype), triangular=lower)
    else:
        cov = scatter.to(dtype, copy=True)
        if lower:
            cov = cov.tril_()
    cov.mul_(a.to(dtype)[:, None, None])
    if prior is not None:
        g = prior.to(dtype).tril() if lower else prior.to(dtype)
        cov.addcmul_(c.to(dtype)[:, None, None], g)
    cov.diagonal(dim1=-2, dim2=-1).add_(eps)
    return cov


def whitening(covariance: torch.Tensor) -> torch.Tensor:
    """W with W^T W = Sigma^-1 (W = L^-1 for the Cholesky factor L), so d^T Sigma^-1 d = |W d|^2.

    Reads the lower triangle of `covariance` only.
    Batched over the leading axis. W is built by halves (blocks [A B^T; B C] of Sigma):
    W_1 = whitening(A), L_21 = B W_1^T, W_2 = whitening(C - L_21 L_21^T), W_21 = -W_2 L_21 W_1,
    down to factors of at most _LEAF rows that LAPACK computes. Every step above the leaves
    is a batched matmul, which is where the cores are fast: a loop of small LAPACK calls per
    matrix (torch's batched Cholesky and triangular solve on the CPU) costs 2.5x more for
    3000 matrices of 100 x 100. A matrix that is not positive definite raises
    torch.linalg.LinAlgError, as a Cholesky factorisation would.
    """
    w = torch.empty_like(covariance)
    info = torch.zeros(covariance.shape[:-2], dtype=torch.int32, device=covariance.device)
    _whiten_into(covariance, w, info)
    if bool((info > 0).any()):
        bad = int(torch.nonzero(info.flatten())[0])
        raise torch.linalg.LinAlgError(
            f"whitening: covariance {bad} of the batch is not positive definite"
        )
    return w


def _whiten_into(a: torch.Tensor, w: torch.Tensor, info: torch.Tensor) -> None:
    """Write L^-1 of each matrix of `a` (its lower triangle) into `w`, zeros above."""
    n = a.shape[-1]
    if n <= _LEAF:
        chol, leaf_info = torch.linalg.cholesky_ex(a)
        info.add_(leaf_info)
        eye = torch.eye(n, dtype=a.dtype, device=a.device).expand_as(chol)
        w.copy_(torch.linalg.solve_triangular(chol, eye, upper=False))
        return
    h = n // 2
    w1, w2 = w[..., :h, :h], w[..., h:, h:]
    _whiten_into(a[..., :h, :h], w1, info)
    l21 = a[..., h:, :h] @ w1.transpose(-1, -2)
    schur = a[..., h:, h:] - l21 @ l21.transpose(-1, -2)
    _whiten_into(schur, w2, info)
    w[..., :h, h:] = 0
    torch.matmul(w2, l21 @ w1, out=w[..., h:, :h])
    w[..., h:, :h].neg_()


def mahalanobis(
    x: torch.Tensor, means: torch.Tensor, whiten: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    """Mahalanobis distance of each row of x to the Gaussian of its group [11]: |W_g (x - mu_g)|.

    `whiten` is full (K, d, d) or packed lower-triangular (K, P)."""
    n, d = x.shape
    if whiten.ndim == means.ndim:  # packed: unpacked once (a copy per block costs more)
        whiten = packing(d).unpack(whiten, triangular=True)
    blocks = GroupBlocks.build(group, whiten.shape[0])
    g = group[blocks.order]
    packed = blocks.pack(x[blocks.order] - means[g].to(x.dtype))
    for part in blocks.chunks(d, x.element_size()):
        w = whiten[blocks.block_group[part]].to(x.dtype)
        packed[part] = torch.bmm(packed[part], w.transpose(1, 2))
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    out[blocks.order] = packed[blocks.block_id, blocks.slot].square().sum(-1).sqrt()
    return out
