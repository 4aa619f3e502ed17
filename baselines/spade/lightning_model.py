"""SPADE under the FOADS protocol: offline, or online by adding gated images to the gallery."""

from __future__ import annotations

import torch

from foads.baselines.image_gated import ImageGatedMethod
from foads.baselines.spade.torch_model import SPADEModel
from foads.features.backbones import FeatureBackbone
from foads.features.extractor import PatchEmbedder

# The image feature of SPADE's image-level kNN: last_stage (the backbone's final stage,
# global-average-pooled, all its channels: Cohen and Hoshen's ResNet avgpool feature) or
# layer3 (the deepest of the three embedding maps, pooled: this code's former feature).
IMAGE_FEATURES = ("last_stage", "layer3")


class SPADEModule(ImageGatedMethod):
    """Pooled image features pick the k nearest gallery images; patch embeddings (the same
    layers and d channels as K-NG) are matched against those images' patches.

    `image_features`: last_stage (default, SPADE's) or layer3 (see IMAGE_FEATURES).
    """

    name = "spade"

    def __init__(
        self,
        backbone: FeatureBackbone,
        top_k: int = 50,
        feature_dim: int = 100,
        feature_size: int | None = None,
        sigma: float = 4.0,
        seed: int = 0,
        max_gallery: int | None = None,
        image_features: str = "last_stage",
        acceptance: dict | None = None,
        **renamed,
    ) -> None:
        super().__init__(sigma, acceptance, **renamed)
        if image_features not in IMAGE_FEATURES:
            raise ValueError(
                f"method.image_features must be one of {IMAGE_FEATURES}, got {image_features!r}"
            )
        self.image_features = image_features
        if image_features == "last_stage":
            backbone.enable_last_stage()
        self.embedder = PatchEmbedder(backbone, feature_dim, feature_size, seed)
        self.model = SPADEModel(top_k, max_gallery)

    def _features(self, images):
        """(pooled image features (B, C), patch embeddings (B, d, h, w))."""
        if self.image_features == "last_stage":
            *maps, pooled = self.embedder.backbone(images, last_stage=True)
        else:
            maps = self.embedder.backbone(images)
            pooled = maps[-1].mean(dim=(2, 3))
        return pooled, self.embedder.embed_maps(maps, images.shape[-2:])

    def _cat(self, parts):
        return torch.cat([p for p, _ in parts]), torch.cat([e for _, e in parts])

    def _select(self, features, keep):
        return features[0][keep], features[1][keep]

    def _fit(self, features):
        self.model.fit(*features)

    def _patch_scores(self, features):
        idx, self._image_distance = self.model.neighbours(features[0])
        return self.model.patch_scores(features[1], idx)

    def _image_scores(self, features, maps):
        return self._image_distance.mean(dim=1)

    def _learn(self, features, allowed):
        self.model.add(*features, allowed)

    def _leave_one_out(self, features):
        self.model.fit(*features)
        _, distance = self.model.neighbours(features[0], exclude_self=True)
        return distance.mean(dim=1)
