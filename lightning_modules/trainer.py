"""The Lightning Trainer for a run: its callbacks, loggers and distributed strategy, all from the config."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning import Callback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

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


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):  # the earlier segments' columns stay in the header
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))

    def _check_log_dir_exists(self) -> None:
        pass  # Lightning deletes an existing metrics.csv here; a resumed run appends to it instead


class AppendingCSVLogger(CSVLogger):
    """logs/metrics.csv across segments: a resumed run appends its rows, the earlier segments' stay."""

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def strategy(cfg: DictConfig):
    """Lightning strategy for the config's strategy group (DDP jobs are launched once per job, see study/ddp.py)."""
    backend = cfg.strategy.backend
    if backend == "ddp":
        from study.ddp import hydra_ddp_strategy

        return hydra_ddp_strategy(cfg)
    return backend


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks: list | None = None):
    from pytorch_lightning.callbacks import Checkpoint

    from lightning_modules.training_state import AtomicCheckpointIO, StopOnDivergence
    from study.signals import GracefulStop

    from study.run import build  # our own errors (a bad callback setting) stay one line

    callbacks = [build(c) for c in cfg.callbacks.values() if c is not None]
    callbacks += [ValidateOnLastStep(), StopOnDivergence(), GracefulStop(), *(extra_callbacks or [])]
    if cfg.strategy.backend == "ddp_spawn":
        from study.ddp import LeaveTogether

        callbacks.append(LeaveTogether())
    # `~callbacks.best_checkpoint ~callbacks.last_checkpoint` means no checkpoints, not Lightning's default one
    checkpointing = any(isinstance(c, Checkpoint) for c in callbacks)
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
        plugins=[AtomicCheckpointIO()],  # no truncated checkpoint, whatever stops a write
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
