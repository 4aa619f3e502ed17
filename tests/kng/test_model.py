"""KNGModel: fit, scoring and updates keep the exact statistics of what each node absorbed."""

import pytest
import torch

from foads.components.gaussian import group_stats
from foads.methods.kng.torch_model import KNGModel


def clustered(n, d=8, clusters=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 4
    return centres[torch.randint(0, clusters, (n,), generator=g)] + torch.randn(n, d, generator=g)


def test_fit_state_is_exact_and_finite():
    x = clustered(2000)
    model = KNGModel(num_nodes=40, epochs=4, age_max=25)
    model.fit(x)
    assert 2 <= model.current_nodes <= 40
    assert (model.counts >= 2).all()
    for t in (model.means, model.scatter, model.whiten, model.thresholds):
        assert torch.isfinite(t).all()
    assert model.edges.shape[0] > 0 and (model.edges[:, 0] < model.edges[:, 1]).all()
    assert (model.edge_ages <= 25).all()


def test_more_nodes_than_embeddings_is_a_clear_error():
    with pytest.raises(ValueError, match="num_nodes=50 is more than the 20 training embeddings"):
        KNGModel(num_nodes=50).fit(torch.randn(20, 4))


def test_updates_equal_stats_of_everything_absorbed():
    """Merging any number of batches equals computing on all absorbed embeddings at once."""
    shots = clustered(1500, seed=1)
    model = KNGModel(num_nodes=30, epochs=3, threshold_type="none")
    model.fit(shots)
    absorbed_x, absorbed_node = [], []
    base = (model.counts.clone(), model.means.clone(), model.scatter_matrices())
    for i, size in enumerate([1, 7, 300, 1, 450]):
        batch = clustered(size, seed=10 + i)
        assignment = model.assign(batch)
        accepted = model.update(batch, assignment)
        assert accepted.all()  # threshold none
        absorbed_x.append(batch)
        absorbed_node.append(assignment.s1)
    x = torch.cat(absorbed_x)
    node = torch.cat(absorbed_node)
    n_new, mean_new, scatter_new = group_stats(x, node, model.current_nodes)
    n0, mean0, scatter0 = base
    n = n0 + n_new
    mean = (n0[:, None] * mean0 + n_new[:, None] * mean_new) / n[:, None]
    # Direct scatter about the merged mean from the two groups' moments.
    second = scatter0 + n0[:, None, None] * mean0[:, :, None] * mean0[:, None, :]
    second += scatter_new + n_new[:, None, None] * mean_new[:, :, None] * mean_new[:, None, :]
    scatter = second - n[:, None, None] * mean[:, :, None] * mean[:, None, :]
    torch.testing.assert_close(model.counts, n, rtol=0, atol=0)
    torch.testing.assert_close(model.means, mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(model.scatter_matrices(), scatter, rtol=0, atol=1e-6)


def test_pseudo_labelling_skips_far_embeddings():
    shots = clustered(1500, seed=2)
    model = KNGModel(num_nodes=30, epochs=3)
    model.fit(shots)
    counts = model.counts.clone()
    far = torch.full((5, 8), 1e3)
    accepted = model.update(far)
    assert not accepted.any()
    assert torch.equal(model.counts, counts)
    near = model.means[:3].float()  # exactly on a node: inside its radius
    assert model.update(near).all()
    assert model.counts.sum() == counts.sum() + 3


def test_scores_rank_outliers_above_inliers_and_state_roundtrips():
    shots = clustered(1500, seed=3)
    model = KNGModel(num_nodes=30, epochs=3, covariance={"prior": 5.0})
    model.fit(shots)
    inliers = clustered(200, seed=3)
    outliers = clustered(200, seed=3) + 6.0
    assert model.score(inliers).median() < model.score(outliers).median()
    clone = KNGModel(num_nodes=30)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.score(outliers), model.score(outliers))
    assert clone.state_bytes() == model.state_bytes()


def test_given_labels_replace_the_pseudo_labels():
    shots = clustered(1500, seed=4)
    model = KNGModel(num_nodes=30, epochs=3)
    model.fit(shots)
    counts = model.counts.sum()
    batch = torch.cat([clustered(30, seed=5) + 50.0, clustered(70, seed=6)])  # 30 far away
    labels = torch.arange(100) < 30
    accepted = model.update(batch, labels=labels)
    assert torch.equal(accepted, labels)
    assert model.counts.sum() == counts + 30


@pytest.mark.parametrize("epochs", [0, -1, 2.5])
def test_epochs_below_one_is_refused_by_name(epochs):
    """N = 0 used to run one k-means round silently; the paper's ablation starts at N = 1."""
    with pytest.raises(ValueError, match=r"method\.epochs must be an integer >= 1"):
        KNGModel(num_nodes=10, epochs=epochs)


def test_one_epoch_is_one_kmeans_round():
    x = clustered(400)
    one, two = KNGModel(num_nodes=20, epochs=1), KNGModel(num_nodes=20, epochs=2)
    one.fit(x)
    two.fit(x)
    assert not torch.equal(one.means, two.means)  # the second round moved the centres


def test_a_state_saved_with_full_matrices_loads_into_the_packed_model():
    x = clustered(1500, seed=4)
    model = KNGModel(num_nodes=30, epochs=3)
    model.fit(x)
    old = dict(model.state_dict())  # as saved before packing: full d x d, plus the centres
    old["scatter"] = model.scatter_matrices()
    old["whiten"] = model.whitening_factors()
    old["centres"] = model.means.float()
    loaded = KNGModel(num_nodes=30, epochs=3)
    loaded.load_state_dict(old)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    torch.testing.assert_close(loaded.score(x[:50]), model.score(x[:50]), rtol=0, atol=0)
