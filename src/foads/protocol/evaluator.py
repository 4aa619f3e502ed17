"""The single owner of the protocol's ground truth: sessions, metrics, update diagnostics.

`StreamingEvaluator` is a Lightning callback. For every stream batch it records the method's
scores (final from that moment), then, in online mode, hands the batch to the method's
`update` (test-then-train, docs/protocol.md). It alone reads the labels and masks.
"""

from __future__ import annotations

import csv
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from foads.data.sample import Sample
from foads.metrics import auroc, pro_score
from foads.metrics.binned import PixelCurve
from foads.protocol.drift import Drift
from foads.protocol.method import Scored, StreamingMethod

# oracle: online, but learning only from images whose ground truth is good. It uses labels,
# so it is a diagnostic (how far pseudo-labelling is from the best it could do), never a default.
MODES = ("online", "offline", "oracle")
# Which good images the oracle learns from: all of them, or only those the method itself
# scores at or below (easy) / above (hard) the median of the last oracle_window stream image
# scores, this batch included. The split shows where the oracle's gain comes from: a
# pseudo-labeller that ranks images by the method's own score can at best reach `easy`.
ORACLE_IMAGES = ("all", "easy", "hard")
SESSION_FIELDS = (
    "session",
    "first_position",
    "images",
    "anomalies",
    "image_auroc",
    "pixel_auroc",
    "pro",
    "accepted_fraction",
    "absorbed_anomalous_fraction",
    "seconds_per_image",
    "drift_level",
    "fpr_at_shots",
    "recall_at_shots",
    "fpr_at_own",
    "recall_at_own",
)
# One row per stream image, written as its batch is scored and learned from, so that a run
# that stops early keeps every image it finished and any rule can be studied image by image.
IMAGE_FIELDS = (
    "position",
    "path",
    "region",
    "defect_type",
    "drift_level",
    "label",
    "image_score",
    "own_threshold",  # the method's own image threshold when it scored this image (if any)
    "learned",  # the image gate let it through (empty: no image-level rule, or offline)
    "accepted_patches",
    "patches",
    "anomalous_patches",
    "absorbed_patches",
)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


