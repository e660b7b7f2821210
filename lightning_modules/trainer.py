"""The Lightning Trainer for a run: its callbacks, loggers and distributed strategy, all from the config."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning import Callback

from study.errors import StudyError

log = logging.getLogger(__name__)

# the package each logger needs (import name, what to install); Lightning's own message is a page
LOGGER_PACKAGES = {
    "TensorBoardLogger": ("tensorboard", "tensorboard"),
    "MLFlowLogger": ("mlflow", "mlflow-skinny"),
    "WandbLogger": ("wandb", "wandb"),
}


def loggers(cfg: DictConfig) -> list:
    """The `logger` group's loggers, each from its `_target_`; one that needs a missing package is a one-line error."""
    import importlib.util

    out = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        need = LOGGER_PACKAGES.get(str(node.get("_target_", "")).rsplit(".", 1)[-1])
        if need and importlib.util.find_spec(need[0]) is None:
            raise StudyError(f"logger={key} needs the package '{need[0]}', which is not installed (pip install {need[1]})")
        if need and need[0] == "mlflow" and str(node.get("tracking_uri") or "file:").startswith("file:"):
            # MLflow 3 refuses its file store (in "maintenance mode") unless told; a local file store needs no server
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        out.append(instantiate(node))
    return out


def strategy(cfg: DictConfig):
    """Lightning strategy for the config's strategy group (DDP jobs are launched once per job, see study/ddp.py)."""
    backend = cfg.strategy.backend
    if backend == "ddp":
        from study.ddp import hydra_ddp_strategy

        return hydra_ddp_strategy(cfg)
    return backend


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list | None = None):
    from pytorch_lightning.callbacks import ModelCheckpoint

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks += [ValidateOnLastStep(), *(extra_callbacks or [])]
    if cfg.strategy.backend == "ddp_spawn":
        from study.ddp import LeaveTogether

        callbacks.append(LeaveTogether())
    # `~callbacks.best_checkpoint ~callbacks.last_checkpoint` means no checkpoints, not Lightning's default one
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    # validation every data.val_every_steps optimizer steps; Lightning counts batches
    val_every = int(cfg.data.val_every_steps) * int(cfg.trainer.accumulate_grad_batches)
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers(cfg) or False,
        strategy=strategy(cfg),
        default_root_dir=str(run_dir),
        val_check_interval=val_every,
        enable_checkpointing=checkpointing,
    )


class ValidateOnLastStep(Callback):
    """Every run ends with a validation, so a run stopped by max_steps or max_epochs between validations is
    scored on its final weights too (inside fit: checkpointing, early stopping and measurement all see it).
    Lightning validates on the batch where `should_stop` is set; we set it on the last optimizer step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loop = trainer.fit_loop
        last_step = trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        last_batch = (
            trainer.max_epochs is not None
            and trainer.max_epochs > 0
            and trainer.current_epoch + 1 >= trainer.max_epochs
            and loop.epoch_loop.batch_progress.is_last_batch
        )
        if last_step or last_batch:
            trainer.should_stop = True
