"""PaDiM, SPADE and PatchCore under the same protocol, offline and online."""

import json

import pytest
import torch

from foads.baselines.padim.lightning_model import PaDiMModule
from foads.baselines.padim.torch_model import PaDiMModel
from foads.baselines.patchcore.lightning_model import PatchCoreModule
from foads.baselines.spade.lightning_model import SPADEModule
from foads.components.coreset import greedy_coreset
from foads.features.backbones import build_backbone
from foads.outputs.checkpoint import read_checkpoint
from foads.protocol.method import Scored
from foads.run import run

METHODS = ["padim", "spade", "patchcore"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["offline", "online"])
def test_method_ranks_defects_above_good_images(make_cfg, tmp_path, method, mode):
    summary = run(make_cfg(f"method={method}", "dataset.category=gravel", f"mode={mode}"))
    # Clearly drawn synthetic defects (tests/conftest.py): seen 1.0 for all three.
    assert summary["image_auroc"] > 0.85 and summary["stream_image_auroc"] > 0.85
    assert summary["pixel_auroc"] > 0.9
    assert summary["method"] == method and summary["initial_parameters"] > 0
    grew = summary["model_state_bytes"] > summary["model_state_bytes_start"]
    assert summary["state_grew"] == grew
    if mode == "offline" or method == "padim":
        assert not grew  # PaDiM's state has a fixed size; offline never learns
    else:
        assert grew  # memory banks grow with every accepted image
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["categories"]["gravel"]["gate_threshold"] > 0


def random_backbone():
    torch.manual_seed(0)
    return build_backbone("resnet18", pretrained=False)


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 64, 64, generator=g)


def test_padim_incremental_update_equals_refitting_on_all_accepted_images():
    x = torch.randn(14, 6, 4, 5, dtype=torch.float64)
    online = PaDiMModel()
    online.fit(x[:5])
    online.update(x[5:6])  # one image
    online.update(x[6:14])
    refit = PaDiMModel()
    refit.fit(x)
    torch.testing.assert_close(online.counts, refit.counts, rtol=0, atol=0)
    torch.testing.assert_close(online.means, refit.means, rtol=0, atol=1e-9)
    torch.testing.assert_close(online.scatter, refit.scatter, rtol=0, atol=1e-9)
    torch.testing.assert_close(online.score(x[:2].float()), refit.score(x[:2].float()))


@pytest.mark.parametrize("cls", [SPADEModule, PatchCoreModule, PaDiMModule])
def test_memory_grows_only_when_images_are_accepted(cls):
    method = cls(random_backbone(), feature_dim=20)
    method.collect(images(4, 0))
    method.fit_shots()
    start = method.state_bytes()
    counts = method.state_elements()
    batch = images(3, 1)
    scored = method.score(batch)
    method.update(batch, scored, learn=torch.zeros(3, dtype=torch.bool))
    assert method.state_bytes() == start and method.state_elements() == counts
    method.update(batch, scored, learn=torch.tensor([True, False, True]))
    if cls is PaDiMModule:
        assert method.state_bytes() == start
        assert int(method.model.counts[0]) == 4 + 2
    else:
        assert method.state_bytes() > start


def test_gate_rejects_images_scoring_above_the_shot_threshold():
    method = PatchCoreModule(random_backbone(), feature_dim=20)
    method.collect(images(4, 0))
    method.fit_shots()
    batch = images(2, 1)
    scored = method.score(batch)
    method.acceptance.threshold = (scored.image_scores[0] + scored.image_scores[1]) / 2
    updated = method.update(batch, scored)
    expected = scored.image_scores < method.acceptance.threshold
    assert torch.equal(updated.accepted_images, expected) and expected.sum() == 1


def test_online_threshold_and_learning_use_no_labels(make_cfg, tmp_path, monkeypatch):
    """The same images with every label flipped: identical gate, decisions and final state."""
    from foads.data import mvtec

    original = mvtec.MVTecAD._read

    def flipped(self, category):
        data = original(self, category)
        for part in ("train", "test"):
            flip = [
                type(s)(s.path, 1 - s.label, s.mask_path, s.defect_type)
                for s in getattr(data, part)
            ]
            setattr(data, part, flip)
        return data

    results = []
    for flip in (False, True):
        if flip:
            monkeypatch.setattr(mvtec.MVTecAD, "_read", flipped)
        out = tmp_path / f"run{int(flip)}"
        summary = run(make_cfg("method=padim", "dataset.category=gravel", "mode=online", out=out))
        state = read_checkpoint(out / "checkpoint.pt")["state"]
        results.append((summary, state))
    (a, state_a), (b, state_b) = results
    assert (
        a["categories"]["gravel"]["gate_threshold"] == b["categories"]["gravel"]["gate_threshold"]
    )
    assert a["accepted_fraction"] == b["accepted_fraction"]
    for key in state_a["model"]:
        torch.testing.assert_close(state_a["model"][key], state_b["model"][key], rtol=0, atol=0)
    # The labels did change what the evaluator measured.
    assert a["image_auroc"] != b["image_auroc"]


def test_greedy_coreset_picks_the_farthest_points():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 5.0]])
    picks = greedy_coreset(x, 0.75, existing=torch.tensor([[0.0, 0.0]]))
    assert picks.tolist() == [2, 3, 1]
    assert greedy_coreset(x, 0.5).numel() == 2


def test_scored_cache_is_what_update_uses():
    method = SPADEModule(random_backbone(), feature_dim=20)
    method.collect(images(3, 0))
    method.fit_shots()
    scored = method.score(images(2, 1))
    assert isinstance(scored, Scored) and scored.anomaly_maps.shape == (2, 64, 64)


def test_a_baseline_checkpoint_continues_the_stream_exactly(make_cfg, tmp_path):
    base = ["method=patchcore", "dataset.category=gravel", "mode=online"]
    run(make_cfg(*base, out=tmp_path / "full"))
    run(make_cfg(*base, "protocol.max_stream_images=8", out=tmp_path / "a"))
    run(make_cfg(*base, f"ckpt_path={tmp_path / 'a' / 'checkpoint.pt'}", out=tmp_path / "b"))
    full = read_checkpoint(tmp_path / "full" / "checkpoint.pt")["state"]
    resumed = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["state"]
    assert resumed["model"]["bank"].shape[0] > 0
    for key in full["model"]:
        torch.testing.assert_close(full["model"][key], resumed["model"][key], rtol=0, atol=0)
    assert torch.equal(full["threshold"], resumed["threshold"])
