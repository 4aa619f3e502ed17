"""The label-free acceptance rules every method can share: what an online update learns from.

An online method scores a batch, then learns from what these rules let through:

- an image gate drops whole images: `shots` (a fixed threshold, a quantile of the shots'
  held-out image scores), `stream` (a quantile of the last `window` stream image scores,
  this batch included, so it follows the score scale as the model fills in) or none;
- a patch gate drops the patches of a kept image that score above a limit: `image` (each
  image's own median + k x 1.4826 MAD of its patch scores: a local peak, i.e. a defect, is
  cut out while an image that is novel all over is still learned from), `shots` (a
  quantile of the shots' held-out patch scores), `batch` (a quantile of the batch's patch
  scores), or none; `reject_dilation` also drops the patches within that many grid steps of
  a dropped one (defects are spatially coherent).

`image_gate: paper` names each method's published rule (K-NG: none; the baselines: the
shots' leave-one-out threshold, paper section 4.4). The `gate` config group (conf/gate/)
sets these options to the same values for every method: `gate=paper` the published rules,
`gate=fair` one stream-relative pseudo-labeller for all (docs/comparison.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import get_type_hints

import torch
import torch.nn.functional as F
from torch import nn

from foads.components.options import check_types

IMAGE_GATES = (None, "paper", "shots", "stream")
PATCH_GATES = (None, "shots", "image", "batch")


def check_gate_options(
    image_gate: str | None,
    patch_gate: str | None,
    gate_quantile: float,
    gate_margin: float,
    gate_window: int,
    reject_dilation: int = 0,
    patch_gates: tuple = PATCH_GATES,
) -> None:
    """Refuse an unknown rule or an out-of-range option, naming the key."""
    if image_gate not in IMAGE_GATES:
        raise ValueError(
            f"method.acceptance.image_gate must be one of {IMAGE_GATES}, got {image_gate!r}"
        )
    if patch_gate not in patch_gates:
        raise ValueError(
            f"method.acceptance.patch_gate must be one of {patch_gates}, got {patch_gate!r}"
        )
    if not 0.0 <= gate_quantile <= 1.0:
        raise ValueError(f"method.acceptance.gate_quantile must lie in [0, 1], got {gate_quantile}")
    if gate_margin <= 0:
        raise ValueError(f"method.acceptance.gate_margin must be positive, got {gate_margin}")
    if gate_window < 1:
        raise ValueError(
            f"method.acceptance.gate_window must be at least 1 image, got {gate_window}"
        )
    if reject_dilation < 0:
        raise ValueError(
            f"method.acceptance.reject_dilation must be >= 0 patches, got {reject_dilation}"
        )


def gate_threshold(held_out_scores: torch.Tensor, quantile: float = 1.0) -> float:
    """`image_gate=shots`: a quantile of the shots' held-out (leave-one-out or other-fold)
    scores, which show how a normal image the model has not seen scores. 1.0: the largest."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"gate_quantile must lie in [0, 1], got {quantile}")
    if held_out_scores.numel() == 0:
        raise ValueError("no held-out scores: the gate needs at least two shots")
    return float(torch.quantile(held_out_scores.double().cpu(), quantile))


def accepted_images(
    image_scores: torch.Tensor, threshold: torch.Tensor | float, learn: torch.Tensor | None = None
) -> torch.Tensor:
    """(B,) bool: the images to learn from, below the threshold, or `learn` where the oracle
    mode gives it (from the ground truth), on the scores' device."""
    if learn is not None:
        return learn.to(image_scores.device)
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.to(image_scores.device)
    return image_scores < threshold


def resolve_image_gate(image_gate: str | None, paper: str | None) -> str | None:
    """`paper` -> the method's published image gate; any other value as given."""
    return paper if image_gate == "paper" else image_gate


class StreamGate:
    """`image_gate=stream`: the threshold is `quantile` of the last `window` stream image
    scores (this batch included) times `margin`; images below it are learned from."""

    def __init__(self, window: int, quantile: float, margin: float = 1.0) -> None:
        self.window = window
        self.quantile = quantile
        self.margin = margin
        self.recent = torch.empty(0)
        self.threshold = float("inf")

    def reset(self) -> None:
        self.recent = torch.empty(0)
        self.threshold = float("inf")

    def __call__(self, image_scores: torch.Tensor) -> torch.Tensor:
        """(B,) bool on the scores' device: the images below the updated threshold."""
        scores = image_scores.detach().float().cpu()
        self.recent = torch.cat([self.recent, scores])[-self.window :]
        self.threshold = float(torch.quantile(self.recent.double(), self.quantile)) * self.margin
        return image_scores < self.threshold

    def state(self) -> dict:
        return {
            "recent": self.recent.clone(),
            "threshold": torch.tensor(self.threshold, dtype=torch.float64),
        }

    def load_state(self, state: dict) -> None:
        self.recent = state["recent"].cpu()
        self.threshold = float(state["threshold"])


def image_patch_limits(patch_scores: torch.Tensor, k: float) -> torch.Tensor:
    """(B, 1, 1): each image's median + k x 1.4826 MAD of its own patch scores."""
    flat = patch_scores.flatten(1).float()
    median = torch.quantile(flat, 0.5, dim=1)
    mad = torch.quantile((flat - median[:, None]).abs(), 0.5, dim=1)
    return (median + k * 1.4826 * mad)[:, None, None].to(patch_scores.dtype)


