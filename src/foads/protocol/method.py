"""What the protocol asks of a method: fit on shots, score a batch, update from a batch.

A method is a LightningModule. Lightning drives the few-shot fit (`trainer.fit` over the shot
images) and the stream (`trainer.test` over the stream); the `StreamingEvaluator` callback
records each batch's scores and then, in online mode, hands the batch to `update`. A method
only ever receives images (and their stream positions), never labels or masks.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

import lightning as L
import torch

from foads.components.options import check_types, refuse_unknown


@dataclass
class Scored:
    """A method's verdict on a batch: final as soon as it is returned."""

    anomaly_maps: torch.Tensor  # (B, H, W), image-sized
    image_scores: torch.Tensor  # (B,)
    cache: Any = None  # what the method may reuse in `update` (e.g. its nearest-node search)


@dataclass
class Updated:
    """What a method learned from a batch, for reporting only."""

    accepted: torch.Tensor | None = None  # (B, h, w) bool: patches absorbed into the model
    accepted_images: torch.Tensor | None = None  # (B,) bool, for image-level rules


class StreamingMethod(L.LightningModule):
    """Base class: subclasses implement `collect`, `fit_shots`, `score`, `update`, the state."""

    name = "method"
    uses_backbone = True  # False for methods that learn their own networks (DRAEM)
    # The learned state, set by a subclass (any module; the default `state_bytes` and
    # `state_elements` below ask it).
    model: Any

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Refuse, before any work, options this method does not take or whose values it
        refuses, naming the key (`options`: its config, as `method.*`). By default: the keys
        of the constructor, with the types it annotates; methods with option groups check
        those too."""
        signature = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        takes = {n for n, p in signature.parameters.items() if p.kind in kinds} - {"self"}
        refuse_unknown(cls.name, takes, options)
        try:
            hints = get_type_hints(cls.__init__)
        except (NameError, TypeError):  # an annotation only importable for type checkers
            hints = {}
        check_types(hints, {k: v for k, v in options.items() if k in takes}, "method.")

    def __init__(self) -> None:
        super().__init__()
        # The fit is not gradient descent for most methods; those that train step manually.
        self.automatic_optimization = False

    # ------------------------------------------------------------ few-shot fit
    def training_step(self, batch: dict, batch_idx: int) -> None:
        self.collect(batch["image"])

    def on_train_epoch_end(self) -> None:
        self.fit_shots()

    def configure_optimizers(self):
        return None

    def collect(self, images: torch.Tensor) -> None:
        """Take one batch of shot images (called for every shot batch of the fit)."""
        raise NotImplementedError

    def fit_shots(self) -> None:
        """Build the model from everything collected."""
        raise NotImplementedError

    # ------------------------------------------------------------ stream
    # Lightning types a step's output as Tensor | Mapping | None; it passes on any value, and
    # the evaluator takes this Scored.
    def test_step(self, batch: dict, batch_idx: int) -> Scored | None:  # type: ignore[override]
        if batch["image"].numel() == 0:
            return None
        return self.score(batch["image"])

    def score(self, images: torch.Tensor) -> Scored:
        raise NotImplementedError

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Image scores only (the protocol's calibration on held-out shots)."""
        return self.score(batch["image"]).image_scores

    def decision_threshold(self) -> float | None:
        """The method's own current image threshold, if it keeps one that adapts online
        (e.g. K-NG's stream gate); None otherwise. Read before each batch is scored."""
        return None

    def update(
        self, images: torch.Tensor, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        """Learn from a batch that has already been scored (online and oracle modes).

        `learn` (B,) bool, when given, replaces the method's own pseudo-labels (the oracle
        mode, from the ground truth): learn from those images as a whole, and nothing from
        the others.
        """
        raise NotImplementedError

    # ------------------------------------------------------------ state
    def stream_state(self) -> dict:
        """Everything needed to continue the stream later (not the frozen backbone)."""
        raise NotImplementedError

    def load_stream_state(self, state: dict) -> None:
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Bytes of the learned state (what grows, or not, with the stream); by default that
        of `self.model`."""
        return self.model.state_bytes()

    def state_elements(self) -> int:
        """Numbers in the learned state (for the initial-parameter count of Table 7); by
        default those of `self.model`."""
        return self.model.state_elements()

    def state_summary(self) -> dict:
        """Method-specific figures for summary.json (e.g. the node count)."""
        return {}
