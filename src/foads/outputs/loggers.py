"""What a run hands its loggers (CSV, W&B): the resolved config, the final numbers, the
session table and the figures, and W&B run names."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from foads.outputs.summary import jsonable


def hyperparameters(cfg: DictConfig, category: str) -> dict:
    """The resolved config a logger records with the run (Hydra's own node left out)."""
    conf = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(conf, dict)  # a DictConfig's container
    conf.get("dataset", {})["category"] = category
    return conf


def log_results(logger, out_dir: Path, summary: dict, sessions: list[dict]) -> None:
    """Final metrics into the run summary, the session table and the figures, for loggers
    that take them (W&B); then close the logger's run."""
    if isinstance(logger, WandbLogger):
        final = {k: v for k, v in jsonable(summary).items() if isinstance(v, (int, float))}
        logger.experiment.summary.update({f"final/{k}": v for k, v in final.items()})
        if sessions:
            columns = list(sessions[0])
            rows = [[jsonable(s.get(c)) for c in columns] for s in sessions]
            logger.log_table(key="sessions_table", columns=columns, data=rows)
    if hasattr(logger, "log_image"):
        for name in ("sessions", "overlays"):
            if (out_dir / f"{name}.png").exists():
                logger.log_image(key=name, images=[str(out_dir / f"{name}.png")])
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        # One W&B run per category: without this the next category would reuse this run.
        logger.experiment.finish()


def logger_names(
    name: str, cfg: DictConfig, category: str, method: str, sweep_dir: str | None
) -> dict:
    """W&B: a run per job and category, named after them; the jobs of one sweep share a
    group (`sweep_dir`, None outside a sweep) unless `logger.wandb.group` is set."""
    if name != "wandb":
        return {}
    names = {}
    if not cfg.logger.wandb.get("name"):
        names["name"] = f"{method}-{cfg.mode}-{category}"
    if not cfg.logger.wandb.get("group") and sweep_dir is not None:
        names["group"] = sweep_dir
    return names
