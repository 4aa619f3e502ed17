"""The baselines behave as their original papers and code (docs/fidelity.md): PatchCore's
image score and approximate coreset, SPADE's image-level features."""

import math
import re

import pytest
import torch

from foads.baselines.patchcore import torch_model as patchcore_torch
from foads.baselines.patchcore.lightning_model import PatchCoreModule
from foads.baselines.patchcore.torch_model import PatchCoreModel
from foads.components.coreset import greedy_coreset, sparse_random_projection
from foads.features.backbones import build_backbone


def random_backbone(name="resnet18"):
    torch.manual_seed(0)
    return build_backbone(name, pretrained=False)


def images(n, seed, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


# ----------------------------------------------------------------------------- PatchCore


@pytest.fixture(scope="module")
def backbone():
    return random_backbone()


def _fitted(backbone, **kw):
    method = PatchCoreModule(backbone, feature_dim=20, **kw)
    method.collect(images(4, 0))
    method.fit_shots()
    return method


def test_patchcore_image_score_is_the_largest_raw_patch_distance(backbone):
    method = _fitted(backbone)
    assert method.image_score == "max_patch"
    scored = method.score(images(3, 1))
    _, patch = scored.cache
    torch.testing.assert_close(scored.image_scores, patch.amax(dim=(1, 2)), rtol=0, atol=0)
    # The former score, the smoothed map's maximum, is another number (lower: the Gaussian
    # spreads the peak): this test fails on it.
    assert (scored.anomaly_maps.amax(dim=(1, 2)) < scored.image_scores - 1e-4).all()
    old = _fitted(backbone, image_score="map_max").score(images(3, 1))
    torch.testing.assert_close(old.image_scores, old.anomaly_maps.amax(dim=(1, 2)))


def _eq7(x_rows, bank, b):
    """The paper's eq. 7 for one image, written out: rows (P, d) of the test image."""
    dist = torch.cdist(x_rows.double(), bank.double())
    nearest = dist.min(dim=1)
    worst = int(nearest.values.argmax())
    s_star = nearest.values[worst]
    m_star = bank[nearest.indices[worst]].double()
    support = torch.cdist(m_star[None], bank.double())[0].argsort()[:b]
    to_support = (x_rows[worst].double() - bank[support].double()).norm(dim=1)
    weight = 1 - math.exp(float(s_star)) / float(torch.exp(to_support).sum())
    return weight * float(s_star)


def test_patchcore_reweighted_score_is_the_papers_eq7(backbone):
    method = _fitted(backbone, image_score="reweighted", reweight_neighbours=5)
    batch = images(2, 1)
    scored = method.score(batch)
    features = method._features(batch)
    bank = method.model.bank
    for i in range(2):
        rows = features[i].permute(1, 2, 0).reshape(-1, features.shape[1])
        expected = _eq7(rows, bank, 5)
        assert float(scored.image_scores[i]) == pytest.approx(expected, rel=1e-4)
    _, patch = scored.cache
    assert (scored.image_scores < patch.amax(dim=(1, 2))).all()  # a weight below 1
    assert (scored.image_scores > 0).all()


@pytest.mark.parametrize("image_score", ["max_patch", "reweighted", "map_max"])
def test_patchcore_leave_one_out_scores_are_made_as_stream_scores(backbone, image_score):
    """Shot i's held-out score is what `score` gives it with shot i's patches out of the bank."""
    method = PatchCoreModule(backbone, feature_dim=20, image_score=image_score)
    shots = images(4, 0)
    method.collect(shots)
    method.fit_shots()
    features = method._features(shots)
    held_out = method._leave_one_out(features)
    for i in range(4):
        keep = method.model.origin != i
        alone = PatchCoreModule(backbone, feature_dim=20, image_score=image_score)
        alone._image_size = method._image_size
        alone.model.bank, alone.model.origin = method.model.bank[keep], method.model.origin[keep]
        expected = alone.score(shots[i : i + 1]).image_scores
        torch.testing.assert_close(held_out[i : i + 1], expected)
    assert float(method.acceptance.threshold) == pytest.approx(float(held_out.max()))


def test_patchcore_refuses_unknown_options_by_name(backbone):
    with pytest.raises(ValueError, match=re.escape("method.image_score")):
        PatchCoreModule(backbone, image_score="mean")
    with pytest.raises(ValueError, match=re.escape("method.coreset_projection")):
        PatchCoreModel(coreset_projection=0)


def test_sparse_random_projection_is_seeded_sparse_and_keeps_distances():
    a = sparse_random_projection(400, 128, seed=3)
    assert torch.equal(a, sparse_random_projection(400, 128, seed=3))
    assert not torch.equal(a, sparse_random_projection(400, 128, seed=4))
    assert 0.02 < float((a != 0).float().mean()) < 0.08  # density 1 / sqrt(400) = 0.05
    x = torch.randn(200, 400, generator=torch.Generator().manual_seed(0))
    ratio = torch.pdist(x @ a) / torch.pdist(x)
    assert abs(float(ratio.square().mean()) - 1.0) < 0.1  # squared distances kept on average


def test_greedy_coreset_with_projection_selects_on_projected_distances():
    x = torch.randn(300, 256, generator=torch.Generator().manual_seed(1))
    bank = torch.randn(20, 256, generator=torch.Generator().manual_seed(2))
    a = sparse_random_projection(256, 128, seed=5)
    for existing in (None, bank):
        picks = greedy_coreset(x, 0.2, existing, seed=5, projection=128)
        projected = None if existing is None else existing @ a
        expected = greedy_coreset(x @ a, 0.2, projected, seed=5)
        assert torch.equal(picks, expected)
    exact = greedy_coreset(x, 0.2, seed=5)
    assert not torch.equal(greedy_coreset(x, 0.2, seed=5, projection=128), exact)
    # At most `projection` dimensions: nothing to reduce, the exact selection.
    assert torch.equal(
        greedy_coreset(x[:, :100], 0.2, seed=5, projection=128),
        greedy_coreset(x[:, :100], 0.2, seed=5),
    )


def test_patchcore_fit_add_and_shrink_all_select_with_the_projection(monkeypatch):
    seen = []
    real = patchcore_torch.greedy_coreset

    def spy(*args, **kwargs):
        seen.append(kwargs.get("projection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(patchcore_torch, "greedy_coreset", spy)
    gen = torch.Generator().manual_seed(0)
    model = PatchCoreModel(coreset_ratio=0.5, max_bank=60, coreset_projection=16)
    model.fit(torch.randn(2, 32, 4, 4, generator=gen))  # 32 dims: projected to 16
    for _ in range(4):
        model.add(torch.randn(1, 32, 8, 8, generator=gen))
    assert len(seen) >= 6 and set(seen) == {16}  # fit, every add, the shrinks
    assert model.bank.shape[0] <= 60
    seen.clear()
    exact = PatchCoreModel(coreset_ratio=0.5, coreset_projection=None)
    exact.fit(torch.randn(2, 32, 4, 4, generator=gen))
    assert seen == [None]


# ----------------------------------------------------------------------------- SPADE


def test_spade_image_feature_is_the_pooled_final_stage_at_full_width():
    from foads.baselines.spade.lightning_model import SPADEModule

    backbone = random_backbone()
    method = SPADEModule(backbone, feature_dim=20)
    assert method.image_features == "last_stage"
    batch = images(2, 1)
    pooled, patches = method._features(batch)
    with torch.no_grad():
        maps = backbone(batch)
        expected = backbone.pool_last_stage(maps[-1])
    assert pooled.shape == (2, 512)  # ResNet18's layer4, all channels, not layer3's 256
    torch.testing.assert_close(pooled, expected, rtol=0, atol=0)
    assert patches.shape[1] == 20
    old = SPADEModule(backbone, feature_dim=20, image_features="layer3")
    torch.testing.assert_close(old._features(batch)[0], maps[-1].mean(dim=(2, 3)))
    with pytest.raises(ValueError, match=re.escape("method.image_features")):
        SPADEModule(backbone, image_features="layer4")
