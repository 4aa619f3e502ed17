"""K-NG wired into the protocol: patch embeddings in, anomaly maps out, updates in between.

What the online update learns from is decided in two steps (docs/kng.md, "The online update"):
an optional image-level gate (an image whose score exceeds a threshold taken from the shots
alone teaches nothing), then the node radius rule (docs/kng.md) on the images let through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from foads.components.anomaly_map import smooth_anomaly_map
from foads.components.options import Covariance, options_of, refuse_renamed
from foads.features.backbones import FeatureBackbone
from foads.features.extractor import PatchEmbedder
from foads.methods.kng.gates import KNGGates, held_out_scores
from foads.methods.kng.options import Growth, KNGAcceptance
from foads.methods.kng.recurrence import NodeRecurrence
from foads.methods.kng.stream_radius import StreamRadius
from foads.methods.kng.torch_model import KNGModel
from foads.protocol.method import Scored, StreamingMethod, Updated


def grid_positions(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(b*h*w, 2): each patch's grid row and column, in grid steps, image by image."""
    rows = torch.arange(h, device=like.device, dtype=like.dtype).repeat_interleave(w)
    cols = torch.arange(w, device=like.device, dtype=like.dtype).repeat(h)
    return torch.stack([rows, cols], dim=1).repeat(b, 1)


