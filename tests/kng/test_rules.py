"""K-NG's acceptance rules beyond the paper: the image gate, allowed patches, a growing graph."""

import copy
import re

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation
from torch import nn

from foads.components.anomaly_map import smooth_anomaly_map
from foads.methods.kng.lightning_model import KNGModule
from foads.methods.kng.torch_model import KNGModel

GRID = (4, 4)
SIZE = (16, 16)


def clustered(n, d=8, clusters=12, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=torch.Generator().manual_seed(99)) * 4
    x = centres[torch.randint(0, clusters, (n,), generator=g)] + torch.randn(n, d, generator=g)
    return x + shift


class Stub(nn.Module):
    """The embedder's backbone is never called here: embeddings go in directly."""

    channels = (4, 4)


def fitted_module(growth=None, **acceptance):
    module = KNGModule(
        Stub(), num_nodes=20, epochs=3, feature_dim=8, sigma=0.0, acceptance=acceptance,
        growth=growth,
    )  # fmt: skip
    per = GRID[0] * GRID[1]
    for i in range(2):  # two shot batches of 5 images
        module.collect_embeddings(clustered(5 * per, seed=i), GRID, SIZE)
    module.fit_shots()
    return module


def test_allowed_restricts_the_patch_rule():
    model = KNGModel(num_nodes=20, epochs=3, threshold_type="none")
    model.fit(clustered(800))
    counts = model.counts.sum()
    x = clustered(40, seed=5)
    allowed = torch.arange(40) < 15
    accepted = model.update(x, allowed=allowed)
    assert torch.equal(accepted, allowed)
    assert model.counts.sum() == counts + 15


def test_gate_is_the_largest_held_out_shot_score_times_the_margin():
    module = fitted_module(image_gate="shots", gate_folds=5, gate_margin=1.5)
    # Recompute by hand: shot i is in fold i % 5 and scored by K-NG fitted on the others.
    per = GRID[0] * GRID[1]
    shots = torch.cat([clustered(5 * per, seed=0), clustered(5 * per, seed=1)]).view(10, per, -1)
    expected = []
    for i in range(10):
        others = torch.tensor([j % 5 != i % 5 for j in range(10)])
        model = KNGModel(num_nodes=20, epochs=3)
        model.fit(shots[others].reshape(-1, 8))
        patch = model.score(shots[i]).view(1, *GRID)
        expected.append(smooth_anomaly_map(patch, SIZE, 0.0).amax())
    assert float(module.gate) == pytest.approx(1.5 * float(max(expected)), rel=1e-5)
    assert module.state_summary()["gate_threshold"] == pytest.approx(float(module.gate))


def test_gated_image_teaches_nothing_and_the_others_pass_the_patch_rule():
    module = fitted_module(image_gate="shots", threshold_type="none")
    per = GRID[0] * GRID[1]
    normal = clustered(3 * per, seed=7)
    defect = clustered(per, seed=8)
    defect[:3] += 40.0  # three far patches make that image's score large
    x = torch.cat([normal, defect])
    scored = module.score_embeddings(x, (4, *GRID), SIZE)
    assert (scored.image_scores[:3] < module.gate).all() and scored.image_scores[3] > module.gate
    counts = module.model.counts.sum()
    updated = module.update(None, scored)
    assert updated.accepted_images.tolist() == [True, True, True, False]
    assert updated.accepted[:3].all() and not updated.accepted[3].any()
    assert module.model.counts.sum() == counts + 3 * per


def test_the_oracle_ignores_the_gate():
    module = fitted_module(image_gate="shots", threshold_type="none")
    per = GRID[0] * GRID[1]
    x = clustered(2 * per, seed=9)
    x[per:] += 40.0
    scored = module.score_embeddings(x, (2, *GRID), SIZE)
    updated = module.update(None, scored, learn=torch.tensor([False, True]))
    assert not updated.accepted[0].any() and updated.accepted[1].all()


def test_gate_needs_two_folds():
    with pytest.raises(ValueError, match="gate_folds=1 and 10 shots give 1 fold"):
        fitted_module(image_gate="shots", gate_folds=1)