def patch_limits(
    patch_gate: str,
    patch_scores: torch.Tensor,
    k: float = 3.0,
    quantile: float = 0.999,
    shots_limit: torch.Tensor | None = None,
) -> torch.Tensor:
    """The patch-score limit of a patch gate, broadcastable to (B, h, w)."""
    if patch_gate == "shots":
        if shots_limit is None or not torch.isfinite(shots_limit):
            raise ValueError("patch_gate=shots needs the shots' held-out patch scores first")
        return shots_limit.to(patch_scores)
    if patch_gate == "batch":
        return torch.quantile(patch_scores.flatten().float(), quantile).to(patch_scores.dtype)
    if patch_gate == "image":
        return image_patch_limits(patch_scores, k)
    raise ValueError(f"unknown patch_gate {patch_gate!r}")


def rejected_patches(
    patch_scores: torch.Tensor, limit: torch.Tensor, dilation: int = 0
) -> torch.Tensor:
    """(B, h, w) bool: patches above their limit, grown by `dilation` grid steps."""
    rejected = patch_scores > limit
    if dilation > 0:
        r = dilation
        rejected = F.max_pool2d(rejected[:, None].float(), 2 * r + 1, 1, r)[:, 0] > 0
    return rejected


class Acceptance(nn.Module):
    """A method's acceptance options and their running state, for a method that learns what
    an image gate and a patch gate let through (the baselines, DRAEM; K-NG combines the same
    functions with its node radius rule itself).

    `threshold` (a buffer): the image gate as it stands, fixed from the shots for `shots`,
    after the last batch for `stream`, inf without a gate."""

    threshold: torch.Tensor

    def __init__(
        self,
        paper_image_gate: str | None,
        image_gate: str | None = "paper",
        gate_quantile: float = 1.0,
        gate_margin: float = 1.0,
        gate_window: int = 20,
        patch_gate: str | None = None,
        patch_gate_k: float = 3.0,
        patch_gate_quantile: float = 0.999,
        reject_dilation: int = 0,
        patch_gates: tuple = (None, "image", "batch"),
    ) -> None:
        super().__init__()
        check_gate_options(
            image_gate,
            patch_gate,
            gate_quantile,
            gate_margin,
            gate_window,
            reject_dilation,
            patch_gates,
        )
        self.image_gate = resolve_image_gate(image_gate, paper_image_gate)
        self.gate_quantile = gate_quantile
        self.gate_margin = gate_margin
        self.stream = StreamGate(gate_window, gate_quantile, gate_margin)
        self.patch_gate = patch_gate
        self.patch_gate_k = patch_gate_k
        self.patch_gate_quantile = patch_gate_quantile
        self.reject_dilation = reject_dilation
        self.register_buffer("threshold", torch.tensor(float("inf")))

    @classmethod
    def from_options(
        cls, owner: str, paper_image_gate: str | None, options: Mapping | None
    ) -> Acceptance:
        """From a method's `acceptance` config group (`method.acceptance.*`); a key this
        method does not take is named with its group."""
        options = dict(options or {})
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "paper_image_gate"}
        unknown = [k for k in options if k not in known or k == "patch_gates"]
        if unknown:
            raise TypeError(
                f"{owner} has no option {', '.join(f'method.acceptance.{k}' for k in unknown)}"
                f" (it takes {', '.join(sorted(known - {'patch_gates'}))})"
            )
        check_types(get_type_hints(cls.__init__), options, "method.acceptance.")
        return cls(paper_image_gate, **options)

    def calibrate(self, shot_scores: torch.Tensor) -> None:
        """A new fit: the `shots` threshold from the shots' held-out scores, a fresh window."""
        self.stream.reset()
        threshold = float("inf")
        if self.image_gate == "shots":
            threshold = gate_threshold(shot_scores, self.gate_quantile) * self.gate_margin
        self.threshold = torch.tensor(threshold, device=self.threshold.device)

    def kept_images(self, image_scores: torch.Tensor, learn: torch.Tensor | None) -> torch.Tensor:
        """(B,) bool: the images the image gate lets through (the oracle's `learn` as given)."""
        if learn is not None or self.image_gate == "shots":
            return accepted_images(image_scores, self.threshold, learn)
        if self.image_gate == "stream":
            keep = self.stream(image_scores)
            self.threshold = torch.tensor(self.stream.threshold).to(self.threshold)
            return keep
        return torch.ones_like(image_scores, dtype=torch.bool)

    def allowed(
        self, patch_scores: torch.Tensor, image_scores: torch.Tensor, learn: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, h, w) bool: the patches to learn, and (B,) bool: the images with any, on the
        patch scores' device. The oracle's `learn` takes every patch of its images."""
        keep = self.kept_images(image_scores, learn).to(patch_scores.device)
        allowed = keep[:, None, None].expand(patch_scores.shape).clone()
        if learn is None and self.patch_gate is not None:
            limit = patch_limits(
                self.patch_gate, patch_scores, self.patch_gate_k, self.patch_gate_quantile
            )
            allowed &= ~rejected_patches(patch_scores, limit, self.reject_dilation)
            keep = keep & allowed.flatten(1).any(dim=1)  # nothing left: not learned from
        return allowed, keep

    def decision_threshold(self) -> float | None:
        return float(self.threshold) if torch.isfinite(self.threshold) else None

    def stream_state(self) -> dict:
        return {"threshold": self.threshold, "stream_gate": self.stream.state()}

    def load_stream_state(self, state: dict) -> None:
        self.threshold = state["threshold"].to(self.threshold.device)
        self.stream.load_state(state["stream_gate"])
