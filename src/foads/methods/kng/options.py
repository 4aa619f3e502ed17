"""K-NG's option groups: `method.acceptance` (what the online update learns from) and
`method.growth` (a graph that grows and sheds nodes); `method.covariance` is the shared
`foads.components.options.Covariance`. Each checks its values when built, naming the key."""

from __future__ import annotations

from dataclasses import dataclass

from foads.components.acceptance import check_gate_options
from foads.methods.kng.graph import THRESHOLD_TYPES

# K-NG's own patch gate may also come from the shots' held-out patch scores.
KNG_PATCH_GATES = (None, "shots", "image", "batch")


@dataclass(frozen=True)
class KNGAcceptance:
    """Defaults are the paper's rules: the node radius alone (median neighbour distance at
    scale 1), no image gate, no patch gate, no recurrence, a fixed radius."""

    # The node radius rule: a patch is learned if it lies within threshold_scale x T_k of
    # its node k (T_k from the node's neighbours: median | mean | max | min | none = all).
    threshold_type: str = "median"
    threshold_scale: float = 1.0
    # Image gate: null | paper (K-NG's: none) | shots | stream.
    image_gate: str | None = None
    gate_quantile: float = 1.0
    gate_margin: float = 1.0
    gate_folds: int = 5
    gate_window: int = 20
    # Patch gate: null | shots | image | batch.
    patch_gate: str | None = None
    patch_gate_quantile: float = 0.999
    patch_gate_margin: float = 1.0
    patch_gate_k: float = 3.0
    reject_dilation: int = 0
    # Recurrence (recurrence.py): null = off.
    recurrence_window: int | None = None
    recurrence_radius: float = 1.5
    recurrence_images: float = 0.2
    # Stream radius (stream_radius.py): null = the paper's fixed radius.
    radius_window: int | None = None

    def __post_init__(self) -> None:
        check_gate_options(
            self.image_gate,
            self.patch_gate,
            self.gate_quantile,
            self.gate_margin,
            self.gate_window,
            self.reject_dilation,
            KNG_PATCH_GATES,
        )
        if self.threshold_type not in THRESHOLD_TYPES:
            raise ValueError(
                f"method.acceptance.threshold_type must be one of {THRESHOLD_TYPES}, "
                f"got {self.threshold_type!r}"
            )
        if self.threshold_scale <= 0:
            raise ValueError(
                f"method.acceptance.threshold_scale must be positive, got {self.threshold_scale}"
            )
        if self.patch_gate_margin <= 0:
            raise ValueError(
                f"method.acceptance.patch_gate_margin must be positive, "
                f"got {self.patch_gate_margin}"
            )


@dataclass(frozen=True)
class Growth:
    """A graph that grows (accepted embeddings farther than `scale` x their node's
    median-neighbour radius seed new nodes by k-means, >= `min_count` per node) and sheds
    nodes that win nothing for `remove_after` updates, never beyond `max_nodes`. Default:
    a fixed size, as in the paper."""

    max_nodes: int | None = None
    scale: float | None = None
    min_count: int = 10
    remove_after: int | None = None

    def __post_init__(self) -> None:
        if (self.scale is not None or self.remove_after is not None) and self.max_nodes is None:
            raise ValueError(
                "growing or removing nodes needs method.growth.max_nodes, the bound on the "
                "graph's size"
            )
        if self.scale is not None and self.scale <= 0:
            raise ValueError(f"method.growth.scale must be positive, got {self.scale}")
        if self.min_count < 2:
            raise ValueError(f"method.growth.min_count must be at least 2, got {self.min_count}")
        if self.remove_after is not None and self.remove_after < 1:
            raise ValueError(
                f"method.growth.remove_after must be at least 1 update, got {self.remove_after}"
            )
