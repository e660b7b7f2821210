"""The Lightning Trainer for a run: its callbacks, loggers and distributed strategy, all from the config."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def loggers(cfg: DictConfig, run_dir: Path) -> list:
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    out = [CSVLogger(save_dir=str(run_dir), name="logs", version="")]
    tensorboard = cfg.get("logger", {}).get("tensorboard", "auto")
    if tensorboard is True or (tensorboard == "auto" and importlib.util.find_spec("tensorboard") is not None):
        out.append(TensorBoardLogger(save_dir=str(run_dir), name="logs", version="", default_hp_metric=False))
    return out


def strategy(cfg: DictConfig):
    """Lightning strategy for the config's strategy group (DDP jobs are launched once per job, see study/ddp.py)."""
    backend = cfg.strategy.backend
    if backend == "ddp":
        from study.ddp import hydra_ddp_strategy

        return hydra_ddp_strategy(cfg)
    return backend


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list | None = None):
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks += extra_callbacks or []
    # validation every data.val_every_steps optimizer steps; Lightning counts batches
    val_every = int(cfg.data.val_every_steps) * int(cfg.trainer.accumulate_grad_batches)
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers(cfg, run_dir),
        strategy=strategy(cfg),
        default_root_dir=str(run_dir),
        val_check_interval=val_every,
    )


def best_checkpoint_callback(trainer):
    for cb in trainer.checkpoint_callbacks:
        if cb.monitor is not None:
            return cb
    return None


def final_validation(trainer, module, datamodule) -> None:
    """A run that stops between validations (max_steps, max_time) is scored on its final weights too,
    so every finished run has a metric; a new best is saved like any other."""
    if trainer.interrupted or trainer.global_step == 0:
        return
    if module.last_scores is not None and module.last_scores["step"] == trainer.global_step:
        return
    best_before = module.best
    trainer.validate(module, datamodule=datamodule, verbose=False)
    callback = best_checkpoint_callback(trainer)
    if module.best is not best_before and callback is not None:
        path = str(Path(callback.dirpath) / f"{callback.filename or 'best'}.ckpt")
        trainer.save_checkpoint(path, weights_only=callback.save_weights_only)
        callback.best_model_path = path