def test_gate_and_growth_survive_a_checkpoint():
    module = fitted_module(
        image_gate="shots", growth={"max_nodes": 30, "scale": 1.0, "min_count": 5}
    )
    module.update(None, module.score_embeddings(clustered(64, shift=30.0), (4, *GRID), SIZE))
    fresh = fitted_module()
    fresh.load_stream_state(copy.deepcopy(module.stream_state()))
    x = clustered(32, seed=11)
    torch.testing.assert_close(
        fresh.score_embeddings(x, (2, *GRID), SIZE).anomaly_maps,
        module.score_embeddings(x, (2, *GRID), SIZE).anomaly_maps,
    )
    assert float(fresh.gate) == float(module.gate)


# ------------------------------------------------------------------ growing graph
def grown_model(**growth):
    model = KNGModel(
        num_nodes=20, epochs=3, threshold_type="none", covariance={"prior": 5.0}, growth=growth
    )
    model.fit(clustered(800))
    return model


def test_far_accepted_embeddings_seed_new_nodes_with_their_exact_statistics():
    model = grown_model(max_nodes=26, scale=2.0, min_count=10)
    k0 = model.current_nodes
    new_region = clustered(60, seed=3, clusters=2, shift=60.0)
    before = model.score(new_region).mean()
    accepted = model.update(new_region)
    assert accepted.all()
    added = model.current_nodes - k0
    assert 1 <= added <= 6 and model.growth_summary()["nodes_grown"] == added
    # Every far embedding went into a new node: their counts and means add up exactly.
    new_counts = model.counts[k0:]
    assert int(new_counts.sum()) == 60
    torch.testing.assert_close(
        (model.means[k0:] * new_counts[:, None]).sum(0),
        new_region.double().sum(0),
        rtol=1e-9,
        atol=1e-6,
    )
    assert model.score(new_region).mean() < 0.5 * before
    for t in (model.means, model.scatter, model.whiten):  # thresholds: inf (rule none)
        assert torch.isfinite(t).all()
    assert model.whiten.shape[0] == model.current_nodes == model.thresholds.shape[0]


def test_growth_never_passes_max_nodes():
    model = grown_model(max_nodes=23, scale=2.0, min_count=5)
    for seed in range(4):
        model.update(clustered(200, seed=seed, clusters=8, shift=60.0 * (seed + 1)))
        assert model.current_nodes <= 23
    assert model.current_nodes == 23


def test_near_embeddings_do_not_grow_the_graph():
    model = grown_model(max_nodes=40, scale=3.0, min_count=5)
    k0 = model.current_nodes
    model.update(clustered(300, seed=4))
    assert model.current_nodes == k0


def test_idle_nodes_are_removed_and_the_graph_stays_consistent():
    model = grown_model(max_nodes=20, remove_after=2)
    k0 = model.current_nodes
    busy = model.means[:3].float()  # lands on three nodes only
    for _ in range(2):
        model.update(busy.repeat(4, 1))
    assert model.current_nodes == 3
    assert model.growth_summary()["nodes_removed"] == k0 - 3
    assert model.edges.numel() == 0 or int(model.edges.max()) < 3
    assert model.last_win.shape[0] == model.counts.shape[0] == 3
    clone = KNGModel(num_nodes=20, threshold_type="none", covariance={"prior": 5.0})
    clone.load_state_dict(model.state_dict())
    x = clustered(50, seed=6)
    torch.testing.assert_close(clone.score(x), model.score(x))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"scale": 2.0}, "needs method.growth.max_nodes"),
        ({"max_nodes": 10}, "method.growth.max_nodes=10 is below num_nodes=20"),
        ({"max_nodes": 30, "scale": 2.0, "min_count": 1}, "method.growth.min_count"),
        ({"max_nodes": 30, "remove_after": 0}, "method.growth.remove_after"),
    ],
)
def test_growth_options_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        KNGModel(num_nodes=20, growth=kw)


