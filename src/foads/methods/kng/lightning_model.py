"""K-NG wired into the protocol: patch embeddings in, anomaly maps out, updates in between."""

from __future__ import annotations

import torch

from foads.components.anomaly_map import smooth_anomaly_map
from foads.features.extractor import PatchEmbedder
from foads.methods.kng.torch_model import KNGModel
from foads.protocol.method import Scored, StreamingMethod, Updated


class KNGModule(StreamingMethod):
    """K-NG (KNG.md sections 1-6) as a `StreamingMethod`."""

    name = "kng"

    def __init__(
        self,
        backbone: torch.nn.Module,
        num_nodes: int = 3136,
        epochs: int = 10,
        age_max: int = 25,
        edge_aging: str = "winner",
        threshold_type: str = "median",
        threshold_scale: float = 1.0,
        covariance_prior: float = 0.0,
        eps: float = 0.01,
        feature_dim: int = 100,
        feature_size: int | None = None,
        sigma: float = 4.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.embedder = PatchEmbedder(backbone, feature_dim, feature_size, seed)
        self.model = KNGModel(
            num_nodes=num_nodes,
            epochs=epochs,
            age_max=age_max,
            edge_aging=edge_aging,
            threshold_type=threshold_type,
            threshold_scale=threshold_scale,
            covariance_prior=covariance_prior,
            eps=eps,
            seed=seed,
        )
        self.sigma = sigma
        self._shot_embeddings: list[torch.Tensor] = []

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        features = self.embedder(images)  # (B, d, h, w)
        b, d, h, w = features.shape
        return features.permute(0, 2, 3, 1).reshape(-1, d), (b, h, w)

    @torch.no_grad()
    def collect(self, images: torch.Tensor) -> None:
        self._shot_embeddings.append(self._embed(images)[0])

    def fit_shots(self) -> None:
        embeddings = torch.cat(self._shot_embeddings)
        self._shot_embeddings = []
        self.model.fit(embeddings)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> Scored:
        x, (b, h, w) = self._embed(images)
        assignment = self.model.assign(x)
        patch_scores = self.model.score(x, assignment).view(b, h, w)
        maps = smooth_anomaly_map(patch_scores, tuple(images.shape[-2:]), self.sigma)
        return Scored(maps, maps.amax(dim=(1, 2)), cache=(x, assignment, (b, h, w)))

    @torch.no_grad()
    def update(
        self, images: torch.Tensor, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        x, assignment, shape = scored.cache
        labels = None
        if learn is not None:  # the oracle: every patch of a truly good image
            labels = learn.to(x.device).repeat_interleave(shape[1] * shape[2])
        accepted = self.model.update(x, assignment, labels)
        return Updated(accepted=accepted.view(shape))

    def stream_state(self) -> dict:
        return {"model": self.model.state_dict(), "embedder": self.embedder.channel_index}

    def load_stream_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if not torch.equal(state["embedder"].cpu(), self.embedder.channel_index.cpu()):
            raise ValueError(
                "the checkpoint was made with another channel subset (feature_dim or seed differ)"
            )

    def state_elements(self) -> int:
        m = self.model
        return m.means.numel() + m.scatter.numel() + m.counts.numel() + m.thresholds.numel()

    def state_summary(self) -> dict:
        return {"num_nodes": self.model.current_nodes, "num_edges": int(self.model.edges.shape[0])}
