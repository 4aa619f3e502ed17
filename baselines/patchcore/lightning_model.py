"""PatchCore under the FOADS protocol: offline, or online by growing the coreset bank."""

from __future__ import annotations

import torch

from baselines.image_gated import ImageGatedMethod
from baselines.patchcore.torch_model import LocallyAwareFeatures, PatchCoreModel


class PatchCoreModule(ImageGatedMethod):
    """Nearest-neighbour patch scores against a coreset bank; image score = max of the map."""

    name = "patchcore"

    def __init__(
        self,
        backbone: torch.nn.Module,
        feature_dim: int = 100,
        coreset_ratio: float = 0.1,
        sigma: float = 4.0,
        seed: int = 0,
        max_bank: int | None = None,
        **acceptance,
    ) -> None:
        super().__init__(sigma, **acceptance)
        self.features = LocallyAwareFeatures(backbone, feature_dim, seed)
        self.model = PatchCoreModel(coreset_ratio, seed, max_bank)

    def _features(self, images):
        return self.features(images)

    def _fit(self, features):
        pass  # the bank was built for the leave-one-out scores already

    def _learn(self, features, allowed):
        self.model.add(features, allowed)

    def _leave_one_out(self, features):
        # One coreset of all shots; shot i is scored against the bank patches of the others.
        self.model.fit(features)
        return torch.cat(
            [
                self._map_max(self.model.score(features[i : i + 1], exclude_origin=i))
                for i in range(features.shape[0])
            ]
        )
