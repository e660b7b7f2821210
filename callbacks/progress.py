"""Progress for a run nobody watches in a terminal: Lightning's progress bar needs one (it redraws a line), so when
stdout or stderr is not a terminal (a log file, SLURM, CI) the bar is off (`trainer.enable_progress_bar: ${tty:}`)
and this callback writes one log line every `every_n_steps` optimizer steps instead:

    step 120/500 | loss 3.2140 | 14.2 samples/s | 0:02:13 left to max_steps

samples/s counts every rank's training samples over the steps since the last line, validation and checkpoint
saving left out;
time left is the remaining steps (to max_steps, else to the epoch's end) at that rate.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time

from pytorch_lightning import Callback

log = logging.getLogger("study")


def is_terminal() -> bool:
    """Whether a progress bar can be drawn: stdout (Lightning's bar) and stderr (its logs) are both terminals."""
    return sys.stdout.isatty() and sys.stderr.isatty()


class ProgressLog(Callback):
    def __init__(self, every_n_steps: int = 50):
        if not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool) or every_n_steps <= 0:
            from study.errors import StudyError

            raise StudyError(f"callbacks.progress.every_n_steps={every_n_steps} must be a positive whole number of steps")
        self.every_n_steps = every_n_steps
        self.lines: list[str] = []  # what was logged (tests read it)

    def _reset_window(self, trainer):
        self._t0, self._step0, self._samples, self._losses = time.perf_counter(), trainer.global_step, 0, []

    def on_train_start(self, trainer, pl_module):
        self.active = trainer.progress_bar_callback is None  # the bar shows progress itself
        self._reset_window(trainer)

    def on_validation_end(self, trainer, pl_module):
        self._after_validation = not trainer.sanity_checking

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if getattr(self, "_after_validation", False):  # validation and the checkpoints saved after it are not training
            self._reset_window(trainer)
            self._after_validation = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not getattr(self, "active", False):
            return
        self._samples += int(batch["input_ids"].shape[0]) * trainer.world_size
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(float(loss.detach()))
        step = trainer.global_step
        if step == self._step0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._t0
        per_step = seconds / (step - self._step0)
        if trainer.max_steps is not None and trainer.max_steps > 0:
            remaining, until, total = trainer.max_steps - step, "max_steps", trainer.max_steps
        else:
            batches_left = trainer.num_training_batches - batch_idx - 1
            remaining, until, total = -(-batches_left // trainer.accumulate_grad_batches), "the epoch's end", None
        parts = [
            f"step {step}" + (f"/{total}" if total else ""),
            f"loss {sum(self._losses) / len(self._losses):.4f}" if self._losses else "loss unknown",
            f"{self._samples / seconds:.1f} samples/s" if seconds > 0 else "samples/s unknown",
            f"{datetime.timedelta(seconds=round(remaining * per_step))} left to {until}",
        ]
        line = " | ".join(parts)
        self.lines.append(line)
        log.info(line)
        self._reset_window(trainer)
