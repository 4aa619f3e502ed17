"""The shared acceptance rules (components/acceptance.py) and the fair gate in every method."""

import re

import pytest
import torch

from conftest import compose_config
from foads.baselines.draem.lightning_model import DRAEMModule
from foads.baselines.padim.lightning_model import PaDiMModule
from foads.baselines.patchcore.lightning_model import PatchCoreModule
from foads.baselines.spade.lightning_model import SPADEModule
from foads.components.acceptance import (
    StreamGate,
    image_patch_limits,
    rejected_patches,
)
from foads.features.backbones import build_backbone
from foads.protocol.method import Scored
from foads.registry import methods

FAIR = {"image_gate": "stream", "gate_quantile": 0.5, "gate_window": 4, "patch_gate": "image"}


def random_backbone():
    torch.manual_seed(0)
    return build_backbone("resnet18", pretrained=False)


def images(n, seed):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_stream_gate_follows_the_window_of_recent_scores():
    gate = StreamGate(window=4, quantile=0.5)
    keep = gate(torch.tensor([1.0, 2.0, 3.0]))
    assert gate.threshold == 2.0 and keep.tolist() == [True, False, False]
    keep = gate(torch.tensor([10.0, 11.0]))  # window: 2, 3, 10, 11 -> median 6.5
    assert gate.threshold == 6.5 and keep.tolist() == [False, False]
    # a model whose scores fall keeps learning from the lower half of what it sees now
    keep = gate(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert gate.threshold == pytest.approx(0.25) and keep.tolist() == [True, True, False, False]
    state = gate.state()
    other = StreamGate(4, 0.5)
    other.load_state(state)
    assert torch.equal(other.recent, gate.recent) and other.threshold == gate.threshold


def test_image_patch_limit_cuts_a_local_peak_but_not_a_uniform_shift():
    scores = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    scores[0, 2:4, 2:4] += 5.0  # a defect
    scores[1] += 5.0  # novel all over
    rejected = rejected_patches(scores, image_patch_limits(scores, 3.0))
    assert rejected[0, 2:4, 2:4].all() and rejected[0].sum() == 4
    assert not rejected[1].any()
    grown = rejected_patches(scores, image_patch_limits(scores, 3.0), dilation=1)
    assert grown[0].sum() == 16 and grown[0, 1:5, 1:5].all()


def with_defect(method, batch, cell=(1, 1)):
    """Score the batch, then make images 0 and 1 flat, image 0's patch `cell` a sharp local
    peak, and image 3 score highest."""
    scored = method.score(batch)
    features, patch = scored.cache
    patch = patch.clone()
    patch[:2] = patch[0].median()
    patch[0][cell] = patch.max() * 10
    image_scores = torch.tensor([1.0, 2.0, 3.0, 9.0])
    return Scored(scored.anomaly_maps, image_scores, cache=(features, patch))


@pytest.mark.parametrize("cls", [PaDiMModule, SPADEModule, PatchCoreModule])
def test_fair_gate_learns_the_lower_half_and_never_the_rejected_patch(cls):
    method = cls(random_backbone(), feature_dim=20, acceptance=FAIR)
    method.collect(images(4, 0))
    method.fit_shots()
    assert not torch.isfinite(
        method.acceptance.threshold
    )  # no shots threshold under the stream gate
    batch = images(4, 1)
    scored = with_defect(method, batch)
    before = method.state_elements()
    updated = method.update(batch, scored)
    assert updated.accepted_images.tolist() == [True, True, False, False]
    assert method.decision_threshold() == pytest.approx(2.5)
    accepted = updated.accepted
    assert not accepted[0, 1, 1] and accepted[0].sum() == accepted[0].numel() - 1
    assert accepted[1].all() and not accepted[2:].any()
    h, w = accepted.shape[-2:]
    if cls is PaDiMModule:  # the defect's position learned one image fewer
        counts = method.model.counts.view(h, w)
        assert counts[1, 1] == 4 + 1 and counts[0, 0] == 4 + 2
    elif cls is SPADEModule:
        assert method.model.valid.shape == (6, h * w)
        assert not method.model.valid[4, 1 * w + 1] and method.model.valid[4].sum() == h * w - 1
        assert method.model.valid[5].all()
    else:
        assert method.state_elements() > before
    # the oracle (ground truth) overrides both gates
    updated = method.update(batch, scored, learn=torch.tensor([True, False, False, True]))
    assert updated.accepted[0].all() and updated.accepted[3].all()


def test_patchcore_fair_gate_keeps_the_defect_out_of_the_bank():
    """Unguarded, the online coreset takes the farthest new patch (the defect) first."""
    banks = {}
    for gate in ("paper", "fair"):
        options = FAIR if gate == "fair" else {"image_gate": None}
        method = PatchCoreModule(random_backbone(), feature_dim=20, acceptance=options)
        method.collect(images(4, 0))
        method.fit_shots()
        batch = images(4, 1)
        batch[0, :, 16:32, 16:32] = 8.0  # a saturated square on image 0
        scored = method.score(batch)
        features = scored.cache[0]
        defect = features[0, :, 5, 5]  # a layer-2 grid cell inside the square
        method.update(batch, scored)
        banks[gate] = (method.model.bank - defect).norm(dim=1).min()
    assert banks["paper"] == 0  # learned, verbatim
    assert banks["fair"] > 0


def test_draem_fair_gate_masks_rejected_cells_out_of_the_loss():
    method = DRAEMModule(
        reconstructive_width=4,
        discriminative_width=4,
        image_size=64,
        train_steps=2,
        batch_size=2,
        update_steps=1,
        acceptance=FAIR,
    )
    method.collect(images(4, 0))
    method.fit_shots()
    batch = images(4, 1)
    scored = method.score(batch)
    x, probability = scored.cache
    probability = probability.clone()
    probability[:2] = 0.01
    probability[0, 8:16, 8:16] = 0.99  # one 8 x 8 cell
    seen = {}
    original = method._train

    def spy(normals, steps, optimizer, scheduler=None, weights=None):
        seen["weights"], seen["n"] = weights, normals.shape[0]
        return original(normals, steps, optimizer, scheduler, weights)

    method._train = spy
    scored = Scored(scored.anomaly_maps, torch.tensor([1.0, 2.0, 3.0, 9.0]), cache=(x, probability))
    updated = method.update(batch, scored)
    assert updated.accepted_images.tolist() == [True, True, False, False]
    assert updated.accepted.shape == (4, 8, 8) and not updated.accepted[0, 1, 1]
    w = seen["weights"]
    assert seen["n"] == 2 and w.shape == (2, 1, 64, 64)
    assert (w[0, 0, 8:16, 8:16] == 0).all() and w[0].sum() == 64 * 64 - 64 and w[1].all()


def test_draem_weighted_loss_equals_the_published_one_with_all_weights_one():
    from foads.baselines.draem.torch_model import DRAEMModel

    torch.manual_seed(0)
    model = DRAEMModel(4, 4)
    clean = torch.rand(2, 3, 64, 64)
    augmented = clean.clone()
    augmented[:, :, 10:20, 10:20] = 1.0
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:20, 10:20] = 1.0
    plain = model.loss(augmented, clean, mask)
    weighted = model.loss(augmented, clean, mask, torch.ones(2, 1, 64, 64))
    torch.testing.assert_close(plain, weighted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", methods())
def test_gate_groups_set_the_same_rule_for_every_method(method):
    fair = compose_config([f"method={method}", "gate=fair"]).method.acceptance
    assert (fair.image_gate, fair.gate_quantile, fair.gate_window) == ("stream", 0.5, 20)
    assert (fair.patch_gate, fair.patch_gate_k) == ("image", 3.0)
    median = compose_config([f"method={method}", "variant=online_fair_median"])
    assert median.mode == "online"
    gate = median.method.acceptance
    assert (gate.image_gate, gate.gate_quantile) == ("stream", 0.5)
    assert (gate.patch_gate, gate.patch_gate_quantile) == ("batch", 0.5)
    paper = compose_config([f"method={method}", "gate=paper"]).method.acceptance
    assert (paper.image_gate, paper.gate_quantile, paper.patch_gate) == ("paper", 1.0, None)
    own = compose_config([f"method={method}"]).method.acceptance
    expected = {"kng": "stream", "kng_paper": None}.get(method, "paper")
    assert own.image_gate == expected


def test_paper_image_gate_means_each_methods_published_rule():
    from foads.methods.kng.lightning_model import KNGModule

    paper = {"image_gate": "paper"}
    kng = KNGModule(random_backbone(), num_nodes=4, epochs=1, feature_dim=8, acceptance=paper)
    padim = PaDiMModule(random_backbone(), feature_dim=8, acceptance=paper)
    draem = DRAEMModule(reconstructive_width=4, discriminative_width=4, acceptance=paper)
    gates = (kng.image_gate, padim.acceptance.image_gate, draem.acceptance.image_gate)
    assert gates == (None, "shots", "shots")
    with pytest.raises(ValueError, match=re.escape("method.acceptance.patch_gate")):
        PaDiMModule(random_backbone(), feature_dim=8, acceptance={"patch_gate": "shots"})
    with pytest.raises(ValueError, match=re.escape("method.acceptance.gate_window")):
        SPADEModule(random_backbone(), feature_dim=8, acceptance={"gate_window": 0})
    # K-NG's own options are not the baselines'; flat keys of older configs name the new ones
    with pytest.raises(
        TypeError, match=re.escape("padim has no option method.acceptance.gate_folds")
    ):
        PaDiMModule(random_backbone(), feature_dim=8, acceptance={"gate_folds": 5})
    with pytest.raises(
        TypeError, match=re.escape("method.gate_window -> method.acceptance.gate_window")
    ):
        SPADEModule(random_backbone(), feature_dim=8, gate_window=20)
    with pytest.raises(TypeError, match=re.escape("method.eps -> method.covariance.eps")):
        PaDiMModule(random_backbone(), feature_dim=8, eps=0.1)


FAINT = [
    "dataset.category=gravel",
    "dataset.num_test_good=8",
    "dataset.num_test_defect=12",
    "dataset.defect_strength=[0.35,0.5]",
    "mode=online",
]


def test_fair_gate_keeps_faint_defects_out_of_padim_where_the_published_gate_does_not(
    make_cfg, tmp_path
):
    """The published gate's threshold (the shots' largest leave-one-out score) lets a faint
    defect through, and PaDiM then learns it; the fair gate learns from the lower half of
    the recent images only, and from those not the patches that stand out."""
    from foads.run import run

    out = {}
    for gate in ("paper", "fair"):
        s = run(make_cfg("method=padim", f"gate={gate}", *FAINT, out=tmp_path / gate))
        out[gate] = s["categories"]["gravel"]
    paper, fair = out["paper"], out["fair"]
    assert paper["absorbed_anomalous_fraction"] > 0.5
    assert fair["absorbed_anomalous_fraction"] < 0.5 * paper["absorbed_anomalous_fraction"]
    assert fair["accepted_fraction"] < paper["accepted_fraction"]


def test_padim_covariance_shrinkage_keeps_a_share_of_the_shots_covariance():
    from foads.baselines.padim.torch_model import PaDiMModel

    x = torch.randn(12, 5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain, shrunk = PaDiMModel(eps=0.01), PaDiMModel(eps=0.01, covariance_shrinkage=0.5)
    plain.fit(x)
    shrunk.fit(x)
    rows = x.permute(0, 2, 3, 1).reshape(-1, 5)
    prior = torch.cov(rows.T)
    torch.testing.assert_close(shrunk.prior, prior)
    w = shrunk.whitening_factors()[0].double()
    cov = torch.linalg.inv(w.T @ w)
    expected = (
        0.5 * shrunk.scatter_matrices()[0] / 11
        + 0.5 * prior
        + 0.01 * torch.eye(5, dtype=torch.float64)
    )
    torch.testing.assert_close(cov, expected, rtol=1e-4, atol=1e-5)
    assert plain.prior.numel() == 0
    # the state round-trips (resume) either way
    for model in (plain, shrunk):
        other = PaDiMModel(eps=0.01, covariance_shrinkage=model.covariance_shrinkage)
        other.load_state_dict(model.state_dict())
        torch.testing.assert_close(other.score(x[:2].float()), model.score(x[:2].float()))
    with pytest.raises(ValueError, match=re.escape("method.covariance.shrinkage")):
        PaDiMModel(covariance_shrinkage=1.5)
    with pytest.raises(ValueError, match=re.escape("method.covariance.shrinkage")):
        PaDiMModule(random_backbone(), feature_dim=8, covariance={"shrinkage": 1.5})
