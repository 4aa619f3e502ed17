"""The pipeline of one run: `run(cfg)` (behind `foads run`; tests call it) makes, for every
category, the FOADS split, fits the method on the shots, streams the rest through the
`StreamingEvaluator` and writes sessions.csv, summary.json, figures and a checkpoint into the
run folder (what goes into it: foads.outputs)."""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from foads.components.anomaly_map import map_smoothing
from foads.data.errors import ImageReadError
from foads.data.images import load_sample_image
from foads.data.sample import CategoryData
from foads.data.transforms import ImageTransform, denormalise
from foads.outputs.checkpoint import load_checkpoint, save_checkpoint
from foads.outputs.loggers import hyperparameters, log_results, logger_names
from foads.outputs.plots import overlay_grid, session_curves
from foads.outputs.run_folder import claim_output_dir
from foads.outputs.summary import jsonable, mean_summary, pct
from foads.outputs.tables import category_table, to_markdown, write_table
from foads.protocol.calibration import held_out_shot_scores, shots_threshold
from foads.protocol.drift import Drift
from foads.protocol.evaluator import StreamingEvaluator
from foads.protocol.inputs import FileInputs
from foads.protocol.method import StreamingMethod
from foads.protocol.resume import (
    StopSignals,
    StreamCheckpoint,
    StreamInterrupted,
    check_same_settings,
    run_settings,
)
from foads.protocol.settings import check_settings
from foads.protocol.split import few_shot_split
from foads.threads import apply_threads, available_cpus, resolve_threads

log = logging.getLogger(__name__)
# Keep Lightning's start-up chatter (accelerator lines, tips) out of the run's output.
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)

