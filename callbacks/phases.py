"""Phase boundaries shared by the measuring callbacks, so energy, time and utilisation cover the same spans.

During fit the run alternates contiguous phases: "train" (optimizer steps, including compile and warm-up),
"validation" (generation + scoring) and "checkpoint" (what Lightning does after a validation before the next
step: saving checkpoints, the early-stopping check; on the H100 writing led_base's full state took ~5 s, which
a training phase that restarted at validation's end counted as training). A validate-only run (infer.py) is one
"inference" phase. Boundaries wait for the GPU (synchronize) so a phase owns the work it launched.
"""

from __future__ import annotations

import time

import torch
from pytorch_lightning import Callback


TRAIN, VALIDATION, CHECKPOINT, INFERENCE = "train", "validation", "checkpoint", "inference"


class PhaseCallback(Callback):
    """Subclasses implement phase_start/phase_end/finish; finish runs on every rank (collectives allowed)."""

    def __init__(self):
        self._fit_started: float | None = None
        self._phase: str | None = None
        self.device = None  # the module's device while it runs (Lightning moves it to the CPU before on_fit_end)

    @property
    def on_gpu(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    # ---- what subclasses implement ----------------------------------------------------------------------
    def phase_start(self, trainer, name: str) -> None: ...

    def phase_end(self, trainer, name: str) -> None: ...

    def finish(self, trainer, pl_module, fitting: bool) -> None: ...

    # ---- Lightning hooks --------------------------------------------------------------------------------
    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    @staticmethod
    def is_leader(trainer) -> bool:
        return trainer.local_rank == 0

    def _begin(self, trainer, pl_module, name):
        self.device = pl_module.device
        self._sync(pl_module)
        self._phase = name
        self.phase_start(trainer, name)

    def _end(self, trainer, pl_module):
        self._sync(pl_module)
        if self._phase is not None:
            self.phase_end(trainer, self._phase)
        self._phase = None

    def on_fit_start(self, trainer, pl_module):
        self._fit_started = time.perf_counter()
        self._begin(trainer, pl_module, TRAIN)

    def on_validation_start(self, trainer, pl_module):
        fitting = trainer.state.fn == "fit"
        if trainer.sanity_checking:
            return
        if fitting:
            self._end(trainer, pl_module)
        self._begin(trainer, pl_module, VALIDATION if fitting else INFERENCE)

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self._end(trainer, pl_module)
        if trainer.state.fn == "fit":
            # ModelCheckpoint saves in its own on_validation_end, which Lightning runs after every other callback's
            self._begin(trainer, pl_module, CHECKPOINT)
        else:
            self.finish(trainer, pl_module, fitting=False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._phase == CHECKPOINT:
            self._end(trainer, pl_module)
            self._begin(trainer, pl_module, TRAIN)

    def on_train_end(self, trainer, pl_module):
        # the training loop is over; Lightning's teardown (moving the model to the CPU) is not training
        self._end(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module):
        self._end(trainer, pl_module)  # no-op unless fit ended without on_train_end
        self.finish(trainer, pl_module, fitting=True)

    def on_exception(self, trainer, pl_module, exception):
        # close what is open (threads, trackers); a failed run records what it measured up to here
        try:
            if self._phase is not None:
                self.phase_end(trainer, self._phase)
                self._phase = None
            self.close()
        except Exception:  # noqa: BLE001 - never mask the run's own exception
            pass

    def close(self) -> None:
        """Release threads and trackers without any collective (safe on a failing rank)."""
