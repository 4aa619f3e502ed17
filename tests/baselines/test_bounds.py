"""SPADE's gallery and PatchCore's bank stay within their bounds, keeping the shots and the
subset that covers what was seen best (the greedy coreset), not the first or a random one."""

import re

import pytest
import torch

from foads.baselines.patchcore.torch_model import PatchCoreModel
from foads.baselines.spade.torch_model import SPADEModel


def _coverage(points: torch.Tensor, kept: torch.Tensor) -> float:
    """The largest distance from a point seen to its nearest kept one (lower: better)."""
    return float(torch.cdist(points, kept).min(dim=1).values.max())


def _clusters(n_batches: int, per_batch: int, dim: int, gen: torch.Generator) -> list:
    """Batches drawn around 40 centres, so a good subset must keep every centre."""
    centres = torch.randn(40, dim, generator=gen) * 10
    return [
        centres[torch.randint(40, (per_batch,), generator=gen)]
        + 0.1 * torch.randn(per_batch, dim, generator=gen)
        for _ in range(n_batches)
    ]


def test_patchcore_bank_stays_bounded_and_keeps_shots_and_coverage():
    gen = torch.Generator().manual_seed(0)
    shots = torch.randn(2, 8, 4, 4, generator=gen)  # 32 shot patches, ratio 1: all kept
    model = PatchCoreModel(coreset_ratio=1.0, max_bank=200)
    model.fit(shots)
    shot_rows = model.bank.clone()
    seen = [shot_rows]
    sizes = []
    for rows in _clusters(30, 64, 8, gen):
        model.add(rows.T.reshape(1, 8, 8, 8))  # (1, d, h, w) with h * w = 64
        seen.append(rows)
        sizes.append(model.bank.shape[0])
    assert max(sizes) <= 200 and min(sizes[10:]) >= 160  # shrunk to 80% when full
    # Every shot patch is still in the bank.
    assert (shot_rows[:, None] == model.bank[None]).all(-1).any(1).all()
    seen = torch.cat(seen)
    random_subset = seen[torch.randperm(seen.shape[0], generator=gen)[: model.bank.shape[0]]]
    assert _coverage(seen, model.bank) < 0.5 * _coverage(seen, random_subset)


def test_spade_gallery_stays_bounded_and_keeps_shots_and_coverage():
    gen = torch.Generator().manual_seed(1)
    model = SPADEModel(top_k=3, max_gallery=50)
    pooled_shots = torch.randn(5, 16, generator=gen)
    model.fit(pooled_shots, torch.arange(5.0)[:, None, None, None].expand(5, 2, 2, 2))
    seen = [pooled_shots]
    for k, pooled in enumerate(_clusters(40, 4, 16, gen)):
        patches = torch.full((4, 2, 2, 2), 100.0 + k)
        model.add(pooled, patches)
        seen.append(pooled)
        assert model.pooled.shape[0] <= 50 and model.patches.shape[0] == model.pooled.shape[0]
    assert torch.equal(model.pooled[:5], pooled_shots) and int(model.shots) == 5
    # Each image keeps its own patches.
    for i in range(5):
        assert torch.equal(model.patches[i], torch.full((2, 2, 2), float(i)))
    seen = torch.cat(seen)
    random_subset = seen[torch.randperm(seen.shape[0], generator=gen)[:50]]
    assert _coverage(seen, model.pooled) < 0.5 * _coverage(seen, random_subset)


@pytest.mark.parametrize(
    "model", [lambda: PatchCoreModel(max_bank=0), lambda: SPADEModel(max_gallery=-1)]
)
def test_a_bound_below_one_is_refused_by_name(model):
    with pytest.raises(ValueError, match=re.escape("method.max_")):
        model()