# Lightning's advice about workers, optimisers and logging intervals does not apply here.
for _pattern in (
    ".*does not have many workers.*",
    ".*configure_optimizers.*",
    ".*training_step.*returned `None`.*",
    ".*log_every_n_steps.*",
    ".*smaller than the logging interval.*",
    ".*module\\(s\\) in eval mode.*",
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*Total length of `DataLoader` across ranks is zero.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


def run(cfg: DictConfig, open_inputs: OpenInputs | None = None) -> dict:
    """Run one method on every requested category; returns the summary written to disk.

    `open_inputs(category, data, transform, backbone)` says where images, masks and backbone
    maps come from (default: the dataset's files; `foads.replay`: a feature cache).
    SIGTERM and SIGINT stop the stream after its current batch with a checkpoint
    (`StreamInterrupted`); `ckpt_path` (a checkpoint.pt or a run directory) continues it.
    """
    check_settings(cfg)
    method_options = OmegaConf.to_container(cfg.method, resolve=True)
    assert isinstance(method_options, dict)
    # before any work, naming the key
    method_class(cfg).check_options({str(k): v for k, v in method_options.items()})
    use_threads(cfg)
    out_dir = Path(cfg.paths.output_dir)
    claim_output_dir(out_dir, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config_resolved.yaml", resolve=True)
    dataset_conf = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(dataset_conf, dict)  # a DictConfig's container
    dataset_name = dataset_conf.pop("name", None) or dataset_conf["_target_"].rsplit(".", 1)[-1]
    reader = instantiate(dataset_conf)
    categories = reader.resolve_categories(cfg.dataset.category)
    many = len(categories) > 1
    # Built once: a missing weight file stops the run here, before any category starts.
    backbone = instantiate(cfg.backbone) if method_class(cfg).uses_backbone else None
    per_category: dict[str, dict] = {}
    sessions: dict[str, list[dict]] = {}
    # Every method's maps are smoothed the same way (components/anomaly_map.py).
    smoothing = map_smoothing(cfg.protocol.get("map_smoothing", "scipy"))
    with StopSignals() as stop, smoothing:
        for category in categories:
            if stop.requested:  # arrived during the last batch of the category before
                raise StreamInterrupted(
                    stop.requested,
                    f"interrupted by {stop.requested} before category {category}; the "
                    "categories before it are finished",
                )
            cat_dir = out_dir / category if many else out_dir
            cat_dir.mkdir(parents=True, exist_ok=True)
            try:
                per_category[category], sessions[category] = run_category(
                    cfg,
                    reader,
                    category,
                    cat_dir,
                    backbone,
                    open_inputs,
                    ckpt_file=_category_checkpoint(cfg.get("ckpt_path"), category, many),
                    stop=stop,
                )
            except StreamInterrupted:
                raise
            except Exception as err:  # one bad category must not lose the others
                if not many:
                    raise
                log.exception("category %s failed", category)
                per_category[category] = {"error": f"{type(err).__name__}: {err}"}
    mean = mean_summary([s for s in per_category.values() if "error" not in s])
    summary = {
        **mean,
        "method": _method_name(cfg),
        "mode": cfg.mode,
        "oracle_images": cfg.protocol.get("oracle_images", "all") if cfg.mode == "oracle" else None,
        "dataset": dataset_name.lower(),
        "backbone": cfg.backbone.name if backbone is not None else "none",
        "drift": stream_drift(cfg.protocol).name,
        "categories": per_category,
        "mean": mean,
    }
    (out_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    rows = category_table(per_category, mean)
    title = f"{summary['method']} ({cfg.mode}), {summary['dataset']}, {summary['backbone']}"
    if many:
        write_table(rows, out_dir, title)
        finished = {c: s for c, s in sessions.items() if s}
        if finished:
            session_curves(finished, out_dir / "sessions.png", title)
    print("\n" + to_markdown(rows, title))
    print(
        f"stream image AUROC {pct(mean.get('stream_image_auroc'))}, "
        f"stream pixel AUROC {pct(mean.get('stream_pixel_auroc'))}, "
        f"stream PRO {pct(mean.get('stream_pro'))}, "
        f"{mean.get('seconds_per_image', math.nan):.3f} s/image; outputs in {out_dir}"
    )
    failed = [c for c, s in per_category.items() if "error" in s]
    if failed and len(failed) == len(per_category):
        raise RuntimeError(
            "every category failed: "
            + "; ".join(f"{c}: {per_category[c]['error']}" for c in failed)
        )
    return summary


def use_threads(cfg: DictConfig) -> int:
    """Give torch the threads that `trainer.threads` asks for (default: the CPUs this process
    may use, foads.threads); once per run, before any torch work. Returns the number."""
    asked = cfg.trainer.get("threads")
    threads = resolve_threads(asked)
    apply_threads(threads)
    log.info(
        "torch threads: %d (trainer.threads=%s; %d CPUs available to this process)",
        threads,
        "null" if asked is None else asked,
        available_cpus(),
    )
    return threads


def build_trainer(cfg: DictConfig, **kwargs) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`, with `kwargs` on top. `trainer.threads` is
    foads's own key, applied once per run by `use_threads`, not a Trainer argument."""
    conf = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(conf, dict)  # a DictConfig's container
    conf.pop("threads", None)
    return instantiate(conf, **kwargs)


def _category_checkpoint(ckpt_path, category: str, many: bool) -> Path | None:
    """The checkpoint that continues `category`: ckpt_path itself (a checkpoint.pt), or in a
    run directory <dir>/checkpoint.pt (one category) or <dir>/<category>/checkpoint.pt. A
    directory without one for this category: the category starts afresh."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path)
    if path.is_dir():
        found = path / category / "checkpoint.pt" if many else path / "checkpoint.pt"
        if found.is_file():
            return found
        log.info("%s: no checkpoint in %s, the category starts from its shots", category, path)
        return None
    return path


def run_category(
    cfg: DictConfig,
    reader,
    category: str,
    out_dir: Path,
    backbone: torch.nn.Module | None,
    open_inputs: OpenInputs | None = None,
    ckpt_file: Path | None = None,
    stop: StopSignals | None = None,
) -> tuple[dict, list]:
    """The protocol for one category: split, fit (or resume), stream, outputs."""
    protocol = cfg.protocol
    data = reader.load(category)
    split = few_shot_split(
        data,
        protocol.shots,
        protocol.split_seed,
        protocol.stream_seed,
        protocol.get("anomaly_rate"),
    )
    length = len(split.stream)
    transform = ImageTransform(protocol.resize, protocol.crop)
    drift = stream_drift(protocol)
    inputs = (open_inputs or _file_inputs)(category, data, transform, backbone)
    shots, skipped_shots = _readable_shots(inputs, split.shots)
    method_kwargs = {} if backbone is None else {"backbone": inputs.backbone}
    method = instantiate(cfg.method, **method_kwargs)
    settings = run_settings(cfg, category, length)
    ckpt = None
    if ckpt_file is not None:
        ckpt = load_checkpoint(ckpt_file, method.name)
        check_same_settings(ckpt_file, ckpt["settings"], settings)
    if ckpt is not None:
        threshold = ckpt["stream"]["shots_threshold"]
    else:
        threshold = _shots_threshold(cfg, inputs, shots, method_kwargs)

    evaluator = StreamingEvaluator(
        split.stream,
        inputs.ground_truth,
        mode=cfg.mode,
        session_size=protocol.session_size,
        sessions_csv=out_dir / "sessions.csv",
        images_csv=out_dir / "images.csv",
        has_masks=data.has_masks,
        oracle_images=protocol.get("oracle_images", "all"),
        oracle_window=protocol.get("oracle_window", 100),
        drift=drift,
        shots_threshold=threshold,
    )
    if ckpt is not None and ckpt["stream"]["finished"]:
        log.warning(
            "%s: the checkpoint %s ends its stream (%d of %d images): nothing left to run; "
            "its results are written again",
            category,
            ckpt_file,
            ckpt["stream"]["position"],
            length,
        )
        evaluator.load_state_dict(ckpt["evaluator"])
        evaluator.write_records()
        return _finish_category(ckpt["summary"], evaluator, split.stream, transform, out_dir, drift)

    loggers = [
        instantiate(
            conf,
            save_dir=str(out_dir),
            **logger_names(name, cfg, category, method.name, _sweep_dir()),
        )
        for name, conf in (cfg.get("logger") or {}).items()
    ]
    start = 0
    if ckpt is not None:
        method.load_stream_state(ckpt["state"])
        evaluator.load_state_dict(ckpt["evaluator"])
        start = ckpt["stream"]["position"]
        fit = ckpt["stream"]["fit"]
    else:
        trainer = build_trainer(cfg, logger=False, callbacks=[])
        t0 = time.perf_counter()
        trainer.fit(method, train_dataloaders=inputs.loader(shots, protocol.batch_size))
        # Table 7's "initial parameters": the backbone's weights and the state after the fit.
        backbone_parameters = (
            sum(p.numel() for p in backbone.parameters()) if backbone is not None else 0
        )
        fit = {
            "seconds": time.perf_counter() - t0,
            "state_bytes": method.state_bytes(),
            "initial_parameters": backbone_parameters + method.state_elements(),
        }
    end = length
    if protocol.max_stream_images is not None:
        end = min(end, start + int(protocol.max_stream_images))

    def content(position: int, summary: dict | None = None) -> dict:
        return {
            "method": method.name,
            "state": method.stream_state(),
            "evaluator": evaluator.state_dict(),
            "stream": {
                "position": position,
                "finished": position >= length,
                "shots_threshold": threshold,
                "fit": fit,
            },
            # Which stream (category, length, seeds, drift) and with what: see run_settings.
            "settings": settings,
            "summary": summary,
        }

    checkpoint = StreamCheckpoint(
        out_dir / "checkpoint.pt",
        content,
        evaluator,
        batch_size=protocol.batch_size,
        start=start,
        end=end,
        length=length,
        every=protocol.get("checkpoint_every"),
        stop=stop,
        enabled=cfg.get("save_checkpoint", True),
    )
    trainer = build_trainer(cfg, logger=loggers or False, callbacks=[evaluator, checkpoint])
    for logger in loggers:
        logger.log_hyperparams(hyperparameters(cfg, category))
    stream = inputs.loader(
        split.stream[:end],
        protocol.batch_size,
        skip_unreadable=True,
        offset=start,
        num_workers=protocol.num_workers,
        drift=drift if drift.active else None,
        stream_length=length,
    )
    trainer.test(method, dataloaders=stream, verbose=False)

    bytes_end = method.state_bytes()
    summary = dict(evaluator.summary)
    summary.update(
        category=category,
        fit_seconds=fit["seconds"],
        resumed_at=start if ckpt is not None else None,
        stream_end=end,
        stream_length=length,
        finished=end >= length,
        num_shots=len(shots),
        skipped_shots=skipped_shots,
        num_skipped_shots=len(skipped_shots),
        model_state_bytes=bytes_end,
        model_state_bytes_start=fit["state_bytes"],
        state_grew=bytes_end > fit["state_bytes"],
        initial_parameters=fit["initial_parameters"],
        drift=drift.name,
        drift_strength=drift.strength if drift.active else 0.0,
        **method.state_summary(),
    )
    # The end of the stream, or where max_stream_images stopped it (when that cuts a batch
    # short, StreamCheckpoint kept the state before that batch instead).
    if checkpoint.enabled and end >= length:
        # A finished stream's checkpoint also keeps its summary: resuming it says so.
        save_checkpoint(out_dir / "checkpoint.pt", content(end, summary))
    else:
        checkpoint.save(end)
    _finish_category(summary, evaluator, split.stream, transform, out_dir, drift)
    for logger in trainer.loggers:
        log_results(logger, out_dir, summary, evaluator.sessions)
    return summary, evaluator.sessions


def _finish_category(summary, evaluator, stream, transform, out_dir: Path, drift) -> tuple:
    """summary.json and the figures of a category whose stream has been run."""
    (out_dir / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    if evaluator.sessions:
        category = summary["category"]
        session_curves({category: evaluator.sessions}, out_dir / "sessions.png", category)
        _overlays(evaluator, stream, transform, out_dir, drift)
    return summary, evaluator.sessions


def _readable_shots(inputs: FileInputs, shots: list) -> tuple[list, list[dict]]:
    """The shots whose image can be read, and the others (path and reason): an unreadable
    shot is skipped as an unreadable stream image is, the same on every run of the seed."""
    readable, skipped = [], []
    for sample in shots:
        try:
            inputs.check_readable(sample)
        except ImageReadError as err:
            log.warning("shot skipped: %s", err)
            skipped.append({"path": str(sample.path), "error": str(err)})
            continue
        readable.append(sample)
    if not readable:
        raise ImageReadError("no shot can be read: " + "; ".join(s["error"] for s in skipped[:3]))
    return readable, skipped


# (category, data, transform, backbone) -> the inputs of that category's run.
OpenInputs = Callable[[str, CategoryData, ImageTransform, "torch.nn.Module | None"], FileInputs]


def _file_inputs(category, data, transform, backbone) -> FileInputs:
    return FileInputs(transform, backbone)


def stream_drift(protocol) -> Drift:
    """The protocol's drift scenario (`protocol.drift`; none when absent), seeded by the
    stream seed so that one seed gives one drifted stream."""
    conf = protocol.get("drift") or {}
    return Drift(
        name=conf.get("name", "none"),
        strength=conf.get("strength", 1.0),
        change_at=conf.get("change_at", 0.5),
        period=conf.get("period", 50),
        seed=protocol.stream_seed,
    )


def _shots_threshold(cfg, inputs, shots, method_kwargs) -> float | None:
    """The decision threshold from held-out shots (protocol/calibration.py); None when
    `protocol.decision_folds` is null."""
    folds = cfg.protocol.get("decision_folds")
    if folds is None:
        return None
    if len(shots) < 2:
        log.warning("%d shot(s): no held-out shot to fix a decision threshold from", len(shots))
        return None
    batch_size = cfg.protocol.batch_size
    scores = held_out_shot_scores(
        make_method=lambda: instantiate(cfg.method, **method_kwargs),
        make_trainer=lambda: build_trainer(
            cfg, logger=False, callbacks=[], enable_progress_bar=False
        ),
        loader=lambda samples: inputs.loader(samples, batch_size),
        shots=shots,
        folds=folds,
    )
    return shots_threshold(scores, cfg.protocol.get("decision_quantile", 1.0))


def _overlays(evaluator, stream, transform, out_dir: Path, drift: Drift) -> None:
    """overlays.png of the last session's images (as the method saw them, drifted), and
    maps.npz: the same images, masks and maps as arrays, so that a report can set methods
    side by side without re-running them."""
    last = evaluator.last_session()
    images = [
        denormalise(
            drift.image(transform(load_sample_image(stream[p])), drift.amount(p, len(stream)))
        )
        .permute(1, 2, 0)
        .numpy()
        for p in last["positions"]
    ]
    captions = [f"#{p} {stream[p].defect_type}" for p in last["positions"]]
    masks = [m.astype(float) for m in last["masks"]]
    overlay_grid(images, masks, last["maps"], out_dir / "overlays.png", captions)
    np.savez_compressed(
        out_dir / "maps.npz",
        positions=np.asarray(last["positions"]),
        images=(np.stack(images) * 255).round().astype(np.uint8),
        masks=np.stack(last["masks"]).astype(bool),
        maps=np.stack(last["maps"]).astype(np.float16),
        defect_types=np.asarray([str(stream[p].defect_type) for p in last["positions"]]),
    )


def _method_name(cfg: DictConfig) -> str:
    return method_class(cfg).name


def method_class(cfg: DictConfig) -> type[StreamingMethod]:
    """The class that `method._target_` names (a StreamingMethod, else a TypeError)."""
    cls = get_class(cfg.method._target_)
    if not issubclass(cls, StreamingMethod):
        raise TypeError(
            f"method._target_={cfg.method._target_} is not a foads.protocol.method.StreamingMethod"
        )
    return cls


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode).endswith("MULTIRUN")


def _sweep_dir() -> str | None:
    """The sweep's folder when this job is one of a multirun (W&B groups its runs by it)."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().sweep.dir) if in_multirun() else None
