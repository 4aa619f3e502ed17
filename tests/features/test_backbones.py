"""Tests for the backbones (weights really loaded, clear errors) and the patch embedder."""

import re
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from torchvision.transforms.v2 import functional as TF

from foads.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneWeightsError,
    PatchEmbedder,
    build_backbone,
    build_classifier,
    torchvision_weights_path,
)

IMAGENET_CATS = range(281, 286)
EXPECTED_CHANNELS = {
    "resnet18": (64, 128, 256),
    "wide_resnet50_2": (256, 512, 1024),
    "efficientnet_lite0": (24, 40, 112),
}


def _imagenet_tensor(image: np.ndarray) -> torch.Tensor:
    """The protocol's preprocessing (docs/protocol.md): resize 256, crop 224, ImageNet mean/std."""
    x = torch.from_numpy(image).permute(2, 0, 1)
    x = TF.center_crop(TF.resize(x, [256], antialias=True), [224, 224])
    x = TF.to_dtype(x, torch.float32, scale=True)
    return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))[None]


@pytest.fixture(scope="module")
def random_resnet18():
    torch.manual_seed(0)
    return build_backbone("resnet18", pretrained=False)


def test_efficientnet_lite0_weights_classify_chelsea_as_a_cat():
    classifier = build_classifier("efficientnet_lite0")
    with torch.no_grad():
        probs = classifier(_imagenet_tensor(data.chelsea())).softmax(dim=1)[0]
    assert int(probs.argmax()) in IMAGENET_CATS
    assert float(probs[281:286].sum()) > 0.8


def test_efficientnet_lite0_pretrained_backbone_shapes():
    backbone = build_backbone("efficientnet_lite0")
    assert not backbone.training
    with torch.no_grad():
        maps = backbone(_imagenet_tensor(data.chelsea()))
    assert [tuple(m.shape) for m in maps] == [(1, 24, 56, 56), (1, 40, 28, 28), (1, 112, 14, 14)]


