"""Incremental Gaussian statistics and Mahalanobis scoring against direct computation."""

import numpy as np
import pytest
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


def direct_stats(x, group, k):
    n = np.bincount(group, minlength=k).astype(float)
    mean = np.zeros((k, x.shape[1]))
    scatter = np.zeros((k, x.shape[1], x.shape[1]))
    for g in range(k):
        rows = x[group == g]
        if len(rows):
            mean[g] = rows.mean(0)
            c = rows - mean[g]
            scatter[g] = c.T @ c
    return n, mean, scatter


def test_group_stats_equal_direct():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 7)) * 3 + 10
    group = rng.integers(0, 9, 500)
    group[group == 4] = 5  # one empty group
    n, mean, scatter = group_stats(torch.from_numpy(x).float(), torch.from_numpy(group), 9)
    rn, rmean, rscatter = direct_stats(x.astype(np.float32).astype(float), group, 9)
    np.testing.assert_allclose(n.numpy(), rn)
    np.testing.assert_allclose(mean.numpy(), rmean, atol=1e-9)
    np.testing.assert_allclose(scatter.numpy(), rscatter, atol=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_any_split_into_batches_equals_fitting_at_once(seed):
    rng = np.random.default_rng(seed)
    k, d = 6, 5
    x = torch.from_numpy(rng.normal(size=(400, d)) * rng.uniform(0.1, 5, d) + 3)
    group = torch.from_numpy(rng.integers(0, k, 400))
    cuts = np.sort(rng.choice(np.arange(1, 400), size=rng.integers(1, 12), replace=False))
    # Single-embedding batches are valid updates too.
    cuts = np.unique(np.concatenate([cuts, [1, 2, 3]]))
    n = torch.zeros(k, dtype=torch.float64)
    mean = torch.zeros(k, d, dtype=torch.float64)
    scatter = torch.zeros(k, d, d, dtype=torch.float64)
    for lo, hi in zip([0, *cuts], [*cuts, 400], strict=True):
        n, mean, scatter = merge_stats(n, mean, scatter, *group_stats(x[lo:hi], group[lo:hi], k))
        assert not torch.isnan(mean).any() and not torch.isnan(scatter).any()
    rn, rmean, rscatter = group_stats(x, group, k)
    torch.testing.assert_close(n, rn, rtol=0, atol=0)
    torch.testing.assert_close(mean, rmean, rtol=0, atol=1e-6)
    torch.testing.assert_close(scatter, rscatter, rtol=0, atol=1e-6)


def test_covariance_prior_and_eps():
    scatter = torch.eye(3, dtype=torch.float64)[None] * 4
    counts = torch.tensor([5.0], dtype=torch.float64)
    prior = torch.full((3, 3), 0.5, dtype=torch.float64)
    plain = regularised_covariance(scatter, counts, eps=0.01)
    torch.testing.assert_close(plain[0], torch.eye(3, dtype=torch.float64) * (1 + 0.01))
    with_prior = regularised_covariance(scatter, counts, prior, prior_weight=10, eps=0.0)
    torch.testing.assert_close(with_prior[0], (4 * torch.eye(3, dtype=torch.float64) + 5) / 14)


def test_mahalanobis_equals_direct_quadratic_form():
    rng = np.random.default_rng(3)
    k, d, n = 7, 10, 300
    a = torch.from_numpy(rng.normal(size=(k, d, d)))
    cov = a @ a.transpose(1, 2) / d + 0.05 * torch.eye(d, dtype=torch.float64)
    means = torch.from_numpy(rng.normal(size=(k, d)))
    x = torch.from_numpy(rng.normal(size=(n, d)))
    group = torch.from_numpy(rng.integers(0, k, n))
    got = mahalanobis(x, means, whitening(cov), group)
    diff = x - means[group]
    expected = torch.einsum("ni,nij,nj->n", diff, torch.linalg.inv(cov)[group], diff).sqrt()
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    # float32 path, as K-NG scores
    got32 = mahalanobis(x.float(), means.float(), whitening(cov.float()), group)
    torch.testing.assert_close(got32.double(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("d", [1, 5, 16, 17, 37, 100])
def test_whitening_by_halves_equals_the_inverse_cholesky_factor(d):
    g = torch.Generator().manual_seed(d)
    a = torch.randn(6, d, 2 * d + 1, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(1, 2) / (2 * d) + 0.01 * torch.eye(d, dtype=torch.float64)
    w = whitening(cov)
    expected = torch.linalg.inv(torch.linalg.cholesky(cov))
    torch.testing.assert_close(w, expected, rtol=1e-9, atol=1e-9)
    assert torch.equal(w, w.tril())  # lower-triangular, zeros above
    # float32, as the models use it: W^T W inverts Sigma to float32 precision.
    w32 = whitening(cov.float()).double()
    eye = torch.eye(d, dtype=torch.float64).expand_as(cov)
    torch.testing.assert_close(w32 @ cov @ w32.transpose(1, 2), eye, rtol=0, atol=1e-4)


def test_whitening_of_a_matrix_that_is_not_positive_definite_is_an_error():
    cov = torch.eye(40, dtype=torch.float64).repeat(3, 1, 1)
    cov[1, 30, 30] = -1.0  # found in the second half's leaf
    with pytest.raises(torch.linalg.LinAlgError, match="covariance 1 of the batch"):
        whitening(cov)


@pytest.mark.parametrize("d", [1, 3, 10])
def test_packing_round_trips_symmetric_and_triangular_matrices(d):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, d, d, generator=g)
    sym, low = a + a.transpose(1, 2), a.tril()
    p = packing(d)
    assert p.pack(sym).shape == (4, d * (d + 1) // 2) == (4, Packing.size(d))
    assert Packing.dim(Packing.size(d)) == d
    torch.testing.assert_close(p.unpack(p.pack(sym)), sym, rtol=0, atol=0)
    torch.testing.assert_close(p.unpack(p.pack(low), triangular=True), low, rtol=0, atol=0)
    v = torch.randn(4, d, generator=g)
    outer = p.unpack(p.add_outer_(p.pack(sym), 2 * v, v))
    torch.testing.assert_close(outer, sym + 2 * v[:, :, None] * v[:, None, :])
    with pytest.raises(ValueError, match="7 is not the packed size"):
        Packing.dim(7)


def test_packed_statistics_equal_the_full_ones():
    rng = np.random.default_rng(5)
    k, d = 6, 9
    x = torch.from_numpy(rng.normal(size=(300, d)) * 2 + 1).float()
    group = torch.from_numpy(rng.integers(0, k, 300))
    p = packing(d)
    full = group_stats(x[:200], group[:200], k)
    packed = group_stats(x[:200], group[:200], k, packed=True)
    torch.testing.assert_close(p.unpack(packed[2]), full[2], rtol=0, atol=1e-12)
    new_full = group_stats(x[200:], group[200:], k)
    new_packed = group_stats(x[200:], group[200:], k, packed=True)
    merged_full = merge_stats(*full, *new_full)
    merged_packed = merge_stats(*packed, *new_packed)
    torch.testing.assert_close(p.unpack(merged_packed[2]), merged_full[2], rtol=0, atol=1e-12)
    prior = torch.cov(x.double().T)
    kwargs = dict(prior=prior, prior_weight=3.0, eps=0.01, dtype=torch.float32, shrinkage=0.5)
    torch.testing.assert_close(
        regularised_covariance(merged_packed[2], merged_packed[0], **kwargs),
        regularised_covariance(merged_full[2], merged_full[0], **kwargs),
        rtol=0,
        atol=0,
    )
    w = whitening(regularised_covariance(merged_full[2], merged_full[0], **kwargs))
    means = merged_full[1].float()
    torch.testing.assert_close(
        mahalanobis(x, means, p.pack(w), group), mahalanobis(x, means, w, group), rtol=0, atol=0
    )
