"""The full training state, written so that a killed run loses at most one validation interval.

`TrainingState` saves `<run>/checkpoints/last.ckpt` at the end of every validation during fit, and on demand
when a signal stops the run (`SIGTERMException`, see study/signals.py): model, optimizer, scheduler, loop
progress (step, epoch, position inside the epoch through the training loader's state), early stopping and best
checkpoint bookkeeping, and the RNG states (torch, CUDA, numpy, random). Lightning's own
`ModelCheckpoint(save_last=True, save_top_k=0)` writes last.ckpt only when training ends, which is why this exists.

`AtomicCheckpointIO` makes every checkpoint write (this one and best.ckpt) atomic: the file is written beside
its destination under a temporary name, flushed to disk and renamed over it, so a kill, a full disk or a
read-only disk never leaves a truncated checkpoint; a failed write removes its temporary file.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import zipfile
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from study.errors import RunFailed

log = logging.getLogger("study")
LAST = "last.ckpt"


def check_checkpoint(path: str | os.PathLike) -> None:
    """A cheap integrity check before resuming: torch checkpoints are zip archives with a CRC per member."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise RunFailed(f"checkpoint {path} is unreadable (truncated or corrupt: {type(e).__name__}); the run's other files are untouched") from None
    if bad is not None:
        raise RunFailed(f"checkpoint {path} is corrupt (member {bad} fails its CRC); the run's other files are untouched")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            # torch's zip writer reports a full disk as a RuntimeError ("file write failed", "unexpected pos"):
            # say what it was (measured before the partial file is removed)
            full = isinstance(e, RuntimeError) and shutil.disk_usage(path.parent).free < 2**20
            tmp.unlink(missing_ok=True)
            if full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
            raise

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        check_checkpoint(path)
        return super().load_checkpoint(path, map_location=map_location, weights_only=False)


def _rng_state() -> dict:
    import numpy as np

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingState(Checkpoint):
    """A Checkpoint subclass, so Lightning runs it after the other callbacks' on_validation_end (their state,
    e.g. early stopping's count, is then up to date when it is saved)."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.resumed_from: int | None = None
        self.saved_step: int | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    def save(self, trainer) -> None:
        trainer.save_checkpoint(str(self.path))
        self.saved_step = trainer.global_step

    # ---- when: every validation during fit, and when a signal stops the run -------------------------------
    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.save(trainer)

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit" and self.saved_step != trainer.global_step:
            self.save(trainer)
            log.info("training state saved at step %d: %s", trainer.global_step, self.path)

    # ---- what, beyond Lightning's own: the RNG streams -------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rng": _rng_state(), "global_step": None if self._trainer is None else self._trainer.global_step}

    def load_state_dict(self, state_dict: dict) -> None:
        if "rng" in state_dict:
            _set_rng_state(state_dict["rng"])
        self.resumed_from = state_dict.get("global_step")

    _trainer = None

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def on_train_start(self, trainer, pl_module):
        # Lightning hands the training loader its saved state in setup_data, but configure_optimizers' call to
        # estimated_stepping_batches runs setup_data before the state is restored, and a second call is skipped:
        # without this the loader would start the epoch over (seen with Lightning 2.6.6)
        trainer.fit_loop._load_combined_loader_states()
        if trainer.ckpt_path is not None and trainer.is_global_zero:
            log.info("resumed from step %d (%s)", trainer.global_step, trainer.ckpt_path)


class StopOnDivergence(Callback):
    """A non-finite training loss ends the run as `failed` ("loss nan at step N"), instead of training on to a
    record that looks like a valid, cheap configuration. The last good state stays in last.ckpt."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss.detach()).all():
            value = "nan" if torch.isnan(loss.detach()).any() else "inf"
            raise RunFailed(f"loss {value} at step {trainer.global_step}")
