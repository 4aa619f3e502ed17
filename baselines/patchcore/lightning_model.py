"""PatchCore under the FOADS protocol: offline, or online by growing the coreset bank."""

from __future__ import annotations

import torch

from foads.baselines.image_gated import ImageGatedMethod
from foads.baselines.patchcore.torch_model import IMAGE_SCORES, LocallyAwareFeatures, PatchCoreModel
from foads.features.backbones import FeatureBackbone


class PatchCoreModule(ImageGatedMethod):
    """Nearest-neighbour patch scores against a coreset bank.

    `image_score`: max_patch (the largest patch distance, PatchCore's released code),
    reweighted (that distance times the paper's eq. 7 weight over the `reweight_neighbours`
    nearest bank patches of its nearest bank patch) or map_max (the maximum of the smoothed,
    upsampled map, this code's former score). `coreset_projection`: the greedy coreset's
    sparse random projection (null: exact distances).
    """

    name = "patchcore"

    def __init__(
        self,
        backbone: FeatureBackbone,
        feature_dim: int = 100,
        coreset_ratio: float = 0.1,
        sigma: float = 4.0,
        seed: int = 0,
        max_bank: int | None = None,
        image_score: str = "max_patch",
        reweight_neighbours: int = 9,
        coreset_projection: int | None = 128,
        acceptance: dict | None = None,
        **renamed,
    ) -> None:
        super().__init__(sigma, acceptance, **renamed)
        if image_score not in IMAGE_SCORES:
            raise ValueError(
                f"method.image_score must be one of {IMAGE_SCORES}, got {image_score!r}"
            )
        if reweight_neighbours < 1:
            raise ValueError(
                f"method.reweight_neighbours must be at least 1, got {reweight_neighbours}"
            )
        self.image_score = image_score
        self.reweight_neighbours = int(reweight_neighbours)
        self.features = LocallyAwareFeatures(backbone, feature_dim, seed)
        self.model = PatchCoreModel(coreset_ratio, seed, max_bank, coreset_projection)
        self._nearest: tuple[torch.Tensor, torch.Tensor] | None = None

    def _features(self, images):
        return self.features(images)

    def _fit(self, features):
        pass  # the bank was built for the leave-one-out scores already

    def _learn(self, features, allowed):
        self.model.add(features, allowed)

    def _patch_scores(self, features):
        # `score` asks for the image scores next: they need the nearest bank rows too.
        self._nearest = self.model.nearest(features)
        return self._nearest[0]

    def _image_scores(self, features, maps):
        if self.image_score == "map_max":
            return maps.amax(dim=(1, 2))
        return self._from_patches(features, *self._nearest)

    def _from_patches(self, features, distance, nearest, exclude_origin=None):
        """Image scores from patch distances and nearest bank rows, as `score` makes them."""
        if self.image_score == "map_max":
            return self._map_max(distance)
        neighbours = self.reweight_neighbours if self.image_score == "reweighted" else None
        return self.model.image_scores(features, distance, nearest, neighbours, exclude_origin)

    def _leave_one_out(self, features):
        # One coreset of all shots; shot i is scored against the bank patches of the others,
        # with the image score the stream gets.
        self.model.fit(features)
        scores = []
        for i in range(features.shape[0]):
            x = features[i : i + 1]
            distance, nearest = self.model.nearest(x, exclude_origin=i)
            scores.append(self._from_patches(x, distance, nearest, exclude_origin=i))
        return torch.cat(scores)