def test_stream_gate_learns_from_the_lowest_scoring_share_of_recent_images():
    module = fitted_module(
        image_gate="stream", gate_quantile=0.5, gate_window=8, threshold_type="none"
    )
    per = GRID[0] * GRID[1]
    x = clustered(4 * per, seed=12)
    for i in range(4):
        x[i * per : i * per + 2] += 10.0 * (i + 1)  # image scores rise with i
    scored = module.score_embeddings(x, (4, *GRID), SIZE)
    assert torch.equal(scored.image_scores.argsort(), torch.arange(4))
    updated = module.update(None, scored)
    # The median of the window (these four) lets the two lowest through.
    assert updated.accepted_images.tolist() == [True, True, False, False]
    quantile = torch.quantile(scored.image_scores.double(), 0.5)
    assert float(module.gate) == pytest.approx(float(quantile), rel=1e-6)
    # The window keeps the last gate_window scores only, and travels with the state.
    for _ in range(3):
        module.update(None, module.score_embeddings(x, (4, *GRID), SIZE))
    assert module.stream_state()["recent_scores"].shape == (8,)


def test_image_patch_gate_cuts_local_peaks_and_their_neighbours():
    module = fitted_module(
        patch_gate="image", patch_gate_k=3.0, reject_dilation=1, threshold_type="none"
    )
    per = GRID[0] * GRID[1]
    x = clustered(2 * per, seed=13)
    x[per + 5] += 40.0  # one far patch of image 1, at grid (1, 1)
    scored = module.score_embeddings(x, (2, *GRID), SIZE)
    updated = module.update(None, scored)
    # By hand: per image, median + 3 x 1.4826 MAD of its own patch scores, then a 3 x 3
    # dilation of what lies above.
    patch = scored.cache[2].double().numpy()
    for i in range(2):
        p = patch[i]
        limit = np.median(p) + 3.0 * 1.4826 * np.median(np.abs(p - np.median(p)))
        expected = binary_dilation(p > limit, structure=np.ones((3, 3), bool))
        assert np.array_equal(~updated.accepted[i].numpy(), expected)
    assert (~updated.accepted[1])[0:3, 0:3].all()  # the peak at (1, 1) and its neighbours


def test_a_patch_gate_from_the_shots_rejects_patches_scoring_above_their_quantile():
    module = fitted_module(patch_gate="shots", patch_gate_quantile=1.0, threshold_type="none")
    per = GRID[0] * GRID[1]
    x = clustered(per, seed=14)
    x[3] += 40.0
    scored = module.score_embeddings(x, (1, *GRID), SIZE)
    limit = float(module.patch_limit)
    assert module.state_summary()["patch_gate_threshold"] == pytest.approx(limit)
    updated = module.update(None, scored)
    assert torch.equal(updated.accepted[0], scored.cache[2][0] <= limit)
    assert not updated.accepted[0].flatten()[3]


def test_shrinkage_keeps_a_fixed_share_of_the_shot_covariance():
    x = clustered(800)
    plain = KNGModel(num_nodes=20, epochs=3)
    plain.fit(x)
    shrunk = KNGModel(num_nodes=20, epochs=3, covariance={"shrinkage": 0.5})
    shrunk.fit(x)

    def cov(m):
        w = m.whitening_factors().double()
        return torch.linalg.inv(w.transpose(1, 2) @ w)

    eye = 0.01 * torch.eye(8, dtype=torch.float64)
    expected = 0.5 * (cov(plain) - eye) + 0.5 * plain.prior + eye
    torch.testing.assert_close(cov(shrunk), expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match=re.escape("method.covariance.shrinkage must lie in")):
        KNGModel(covariance={"shrinkage": 1.5})


def test_position_weight_appends_each_patchs_grid_position():
    from foads.methods.kng.lightning_model import grid_positions

    class Embedder(torch.nn.Module):
        def forward(self, images):
            return images[:, :3].clone()

    module = KNGModule(Stub(), num_nodes=4, feature_dim=3, position_weight=2.0)
    module.embedder = Embedder()
    images = torch.randn(2, 3, 2, 3)
    x, shape = module._embed(images)
    assert shape == (2, 2, 3) and x.shape == (12, 5)
    assert torch.equal(x[:, :3], images.permute(0, 2, 3, 1).reshape(-1, 3))
    # Image 1, row 1, column 2 is row 6 + 3 + 2 = 11: position (1, 2) x 2.
    assert x[11, 3:].tolist() == [2.0, 4.0]
    assert torch.equal(x[:6, 3:], x[6:, 3:])
    assert grid_positions(1, 2, 3, x)[4].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="position_weight"):
        KNGModule(Stub(), num_nodes=4, feature_dim=3, position_weight=-1.0)
