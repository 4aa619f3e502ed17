"""PaDiM's model: a Gaussian per position of the embedding grid, merged exactly online."""

from __future__ import annotations

import torch

from foads.components.gaussian import (
    group_stats,
    mahalanobis,
    merge_stats,
    packing,
    regularised_covariance,
    whitening,
)
from foads.components.state import PackedGaussians


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, d, h, w) -> rows (B*h*w, d) and each row's position index."""
    b, d, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, d)
    return rows, torch.arange(h * w, device=x.device).repeat(b)


class PaDiMModel(PackedGaussians):
    """Per-position (n, mean, scatter) in float64 and cached whitening factors, both packed.

    `covariance_shrinkage` s (not in the original PaDiM, whose s is 0): each position's
    covariance becomes (1 - s) S / (n - 1) + s G + eps I, G the shots' covariance pooled over
    all positions, a share of broad tails that learning from a pseudo-labelled (truncated)
    sample cannot narrow; K-NG's `covariance_shrinkage` does the same per node."""

    def __init__(self, eps: float = 0.01, covariance_shrinkage: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= covariance_shrinkage <= 1.0:
            raise ValueError(
                f"method.covariance.shrinkage must lie in [0, 1], got {covariance_shrinkage}"
            )
        self.eps = eps
        self.covariance_shrinkage = covariance_shrinkage
        for name in ("counts", "means", "scatter", "whiten", "prior"):
            self.register_buffer(name, torch.empty(0))

    def state_elements(self) -> int:
        return self.means.numel() + self.scatter.numel() + self.counts.numel()

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        rows, pos = _rows(x)
        k = x.shape[2] * x.shape[3]
        self.counts, self.means, self.scatter = group_stats(rows, pos, k, packed=True)
        self.prior = (
            torch.cov(rows.to(torch.float64).T) if self.covariance_shrinkage else rows.new_empty(0)
        )
        self._refresh()

    def _refresh(self) -> None:
        cov = regularised_covariance(
            self.scatter,
            self.counts,
            self.prior if self.covariance_shrinkage else None,
            eps=self.eps,
            dtype=torch.float32,
            shrinkage=self.covariance_shrinkage,
            lower=True,
        )
        self.whiten = packing(cov.shape[-1]).pack(whitening(cov))

    @torch.no_grad()
    def update(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> None:
        """Merge the patches of x into their positions' Gaussians (exactly); with `allowed`
        (B, h, w) bool, only the patches it marks."""
        rows, pos = _rows(x)
        if allowed is not None:
            keep = allowed.reshape(-1).to(rows.device)
            rows, pos = rows[keep], pos[keep]
        new = group_stats(rows, pos, self.means.shape[0], packed=True)
        self.counts, self.means, self.scatter = merge_stats(
            self.counts, self.means, self.scatter, *new
        )
        self._refresh()

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) -> (B, h, w) Mahalanobis distances to each position's Gaussian."""
        b, _, h, w = x.shape
        rows, pos = _rows(x)
        return mahalanobis(rows, self.means, self.whiten, pos).view(b, h, w)