@pytest.mark.parametrize(
    "name,size", [("resnet18", 224), ("efficientnet_lite0", 224), ("wide_resnet50_2", 64)]
)
def test_random_backbones_give_three_maps_at_strides_4_8_16(name, size):
    backbone = build_backbone(name, pretrained=False)
    assert backbone.channels == EXPECTED_CHANNELS[name]
    assert backbone.strides == (4, 8, 16)
    with torch.no_grad():
        maps = backbone(torch.randn(2, 3, size, size))
    expected = [
        (2, c, size // s, size // s)
        for c, s in zip(backbone.channels, backbone.strides, strict=True)
    ]
    assert [tuple(m.shape) for m in maps] == expected


def test_missing_torchvision_weights_fail_loudly_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    # Simulate no network below torch.hub, so the real download attempt runs and fails.
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    path = torchvision_weights_path("resnet18")
    assert path.startswith(str(tmp_path))
    with pytest.raises(BackboneWeightsError) as info:
        build_backbone("resnet18")
    message = str(info.value)
    assert path in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "efficientnet_lite0" in message


def test_cached_torchvision_weights_are_loaded(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = build_classifier("resnet18", pretrained=False)
    path = torchvision_weights_path("resnet18")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert torch.equal(build_classifier("resnet18").conv1.weight, reference.conv1.weight)
    backbone = build_backbone("resnet18")
    loaded = backbone.body.get_submodule("layer3.0.conv1").weight
    assert torch.equal(loaded, reference.layer3[0].conv1.weight)


def test_unknown_backbone_name():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_backbone("vgg16")


def test_patch_embedder_shapes_and_frozen(random_resnet18):
    embedder = PatchEmbedder(random_resnet18, feature_dim=100, seed=0)
    assert embedder(torch.randn(2, 3, 224, 224)).shape == (2, 100, 56, 56)
    assert all(not p.requires_grad for p in embedder.parameters())
    embedder.train()
    assert not embedder.training
    assert not any(m.training for m in embedder.modules())
    assert "channel_index" in embedder.state_dict()


def test_patch_embedder_feature_size_option(random_resnet18):
    embedder = PatchEmbedder(random_resnet18, feature_dim=None, feature_size=64)
    assert embedder(torch.randn(1, 3, 224, 224)).shape == (1, 448, 64, 64)


def test_patch_embedder_equals_resize_concat_then_select(random_resnet18):
    embedder = PatchEmbedder(random_resnet18, feature_dim=100, seed=3)
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        maps = random_resnet18(images)
        full = torch.cat(
            [F.interpolate(m, size=(24, 24), mode="bilinear", align_corners=False) for m in maps],
            dim=1,
        )
    torch.testing.assert_close(embedder(images), full[:, embedder.channel_index])


def test_patch_embedder_aggregation_is_a_neighbourhood_mean_at_each_maps_resolution(
    random_resnet18,
):
    embedder = PatchEmbedder(random_resnet18, feature_dim=None, seed=0, aggregation=3)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = random_resnet18(images)
    first = maps[0]  # stride 4: 16 x 16, the embedding grid itself, so no resizing
    out = embedder(images)[:, : first.shape[1]]
    # interior: the plain mean of the 3 x 3 block around (5, 7)
    torch.testing.assert_close(out[0, :, 5, 7], first[0, :, 4:7, 6:9].mean(dim=(1, 2)))
    # corner: the edge row and column count twice (replicated), the corner four times
    c = first[0]
    corner = (4 * c[:, 0, 0] + 2 * c[:, 0, 1] + 2 * c[:, 1, 0] + c[:, 1, 1]) / 9
    torch.testing.assert_close(out[0, :, 0, 0], corner)
    assert not torch.allclose(out, PatchEmbedder(random_resnet18, None)(images)[:, : c.shape[0]])
    with pytest.raises(ValueError, match="aggregation"):
        PatchEmbedder(random_resnet18, aggregation=2)


def test_channel_subset_depends_only_on_seed(random_resnet18):
    first = PatchEmbedder(random_resnet18, seed=0).channel_index
    again = PatchEmbedder(random_resnet18, seed=0).channel_index
    other = PatchEmbedder(random_resnet18, seed=1).channel_index
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.numel() == 100 and bool((first.diff() > 0).all()) and int(first.max()) < 448


def test_feature_dim_larger_than_channels_raises(random_resnet18):
    with pytest.raises(ValueError, match=r"feature_dim=500.*448"):
        PatchEmbedder(random_resnet18, feature_dim=500)


def _padim_embedding_concat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PaDiM's released embedding_concat (xiahaifeng1995/PaDiM-Anomaly-Detection-Localization-
    master, main.py), verbatim but for the device: y's cells spread over x's grid by unfold/fold."""
    B, C1, H1, W1 = x.size()
    _, C2, H2, W2 = y.size()
    s = int(H1 / H2)
    x = F.unfold(x, kernel_size=s, dilation=1, stride=s)
    x = x.view(B, C1, -1, H2, W2)
    z = torch.zeros(B, C1 + C2, x.size(2), H2, W2)
    for i in range(x.size(2)):
        z[:, :, i, :, :] = torch.cat((x[:, :, i, :, :], y), 1)
    z = z.view(B, -1, H2 * W2)
    return F.fold(z, kernel_size=s, output_size=(H1, W1), stride=s)


def test_nearest_upsampling_equals_padims_embedding_concat(random_resnet18):
    from foads.baselines.padim.lightning_model import PaDiMModule

    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        layer1, layer2, layer3 = random_resnet18(images)
    padim = _padim_embedding_concat(_padim_embedding_concat(layer1, layer2), layer3)
    nearest = PatchEmbedder(random_resnet18, feature_dim=100, seed=3, upsample="nearest")
    torch.testing.assert_close(nearest(images), padim[:, nearest.channel_index], rtol=0, atol=0)
    # PaDiM's default is the copy; the bilinear resize (the former default, K-NG's) is not it.
    assert PaDiMModule(random_resnet18).embedder.upsample == "nearest"
    bilinear = PatchEmbedder(random_resnet18, feature_dim=100, seed=3)
    assert bilinear.upsample == "bilinear"
    assert not torch.allclose(bilinear(images), padim[:, bilinear.channel_index])
    with pytest.raises(ValueError, match=re.escape("method.upsample")):
        PatchEmbedder(random_resnet18, upsample="bicubic")


LAST_STAGE_CHANNELS = {"resnet18": 512, "wide_resnet50_2": 2048, "efficientnet_lite0": 1280}


@pytest.mark.parametrize(
    "name,size", [("resnet18", 96), ("efficientnet_lite0", 96), ("wide_resnet50_2", 64)]
)
def test_last_stage_pooled_vector_is_an_optional_fourth_output(name, size):
    torch.manual_seed(0)
    backbone = build_backbone(name, pretrained=False)
    images = torch.randn(2, 3, size, size)
    before = sum(p.numel() for p in backbone.parameters())
    with torch.no_grad():
        maps = backbone(images)
        with pytest.raises(RuntimeError, match="enable_last_stage"):
            backbone(images, last_stage=True)
        assert sum(p.numel() for p in backbone.parameters()) == before  # not held until asked
        backbone.enable_last_stage()
        *again, pooled = backbone(images, last_stage=True)
    assert sum(p.numel() for p in backbone.parameters()) > before
    for a, b in zip(maps, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert pooled.shape == (2, LAST_STAGE_CHANNELS[name])
    # Built twice (a replay cache's copy and the method's), it is the same stage.
    copy = backbone.build_last_stage()
    with torch.no_grad():
        torch.testing.assert_close(backbone.pool(copy, maps[-1]), pooled, rtol=0, atol=0)


def test_efficientnet_lite0_last_stage_is_the_classifiers_pooled_feature():
    backbone = build_backbone("efficientnet_lite0")
    backbone.enable_last_stage()
    classifier = build_classifier("efficientnet_lite0")
    x = _imagenet_tensor(data.chelsea())
    with torch.no_grad():
        pooled = backbone(x, last_stage=True)[-1]
        net = classifier[1]
        expected = net.forward_head(net.forward_features(classifier[0](x)), pre_logits=True)
        logits = net.classifier(pooled)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)
    assert int(logits.argmax()) in IMAGENET_CATS  # the head reads it as the classifier does


def test_resnet_last_stage_is_layer4_average_pooled(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    reference = build_classifier("resnet18", pretrained=False)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), torchvision_weights_path("resnet18"))
    backbone = build_backbone("resnet18")
    backbone.enable_last_stage()
    reference.fc = torch.nn.Identity()  # the classifier's input: avgpool(layer4(...))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x, last_stage=True)[-1], reference.eval()(x))