class StreamingEvaluator(L.Callback):
    """Scores first, updates second; keeps per-session and whole-stream metrics."""

    def __init__(
        self,
        stream: Sequence[Sample],
        load_mask: Callable[[Sample], torch.Tensor],
        mode: str = "online",
        session_size: int = 10,
        sessions_csv: str | Path | None = None,
        images_csv: str | Path | None = None,
        has_masks: bool = True,
        keep_last: int = 10,
        oracle_images: str = "all",
        oracle_window: int = 100,
        drift: Drift | None = None,
        shots_threshold: float | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if oracle_images not in ORACLE_IMAGES:
            raise ValueError(
                f"protocol.oracle_images must be one of {ORACLE_IMAGES}, got {oracle_images!r}"
            )
        if oracle_window < 1:
            raise ValueError(f"protocol.oracle_window must be at least 1, got {oracle_window}")
        if session_size < 1:
            raise ValueError(f"protocol.session_size must be at least 1, got {session_size}")
        self.stream = list(stream)
        self.load_mask = load_mask
        self.mode = mode
        self.session_size = session_size
        self.sessions_csv = Path(sessions_csv) if sessions_csv else None
        self.images_csv = Path(images_csv) if images_csv else None
        self.has_masks = has_masks
        self.keep_last = keep_last
        self.oracle_images = oracle_images
        self.oracle_window = oracle_window
        # The stream's drift: masks move with their drifted images; each image's level is kept.
        self.drift = drift or Drift()
        # Decisions: an image is flagged when its score exceeds the threshold fixed from the
        # shots (protocol/calibration.py), or the method's own threshold of that moment.
        self.shots_threshold = shots_threshold
        self.reset()

    def reset(self) -> None:
        # One entry per scored image: a few numbers each, so a long stream stays small.
        self.positions: list[int] = []
        self.image_scores: list[float] = []
        self.labels: list[int] = []
        self.drift_levels: list[float] = []
        self.own_thresholds: list[float] = []
        self.learned: list[int] = []  # 1/0: the image gate let it through; -1: no such rule
        self.patch_stats: list[
            tuple[int, int, int, int]
        ] = []  # accepted, total, anomalous, absorbed
        self.image_seconds: list[float] = []  # each image's share of its batch's time
        # Maps and masks of the session in progress only (the session's exact pixel metrics),
        # the last `keep_last` for the overlay figure, and the stream's pixel metrics in
        # bounded form (metrics/binned.py): memory does not grow with the stream.
        self.session_maps: list[np.ndarray] = []
        self.session_masks: list[np.ndarray] = []
        self.recent: deque = deque(maxlen=self.keep_last)  # (position, map, mask, label)
        self.pixel_curve = PixelCurve() if self.has_masks else None
        self.skipped: list[tuple[int, str]] = []
        self.sessions: list[dict] = []
        self.compute_seconds = 0.0
        self.next_position = 0  # the first stream position not yet scored (or skipped)
        self._session_start = 0
        self._t0 = 0.0
        self._resumed = False
        self.summary: dict = {}

    # ------------------------------------------------------------------ hooks
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._resumed:
            self.reset()
        self._resumed = False
        self.write_records()

    def write_records(self) -> None:
        """sessions.csv and images.csv from scratch with every session and image so far (a
        resumed run rewrites the first part from its checkpoint, so the files always cover
        the stream from position 0)."""
        if self.sessions_csv is not None:
            self.sessions_csv.parent.mkdir(parents=True, exist_ok=True)
            with self.sessions_csv.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(SESSION_FIELDS)
                writer.writerows([_fmt(row[k]) for k in SESSION_FIELDS] for row in self.sessions)
        if self.images_csv is not None:
            self.images_csv.parent.mkdir(parents=True, exist_ok=True)
            with self.images_csv.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(IMAGE_FIELDS)
                writer.writerows(self._image_row(i) for i in range(len(self.positions)))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        _synchronize(pl_module.device)
        self._t0 = time.perf_counter()

    # Lightning types a step's output as Tensor | Mapping | None, but passes on whatever
    # test_step returns: here a StreamingMethod's Scored.
    def on_test_batch_end(  # type: ignore[override]
        self,
        trainer: L.Trainer,
        pl_module: StreamingMethod,
        outputs: Scored | None,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        skipped = batch.get("skipped", [])
        self.skipped.extend(skipped)
        indices = batch["index"].tolist() + [p for p, _ in skipped]
        if indices:
            self.next_position = max(self.next_position, max(indices) + 1)
        if outputs is None:
            return
        # The scores are final now: copy them out before the method may learn from the batch.
        maps = outputs.anomaly_maps.detach().float().cpu().numpy()
        image_scores = outputs.image_scores.detach().float().cpu().numpy()
        positions = batch["index"].tolist()
        own = pl_module.decision_threshold()
        own = math.nan if own is None else float(own)
        updated = None
        if self.mode == "online":
            updated = pl_module.update(batch["image"], outputs)
        elif self.mode == "oracle":
            updated = pl_module.update(
                batch["image"], outputs, learn=self._oracle_labels(positions, image_scores)
            )
        _synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._t0
        self.compute_seconds += elapsed
        accepted = learned = None
        if updated is not None and updated.accepted is not None:
            accepted = updated.accepted.detach().cpu()
        if updated is not None and updated.accepted_images is not None:
            learned = updated.accepted_images.detach().cpu().bool().tolist()
        first = len(self.positions)
        batch_masks = []
        for j, position in enumerate(positions):
            sample = self.stream[position]
            level = self.drift.level(position, len(self.stream))
            amount = self.drift.amount(position, len(self.stream))
            mask = self.drift.mask(self.load_mask(sample), amount).numpy()
            batch_masks.append(mask)
            self.positions.append(position)
            self.drift_levels.append(level if self.drift.active else 0.0)
            self.own_thresholds.append(own)
            self.image_scores.append(float(image_scores[j]))
            self.labels.append(int(sample.label))
            self.learned.append(-1 if learned is None else int(learned[j]))
            self.session_maps.append(maps[j])
            self.session_masks.append(mask)
            self.recent.append((position, maps[j], mask, int(sample.label)))
            self.patch_stats.append(
                _patch_stats(accepted, j, mask) if accepted is not None else (-1, -1, -1, -1)
            )
            self.image_seconds.append(elapsed / len(positions))
            if len(self.positions) - self._session_start == self.session_size:
                self._close_session(trainer)
        if self.pixel_curve is not None:
            self.pixel_curve.add(maps, np.stack(batch_masks))
        if self.images_csv is not None:
            with self.images_csv.open("a", newline="") as f:
                csv.writer(f).writerows(
                    self._image_row(i) for i in range(first, len(self.positions))
                )

    def _image_row(self, i: int) -> list:
        """The images.csv row of the i-th scored image."""
        sample = self.stream[self.positions[i]]
        own, learned, stats = self.own_thresholds[i], self.learned[i], self.patch_stats[i]
        return [
            self.positions[i],
            str(sample.path),
            "" if sample.region is None else " ".join(map(str, sample.region)),
            sample.defect_type,
            f"{self.drift_levels[i]:.4g}",
            self.labels[i],
            f"{self.image_scores[i]:.6g}",
            "" if math.isnan(own) else f"{own:.6g}",
            "" if learned < 0 else learned,
            *(stats if stats[0] >= 0 else ("",) * 4),
        ]

    def _oracle_labels(self, positions: list[int], image_scores: np.ndarray) -> torch.Tensor:
        """(B,) bool: the images the oracle learns from (good, and in its `oracle_images`)."""
        learn = torch.tensor([self.stream[p].label == 0 for p in positions])
        if self.oracle_images == "all":
            return learn
        window = np.concatenate([self.image_scores[-self.oracle_window :], image_scores])
        window = window[-self.oracle_window :]
        easy = torch.from_numpy(image_scores <= np.median(window))
        return learn & (easy if self.oracle_images == "easy" else ~easy)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if len(self.positions) > self._session_start:
            self._close_session(trainer)
        self.summary = self._stream_summary()

    # ------------------------------------------------------------------ metrics
    def _close_session(self, trainer: L.Trainer) -> None:
        lo, hi = self._session_start, len(self.positions)
        self._session_start = hi
        labels = np.array(self.labels[lo:hi])
        scores = np.array(self.image_scores[lo:hi])
        session = len(self.sessions)
        row = {
            "session": session,
            "first_position": self.positions[lo],
            "images": hi - lo,
            "anomalies": int(labels.sum()),
            "image_auroc": auroc(scores, labels),
        }
        row.update(self._pixel_metrics(lo, hi))
        row.update(self._patch_fractions(lo, hi))
        row["seconds_per_image"] = float(np.mean(self.image_seconds[lo:hi]))
        row["drift_level"] = float(np.mean(self.drift_levels[lo:hi]))
        row.update(self._decisions(lo, hi))
        self.sessions.append(row)
        if self.sessions_csv is not None:
            with self.sessions_csv.open("a", newline="") as f:
                csv.writer(f).writerow([_fmt(row[k]) for k in SESSION_FIELDS])
        metrics = {f"session/{k}": float(v) for k, v in row.items() if k != "session"}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=session)

    def _pixel_metrics(self, lo: int, hi: int) -> dict:
        """Exact pixel AUROC and PRO of the session in progress (its maps are then let go)."""
        maps, masks = self.session_maps, self.session_masks
        self.session_maps, self.session_masks = [], []
        if not self.has_masks or not maps:
            return {"pixel_auroc": float("nan"), "pro": float("nan")}
        stacked_maps, stacked_masks = np.stack(maps), np.stack(masks)
        return {
            "pixel_auroc": auroc(stacked_maps, stacked_masks),
            "pro": pro_score(stacked_maps, stacked_masks),
        }

    def _patch_fractions(self, lo: int, hi: int) -> dict:
        stats = np.array(self.patch_stats[lo:hi], dtype=np.int64).reshape(-1, 4)
        sums = stats[stats[:, 0] >= 0].sum(0) if len(stats) else np.zeros(4, np.int64)
        accepted, total, anomalous, absorbed = (int(v) for v in sums)
        if self.mode == "offline" or total == 0:
            return {"accepted_fraction": float("nan"), "absorbed_anomalous_fraction": float("nan")}
        return {
            "accepted_fraction": accepted / total,
            "absorbed_anomalous_fraction": absorbed / anomalous if anomalous else float("nan"),
        }

    def _stream_summary(self) -> dict:
        labels = np.array(self.labels)
        sessions = self.sessions
        n = len(self.positions)
        late = sessions[len(sessions) // 2 :]
        out = {
            "image_auroc": _nanmean([s["image_auroc"] for s in sessions]),
            "last_half_image_auroc": _nanmean([s["image_auroc"] for s in late]),
            "last_half_pro": _nanmean([s["pro"] for s in late]),
            "pixel_auroc": _nanmean([s["pixel_auroc"] for s in sessions]),
            "pro": _nanmean([s["pro"] for s in sessions]),
            "stream_image_auroc": auroc(np.array(self.image_scores), labels) if n else math.nan,
            "num_images": n,
            "num_anomalous": int(labels.sum()) if n else 0,
            "num_sessions": len(sessions),
            "sessions_without_both_classes": sum(math.isnan(s["image_auroc"]) for s in sessions),
            "sessions_without_anomalous_pixels": sum(math.isnan(s["pro"]) for s in sessions),
            "skipped_images": len(self.skipped),
            "skipped": [{"position": p, "error": e} for p, e in self.skipped],
            "seconds_per_image": self.compute_seconds / n if n else math.nan,
            "uses_labels": self.mode == "oracle",
            "oracle_images": self.oracle_images if self.mode == "oracle" else None,
        }
        if self.pixel_curve is not None and n:
            # Bounded, binned to a relative 2^-11 of the score (metrics/binned.py).
            out["stream_pixel_auroc"] = self.pixel_curve.auroc()
            out["stream_pro"] = self.pixel_curve.pro()
        else:
            out["stream_pixel_auroc"] = out["stream_pro"] = math.nan
        out.update(self._patch_fractions(0, n))
        out.update(self._decisions(0, n))
        out["shots_threshold"] = (
            math.nan if self.shots_threshold is None else float(self.shots_threshold)
        )
        start = sum(s["images"] for s in sessions[: len(sessions) // 2])
        late_decisions = self._decisions(start, n)
        out["last_half_fpr_at_shots"] = late_decisions["fpr_at_shots"]
        out["last_half_recall_at_shots"] = late_decisions["recall_at_shots"]
        return out

    def _decisions(self, lo: int, hi: int) -> dict:
        """FPR (good images flagged) and recall (defective images flagged) of images lo..hi
        at the shots' threshold and at the method's own threshold of each moment."""
        scores = np.array(self.image_scores[lo:hi])
        labels = np.array(self.labels[lo:hi], dtype=bool)
        shots = math.nan if self.shots_threshold is None else self.shots_threshold
        out = {}
        for name, threshold in (("shots", shots), ("own", np.array(self.own_thresholds[lo:hi]))):
            known = ~np.isnan(np.broadcast_to(threshold, scores.shape))
            flagged = scores > threshold
            good, bad = known & ~labels, known & labels
            out[f"fpr_at_{name}"] = flagged[good].mean() if good.any() else math.nan
            out[f"recall_at_{name}"] = flagged[bad].mean() if bad.any() else math.nan
        return {k: float(v) for k, v in out.items()}

    def last_session(self) -> dict:
        """Positions, maps and masks of the last images, for the overlay figure."""
        recent = list(self.recent)
        return {
            "positions": [r[0] for r in recent],
            "maps": [r[1] for r in recent],
            "masks": [r[2] for r in recent],
            "labels": [r[3] for r in recent],
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything recorded so far, so that a resumed stream ends with the same sessions,
        images and stream-level metrics as an uninterrupted one (tensors, lists and numbers
        only: a checkpoint loads with `weights_only=True`)."""
        recent = list(self.recent)
        return {
            "positions": torch.tensor(self.positions, dtype=torch.int64),
            "image_scores": torch.tensor(self.image_scores, dtype=torch.float64),
            "labels": torch.tensor(self.labels, dtype=torch.int64),
            "drift_levels": torch.tensor(self.drift_levels, dtype=torch.float64),
            "own_thresholds": torch.tensor(self.own_thresholds, dtype=torch.float64),
            "learned": torch.tensor(self.learned, dtype=torch.int64),
            "patch_stats": torch.tensor(self.patch_stats, dtype=torch.int64).reshape(-1, 4),
            "image_seconds": torch.tensor(self.image_seconds, dtype=torch.float64),
            "session_maps": [torch.from_numpy(m) for m in self.session_maps],
            "session_masks": [torch.from_numpy(m) for m in self.session_masks],
            "recent": [(p, torch.from_numpy(m), torch.from_numpy(k), y) for p, m, k, y in recent],
            "pixel_curve": None
            if self.pixel_curve is None
            else {
                k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                for k, v in self.pixel_curve.state().items()
            },
            "skipped": [(int(p), str(e)) for p, e in self.skipped],
            "sessions": [dict(s) for s in self.sessions],
            "compute_seconds": self.compute_seconds,
            "next_position": self.next_position,
            "session_start": self._session_start,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`; the next `trainer.test` goes on from there."""
        self.reset()
        self.positions = state["positions"].tolist()
        self.image_scores = state["image_scores"].tolist()
        self.labels = state["labels"].tolist()
        self.drift_levels = state["drift_levels"].tolist()
        self.own_thresholds = state["own_thresholds"].tolist()
        self.learned = state["learned"].tolist()
        self.patch_stats = [tuple(row) for row in state["patch_stats"].tolist()]
        self.image_seconds = state["image_seconds"].tolist()
        self.session_maps = [m.numpy() for m in state["session_maps"]]
        self.session_masks = [m.numpy() for m in state["session_masks"]]
        for p, m, k, y in state["recent"]:
            self.recent.append((int(p), m.numpy(), k.numpy(), int(y)))
        if self.pixel_curve is not None and state["pixel_curve"] is not None:
            self.pixel_curve.load_state(state["pixel_curve"])
        self.skipped = [(int(p), str(e)) for p, e in state["skipped"]]
        self.sessions = [dict(s) for s in state["sessions"]]
        self.compute_seconds = float(state["compute_seconds"])
        self.next_position = int(state["next_position"])
        self._session_start = int(state["session_start"])
        self._resumed = True


def _patch_stats(accepted: torch.Tensor | None, j: int, mask: np.ndarray) -> tuple:
    """(accepted, total, truly anomalous, anomalous and absorbed) patches of one image.

    A patch is truly anomalous when at least half of its pixels are in the ground truth.
    """
    if accepted is None:
        return (0, 0, 0, 0)
    acc = accepted[j].bool()
    h, w = acc.shape
    cover = F.adaptive_avg_pool2d(torch.from_numpy(mask).float()[None, None], (h, w))[0, 0]
    anomalous = cover >= 0.5
    return (
        int(acc.sum()),
        acc.numel(),
        int(anomalous.sum()),
        int((acc & anomalous).sum()),
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
