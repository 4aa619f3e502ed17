"""DRAEM under the FOADS protocol: trained on the shots, fine-tuned online on accepted images.

The fit trains both sub-networks for `train_steps` Adam steps on simulated anomalies made from
the shots (DRAEM's schedule: learning rate x0.2 at 80% and 90% of the steps). Online, every
image whose score is below the gate is learnt from: `update_steps` steps per batch on those
images, again with simulated anomalies. The stream runs under `torch.no_grad` (Lightning's
test loop), so the update re-enables gradients itself.

The published gate (`image_gate=paper`, i.e. `shots` here): leave-one-out scores would mean
retraining the networks once per shot, so the threshold is `gate_quantile` of the shots' own
scores under the trained model, times `gate_margin`. The model has seen those images, so
their scores are optimistic: a margin above 1 admits normal images it has not seen.
`image_gate=stream` and a patch gate (components/acceptance.py) work as for every method;
DRAEM's patches are the 8 x 8-pixel cells of its map (mean probability), and the pixels of
a rejected cell are left out of the fine-tuning loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from foads.baselines.draem.simulation import AnomalySource, simulate_anomalies
from foads.baselines.draem.torch_model import DRAEMModel, image_scores
from foads.components.acceptance import Acceptance
from foads.components.anomaly_map import smooth_anomaly_map
from foads.components.options import refuse_renamed
from foads.data.transforms import denormalise
from foads.protocol.method import Scored, StreamingMethod, Updated

# DRAEM's published online rule in the paper: an image gate from the shots' scores.
PAPER_IMAGE_GATE = "shots"
CELL = 8  # pixels per side of a map cell: DRAEM's "patch" for the patch gate and the report


class DRAEMModule(StreamingMethod):
    name = "draem"
    uses_backbone = False  # DRAEM learns its own networks from pixels

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        Acceptance.from_options(cls.name, PAPER_IMAGE_GATE, options.get("acceptance"))

    def __init__(
        self,
        backbone: torch.nn.Module | None = None,
        reconstructive_width: int = 128,
        discriminative_width: int = 64,
        image_size: int | None = None,
        train_steps: int = 700,
        batch_size: int = 8,
        lr: float = 1e-4,
        update_steps: int = 1,
        update_lr: float = 1e-4,
        anomaly_source: str = "mixed",
        anomaly_source_dir: str | None = None,
        score_pool: int = 21,
        sigma: float = 0.0,
        seed: int = 0,
        acceptance: dict | None = None,
        **renamed,
    ) -> None:
        super().__init__()
        refuse_renamed(self.name, renamed)
        if image_size is not None and int(image_size) % 32:
            raise ValueError(f"DRAEM's image_size must be divisible by 32, got {image_size}")
        # Acceptance options (components/acceptance.py); DRAEM's patches: its map's cells.
        self.acceptance = Acceptance.from_options(self.name, PAPER_IMAGE_GATE, acceptance)
        with torch.random.fork_rng(devices=[]):  # the same initial weights for the same seed
            torch.manual_seed(int(seed))
            self.model = DRAEMModel(reconstructive_width, discriminative_width)
        self.image_size = image_size
        self.train_steps = int(train_steps)
        self.batch_size = int(batch_size)
        self.lr = lr
        self.update_steps = int(update_steps)
        self.update_lr = update_lr
        self.source = AnomalySource(anomaly_source, anomaly_source_dir)
        self.score_pool = int(score_pool)
        self.sigma = sigma
        self.generator = torch.Generator().manual_seed(int(seed))
        self._shots: list[torch.Tensor] = []
        self._optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ pixels
    def _size(self, images: torch.Tensor) -> int:
        """The networks' input side: image_size, else the crop rounded down to a multiple of 32."""
        return int(self.image_size or images.shape[-1] // 32 * 32)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised crops -> [0, 1] images at the networks' size."""
        x = denormalise(images)
        size = self._size(images)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x.clamp_(0.0, 1.0)

    def _pool(self, size: int) -> int:
        """DRAEM's 21-pixel mean filter at 256 pixels, scaled to `size` (odd)."""
        return max(1, round(self.score_pool * size / 256) // 2 * 2 + 1)

    # ------------------------------------------------------------------ training
    def _train(
        self, normals: torch.Tensor, steps: int, optimizer, scheduler=None, weights=None
    ) -> None:
        """`steps` Adam steps on batches of `normals` (N, 3, S, S) with simulated anomalies;
        `weights` (N, 1, S, S): each pixel's share in the loss (None: all count)."""
        self.model.train()
        with torch.enable_grad():
            for _ in range(steps):
                pick = torch.randint(normals.shape[0], (self.batch_size,), generator=self.generator)
                clean = normals[pick.to(normals.device)]
                augmented, mask = simulate_anomalies(clean, self.source, self.generator)
                weight = None if weights is None else weights[pick.to(weights.device)]
                loss = self.model.loss(augmented, clean, mask, weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
        self.model.eval()

    def collect(self, images: torch.Tensor) -> None:
        self._shots.append(self._pixels(images))

    def fit_shots(self) -> None:
        shots = torch.cat(self._shots)
        self._shots = []
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        milestones = [int(self.train_steps * 0.8), int(self.train_steps * 0.9)]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.2)
        self._train(shots, self.train_steps, optimizer, scheduler)
        self._optimizer = torch.optim.Adam(self.model.parameters(), lr=self.update_lr)
        shot_scores = image_scores(
            self.model.anomaly_probability(shots), self._pool(shots.shape[-1])
        )
        self.acceptance.calibrate(shot_scores)

    # ------------------------------------------------------------------ stream
    @torch.no_grad()
    def score(self, images: torch.Tensor) -> Scored:
        self.model.eval()
        x = self._pixels(images)
        probability = self.model.anomaly_probability(x)
        scores = image_scores(probability, self._pool(x.shape[-1]))
        maps = smooth_anomaly_map(probability, (images.shape[-2], images.shape[-1]), self.sigma)
        return Scored(maps, scores, cache=(x, probability))

    def update(
        self, images: torch.Tensor, scored: Scored, learn: torch.Tensor | None = None
    ) -> Updated:
        x, probability = scored.cache
        cells = F.avg_pool2d(probability[:, None], CELL)[:, 0]  # (B, S/8, S/8)
        allowed, keep = self.acceptance.allowed(cells, scored.image_scores, learn)
        if bool(keep.any()) and self.update_steps > 0:
            kept = allowed[keep]
            # the published loss where nothing was rejected; else rejected cells weigh 0
            weights = (
                None if kept.all() else F.interpolate(kept[:, None].float(), scale_factor=CELL)
            )
            self._train(x[keep.to(x.device)], self.update_steps, self._optimizer, weights=weights)
        return Updated(accepted=allowed.cpu(), accepted_images=keep.cpu())

    # ------------------------------------------------------------------ state
    def stream_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self._optimizer.state_dict() if self._optimizer else None,
            "generator": self.generator.get_state(),
            **self.acceptance.stream_state(),
        }

    def load_stream_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self._optimizer = torch.optim.Adam(self.model.parameters(), lr=self.update_lr)
        if state.get("optimizer") is not None:
            self._optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.acceptance.load_stream_state(state)
        self.model.eval()

    def decision_threshold(self) -> float | None:
        return self.acceptance.decision_threshold()

    def state_summary(self) -> dict:
        return {"gate_threshold": float(self.acceptance.threshold)}
