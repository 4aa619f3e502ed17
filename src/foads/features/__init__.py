"""Feature extraction: frozen ImageNet backbones and the patch-embedding extractor."""

from foads.features.backbones import (
    BACKBONE_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneWeightsError,
    FeatureBackbone,
    build_backbone,
    build_classifier,
    efficientnet_lite0_weights_path,
    torchvision_weights_path,
)
from foads.features.extractor import PatchEmbedder, random_channel_index

__all__ = [
    "BACKBONE_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneWeightsError",
    "FeatureBackbone",
    "PatchEmbedder",
    "build_backbone",
    "build_classifier",
    "efficientnet_lite0_weights_path",
    "random_channel_index",
    "torchvision_weights_path",
]