class KNGModule(StreamingMethod):
    """K-NG (docs/kng.md) as a `StreamingMethod`.

    Options (conf/method/kng.yaml): the graph's sizes and embedding at the top; the groups
    `acceptance` (KNGAcceptance: the node radius rule, image and patch gates, recurrence,
    stream radius), `covariance` (Covariance) and `growth` (Growth)."""

    name = "kng"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """The constructor's keys and types, then each group's keys, types and ranges, and the
        graph's size against its growth bound: everything before any work."""
        super().check_options(options)
        cls._groups(
            options.get("acceptance"),
            options.get("covariance"),
            options.get("growth"),
            options.get("num_nodes", 3136),
            options.get("position_weight", 0.0),
        )

    @staticmethod
    def _groups(
        acceptance, covariance, growth, num_nodes: int, position_weight: float
    ) -> tuple[KNGAcceptance, Covariance, Growth]:
        """The option groups, each checked, and the options that tie them to the rest: the
        one check that both `check_options` (before a run) and the constructor make."""
        groups = (
            options_of(KNGAcceptance, acceptance, "acceptance"),
            options_of(Covariance, covariance, "covariance"),
            options_of(Growth, growth, "growth"),
        )
        bound = groups[2].max_nodes
        if bound is not None and bound < num_nodes:
            raise ValueError(f"method.growth.max_nodes={bound} is below num_nodes={num_nodes}")
        if position_weight < 0:
            raise ValueError(f"method.position_weight must be >= 0, got {position_weight}")
        return groups

    def __init__(
        self,
        backbone: FeatureBackbone,
        num_nodes: int = 3136,
        epochs: int = 10,
        age_max: int = 25,
        edge_aging: str = "winner",
        acceptance: KNGAcceptance | dict | None = None,
        covariance: Covariance | dict | None = None,
        growth: Growth | dict | None = None,
        position_weight: float = 0.0,
        feature_dim: int = 100,
        feature_size: int | None = None,
        aggregation: int = 1,
        upsample: str = "bilinear",
        sigma: float = 4.0,
        seed: int = 0,
        **renamed,
    ) -> None:
        super().__init__()
        refuse_renamed(self.name, renamed)
        # Every option is checked before any work, each error naming its key.
        acceptance, covariance, growth = self._groups(
            acceptance, covariance, growth, num_nodes, position_weight
        )
        self.acceptance = acceptance
        self.embedder = PatchEmbedder(
            backbone, feature_dim, feature_size, seed, aggregation, upsample
        )
        self.model = KNGModel(
            num_nodes=num_nodes,
            epochs=epochs,
            age_max=age_max,
            edge_aging=edge_aging,
            threshold_type=acceptance.threshold_type,
            threshold_scale=acceptance.threshold_scale,
            covariance=covariance,
            growth=growth,
            seed=seed,
        )
        self.sigma = sigma
        self.position_weight = position_weight
        self.recurrence = (
            None
            if acceptance.recurrence_window is None
            else NodeRecurrence(
                acceptance.recurrence_window,
                acceptance.recurrence_radius,
                acceptance.recurrence_images,
            )
        )
        # The radius that follows the stream (stream_radius.py); None: the paper's fixed radius.
        self.stream_radius = (
            None if acceptance.radius_window is None else StreamRadius(acceptance.radius_window)
        )
        self.radius_scale = 1.0  # its value at the last update (for reports)
        # The image and patch gates before the node radius rule (gates.py).
        self.gates = KNGGates(acceptance)
        self._shot_embeddings: list[torch.Tensor] = []
        self._shot_grid: tuple[int, int] = (0, 0)
        self._image_size: tuple[int, int] = (0, 0)

    # ---------------------------------------------------------------- embeddings
    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Rows image by image: the d features of each patch, then, with position_weight,
        its grid row and column times position_weight (so nodes also tell where they are)."""
        features = self.embedder(images)  # (B, d, h, w)
        b, d, h, w = features.shape
        x = features.permute(0, 2, 3, 1).reshape(-1, d)
        if self.position_weight:
            x = torch.cat([x, grid_positions(b, h, w, x) * self.position_weight], dim=1)
        return x, (b, h, w)

    # ---------------------------------------------------------------- fit
    @torch.no_grad()
    def collect(self, images: torch.Tensor) -> None:
        x, (_, h, w) = self._embed(images)
        self.collect_embeddings(x, (h, w), (images.shape[-2], images.shape[-1]))

    def collect_embeddings(
        self, x: torch.Tensor, grid: tuple[int, int], image_size: tuple[int, int]
    ) -> None:
        """Keep one batch of shot embeddings (rows image by image, h*w rows per image)."""
        self._shot_embeddings.append(x)
        (grid_h, grid_w), (height, width) = grid, image_size
        self._shot_grid = (grid_h, grid_w)
        self._image_size = (height, width)

    @torch.no_grad()
    def fit_shots(self) -> None:
        embeddings = torch.cat(self._shot_embeddings)
        self._shot_embeddings = []
        self.gates.stream.reset()
        if self.stream_radius is not None:  # a new fit starts a new reference
            self.stream_radius = StreamRadius(self.stream_radius.window)
        if self.gates.needs_held_out_shots:
            self.gates.calibrate(
                *held_out_scores(
                    self.model,
                    embeddings,
                    self._shot_grid,
                    self._image_size,
                    self.acceptance.gate_folds,
                    self.sigma,
                )
            )
        self.model.fit(embeddings)

    # ---------------------------------------------------------------- stream
    @torch.no_grad()
    def score(self, images: torch.Tensor) -> Scored:
        x, (b, h, w) = self._embed(images)
        return self.score_embeddings(x, (b, h, w), (images.shape[-2], images.shape[-1]))

    @torch.no_grad()
    def score_embeddings(
        self, x: torch.Tensor, shape: tuple[int, int, int], image_size: tuple[int, int]
    ) -> Scored:
        """Maps and image scores of a batch of embeddings (rows image by image)."""
        b, h, w = shape
        assignment = self.model.assign(x)
        patch_scores = self.model.score(x, assignment).view(b, h, w)
        maps = smooth_anomaly_map(patch_scores, image_size, self.sigma)
        return Scored(maps, maps.amax(dim=(1, 2)), cache=(x, assignment, patch_scores))

    @torch.no_grad()
    def update(
        self, images: torch.Tensor | None, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        x, assignment, patch_scores = scored.cache
        b, h, w = patch_scores.shape
        labels = allowed = None
        keep = None
        if learn is not None:  # the oracle: every patch of a truly good image
            keep = learn.to(x.device)
            labels = keep.repeat_interleave(h * w)
        else:
            allowed, keep = self._allowed_patches(scored.image_scores, patch_scores)
            allowed = None if allowed is None else allowed.flatten()
        also = None
        if self.recurrence is not None and labels is None:
            also = self.recurrence(assignment.s1, assignment.distance, self.model.thresholds, b)
        if self.stream_radius is not None and labels is None:
            radius = self.model.thresholds[assignment.s1].to(assignment.distance)
            self.radius_scale = self.stream_radius(assignment.distance, radius, b)
            if self.radius_scale > 1.0:
                wider = assignment.distance < radius * self.radius_scale
                also = wider if also is None else also | wider
        accepted = self.model.update(x, assignment, labels, allowed, also)
        return Updated(
            accepted=accepted.view(b, h, w),
            accepted_images=None if keep is None else keep.cpu(),
        )

    def _allowed_patches(
        self, image_scores: torch.Tensor, patch_scores: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, h, w) bool: the patches the gates let through before the node radius rule
        (None: all), and (B,) bool: the images the image gate let through (None: no gate)."""
        return self.gates.allowed(image_scores, patch_scores)

    def decision_threshold(self) -> float | None:
        """The image gate as it stands (for `stream`: after the last batch), if one is set."""
        return self.gates.decision_threshold()

    # The gates' state, read by reports and tests as the module's.
    @property
    def gate(self) -> torch.Tensor:
        return self.gates.gate

    @property
    def patch_limit(self) -> torch.Tensor:
        return self.gates.patch_limit

    @property
    def image_gate(self) -> str | None:
        return self.gates.image_gate

    # ---------------------------------------------------------------- state
    def stream_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "embedder": self.embedder.channel_index,
            **self.gates.state(),
            "recurrence": None if self.recurrence is None else self.recurrence.state(),
            "stream_radius": None if self.stream_radius is None else self.stream_radius.state(),
        }

    def load_stream_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if "gate" in state:
            self.gates.load_state(state)
        if self.recurrence is not None and state.get("recurrence") is not None:
            self.recurrence.load_state(state["recurrence"])
        if self.stream_radius is not None and state.get("stream_radius") is not None:
            self.stream_radius.load_state(state["stream_radius"])
        if not torch.equal(state["embedder"].cpu(), self.embedder.channel_index.cpu()):
            raise ValueError(
                "the checkpoint was made with another channel subset (feature_dim or seed differ)"
            )

    def state_bytes(self) -> int:
        """The graph's state plus the recurrence rule's window of band visits (bounded by
        recurrence_window x nodes booleans)."""
        extra = 0 if self.recurrence is None else self.recurrence.visits.numel()
        return self.model.state_bytes() + extra

    def state_elements(self) -> int:
        m = self.model
        return m.means.numel() + m.scatter.numel() + m.counts.numel() + m.thresholds.numel()

    def state_summary(self) -> dict:
        out: dict[str, float] = {
            "num_nodes": self.model.current_nodes,
            "num_edges": int(self.model.edges.shape[0]),
        }
        out.update(self.gates.summary())
        if self.stream_radius is not None:
            out["radius_scale"] = self.radius_scale
        out.update(self.model.growth_summary())
        return out
