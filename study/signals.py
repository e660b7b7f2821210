"""Signals end a run cleanly: its training state is written, it is recorded `interrupted` at step N, and the
command exits 128 + the signal (SIGTERM 143, SIGINT 130).

Outside `trainer.fit` (building the model, between multirun jobs) a signal raises `Interrupted` at once: there is
no training state to keep. Inside fit, `GracefulStop` turns SIGINT, SIGTERM and a scheduler's pre-timeout
signal (SIGUSR1, Lightning's SLURM default; SIGUSR2, submitit's) into Lightning's own graceful stop: Lightning's
SIGTERM notifier sets `trainer.received_sigterm` (and tells DDP ranks), and its loops raise `SIGTERMException` at
the end of the current batch, where the state is consistent. `TrainingState` then saves it; train.py turns the
stop into `Interrupted`. A pre-timeout signal under SLURM also requeues the job (`scontrol requeue`), whose
re-run resumes from that state. A second SIGINT while stopping raises KeyboardInterrupt (the user insists).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

from pytorch_lightning import Callback

from study.errors import Interrupted

log = logging.getLogger("study")

STOP = (signal.SIGTERM, signal.SIGINT)
REQUEUE = (signal.SIGUSR1, signal.SIGUSR2)


def _raise_now(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def job_signals():
    """SIGTERM and SIGINT raise Interrupted while a job runs (main thread only; elsewhere Python refuses)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # the pre-timeout signals too: a job's GracefulStop installs them, and a handler left behind keeps that job's
    # trainer, model and GPU memory alive into the next job (H200, 2026-12-02: a failed job's 34 GiB of captured
    # step pool stayed, and the next two jobs of its multirun ran out of memory on their first step)
    previous = {s: signal.getsignal(s) for s in STOP + REQUEUE}
    for s in STOP:
        signal.signal(s, _raise_now)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def slurm_job_id() -> str | None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeue() -> bool:
    """Put this SLURM job back in the queue; its re-run resumes from the saved state."""
    job = slurm_job_id()
    if job is None:
        return False
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("requeue of SLURM job %s failed: %s", job, e)
        return False
    if result.returncode != 0:
        log.warning("requeue of SLURM job %s failed: %s", job, (result.stderr or result.stdout).strip())
    return result.returncode == 0


class GracefulStop(Callback):
    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}
        self._trainer = None
        self._fitting = False

    def _handle(self, signum, frame):
        trainer = self._trainer
        if not self._fitting or trainer is None:
            raise Interrupted(signum)
        if self.signum is not None:
            if signum == signal.SIGINT and self.signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        log.info("received %s: stopping after this batch, the training state will be saved", signal.Signals(signum).name)
        # Lightning's SIGTERM notifier: sets received_sigterm and tells the other ranks
        trainer._signal_connector._sigterm_notifier_fn(signal.SIGTERM, frame)

    def setup(self, trainer, pl_module, stage):
        # before Lightning registers its handlers (it composes ours into its SIGTERM handler and leaves SIGUSR1 to us)
        import threading

        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self._trainer, self._fitting, self.signum = trainer, True, None
        for s in STOP + REQUEUE:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._handle)

    def teardown(self, trainer, pl_module, stage):
        self._fitting = False
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def on_exception(self, trainer, pl_module, exception):
        # Lightning calls no teardown hook of a callback when fit fails: give the handlers back here
        self.teardown(trainer, pl_module, "fit")

    def interrupted(self, step: int | None) -> Interrupted:
        """The Interrupted for the signal that stopped fit (requeueing first, for a pre-timeout signal)."""
        zero = self._trainer is None or self._trainer.is_global_zero  # one requeue per job, not one per rank
        requeued = self.signum in REQUEUE and zero and requeue()
        return Interrupted(self.signum or signal.SIGTERM, step, requeued=requeued)


def fit(trainer, *args, **kwargs) -> None:
    """trainer.fit, with a signal's graceful stop raised as Interrupted (its state already saved by TrainingState).
    Lightning turns a stop into SIGTERMException (a SystemExit with no code: exit 0) and a KeyboardInterrupt into
    sys.exit(1); neither says which signal it was, nor records it."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    stop = next((cb for cb in trainer.callbacks if isinstance(cb, GracefulStop)), None)
    try:
        trainer.fit(*args, **kwargs)
    except SIGTERMException:
        raise (stop.interrupted(trainer.global_step) if stop else Interrupted(signal.SIGTERM, trainer.global_step)) from None
    except SystemExit:
        if stop is not None and stop.signum is not None:
            raise stop.interrupted(trainer.global_step) from None
        raise
