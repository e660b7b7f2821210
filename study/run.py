"""What every entry point (train.py, infer.py) shares: argument checks, the run directory, and run status.

A run's status lives in its metrics.json: `running` while it works, then `ok`, `oom` (out of memory), `failed`
(with the error's one line) or `interrupted`. A failure is contained in its own directory: a multirun goes on to
its next job, and finished runs are never written over.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path

from omegaconf import OmegaConf

from study import record
from study.errors import Interrupted, RunFailed, StudyError

log = logging.getLogger("study")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "data", "strategy", "experiment", "callbacks", "impl", "trainer", "logger")


# ---- config resolvers ----------------------------------------------------------------------------------------
def _job_dir(model: str, data: str, seq_len, override_dirname: str) -> str:
    """A multirun job's directory: readable (model, data, seq_len) and unique to the job's overrides (a hash of
    them), so re-running the same command finds the same directories."""
    digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9=,._+-]", "_", f"{model}_{data}_{seq_len}_{digest}")


def register_resolvers() -> None:
    from lightning_modules.metrics import TASK_METRIC

    if not OmegaConf.has_resolver("task_metric"):
        OmegaConf.register_new_resolver("task_metric", lambda task: TASK_METRIC[task])
    if not OmegaConf.has_resolver("job_dir"):
        OmegaConf.register_new_resolver("job_dir", _job_dir)
    if not OmegaConf.has_resolver("gpus_per_node"):
        OmegaConf.register_new_resolver("gpus_per_node", lambda accelerator, devices: int(devices) if accelerator in ("gpu", "cuda") else 0)
    if not OmegaConf.has_resolver("hydra_subdir"):
        OmegaConf.register_new_resolver("hydra_subdir", hydra_subdir)
    if not OmegaConf.has_resolver("tty"):
        from callbacks.progress import is_terminal

        OmegaConf.register_new_resolver("tty", is_terminal)
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda path: str(Path(path).expanduser().resolve()))
    if not OmegaConf.has_resolver("infer_dir"):
        # infer.py writes next to the run it evaluates: <run_dir>/infer; otherwise into the default
        OmegaConf.register_new_resolver("infer_dir", lambda run_dir, default: f"{run_dir}/infer" if run_dir else default)


_HYDRA_SUBDIRS: dict[str, str] = {}


def hydra_subdir(output_dir: str) -> str:
    """hydra.output_subdir: where Hydra writes a job's config, which it does before the job runs. A new run gets
    its own .hydra/; a directory that already holds a run (finished, to be resumed, or about to be refused) keeps
    its .hydra/ byte-identical, and this command's config goes to a fresh folder outside it. Decided once per
    directory, so a later look-up gives the same answer."""
    import tempfile

    if output_dir not in _HYDRA_SUBDIRS:
        d = Path(output_dir)
        held = (d / ".hydra").exists() or (d / record.FILENAME).exists()
        _HYDRA_SUBDIRS[output_dir] = tempfile.mkdtemp(prefix="hydra-this-command-") if held else ".hydra"
    return _HYDRA_SUBDIRS[output_dir]


def build(node, **kwargs):
    """hydra.utils.instantiate, with our own errors passed through as they are (Hydra wraps them in a page)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, StudyError):
            raise e.__cause__ from None
        raise


# ---- command-line checks before Hydra composes ---------------------------------------------------------------
def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_argv(argv: list[str]) -> None:
    """Unknown config-group options fail in one line that lists the choices (Hydra's own error is a page)."""
    for arg in argv:
        m = re.match(r"^[+~]?([a-z_]+)=(.*)$", arg)
        if not m or m.group(1) not in GROUPS:
            continue
        group, value = m.groups()
        values = re.sub(r"^(choice|range)\((.*)\)$", r"\2", value).strip("[]").split(",")  # a,b / choice(a,b) / [a,b]
        for v in (v.strip() for v in values):
            if v and v != "null" and v not in choices(group):
                raise StudyError(f"unknown {group} '{v}'; choose from: {', '.join(choices(group))}")


def main_guard(argv: list[str]) -> None:
    try:
        check_argv(argv)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ---- one job -------------------------------------------------------------------------------------------------
def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def is_rank_zero() -> bool:
    """Global rank zero, known before any Trainer exists: torchrun sets RANK, SLURM sets SLURM_PROCID,
    Lightning's launcher gives its children LOCAL_RANK and NODE_RANK."""
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def finished(directory: Path) -> bool:
    try:
        return record.read(directory)["status"] == "ok"
    except (OSError, ValueError):
        return False


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _record_status(directory: Path, **fields) -> None:
    """The run's status, written where it can be: a full or read-only disk leaves one line on stderr instead."""
    try:
        record.update(directory, **fields)
    except OSError as e:
        print(f"error: could not write {directory / record.FILENAME}: {e.strerror or e}", file=sys.stderr)


def _state_note(directory: Path) -> str:
    """Where an interrupted run's training state is, or that it has none to resume from."""
    last = directory / "checkpoints" / "last.ckpt"
    if last.exists():
        return f"its training state is in {last} (ckpt_path=last resumes it)"
    return "no training state was saved (callbacks.last_checkpoint is off, or the signal came before its first save): rerunning starts it again"


def guarded(directory: Path, kind: str, body, write: bool = True) -> int:
    """Run body(directory) -> status | None with its status recorded in directory/metrics.json.
    Returns the exit code: 0 ok, 1 failed, 2 bad input. Any failure stays inside this run.
    A signal (Interrupted, KeyboardInterrupt) is recorded `interrupted`, then stops the whole command with
    exit code 128 + the signal (SIGTERM 143, SIGINT 130): a signalled multirun stops too."""
    write = write and is_rank_zero()
    started = time.time()
    if write:
        _record_status(directory, kind=kind, status="running", error=None, started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    status, error, code, stop = "ok", None, 0, False
    try:
        status = body(directory) or "ok"  # a body may report its own outcome, e.g. "interrupted"
    except StudyError as e:
        status, error, code = "failed", str(e), 2
        print(f"error: {e}", file=sys.stderr)
    except RunFailed as e:
        status, error, code = "failed", str(e), 1
        print(f"error: {e} ({directory})", file=sys.stderr)
    except Interrupted as e:
        status, error, code, stop = "interrupted", str(e), e.exit_code, True
        print(f"interrupted: {e}; {_state_note(directory)}", file=sys.stderr)
    except KeyboardInterrupt:
        status, error, code, stop = "interrupted", "SIGINT", 130, True
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        what = "no space left on device" if e.errno != errno.EROFS else "read-only file system"
        status, error, code = "failed", f"{what}: {e.filename or directory}", 1
        print(f"error: {error}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - contain any failure in this run's directory
        status, error, code = ("oom" if _is_oom(e) else "failed"), _one_line(e), 1
        log.error("run failed:\n%s", traceback.format_exc())
        print(f"error: {error} (traceback in {directory})", file=sys.stderr)
    if write:
        _record_status(directory, status=status, error=error, wall_time_s=round(time.time() - started, 3))
    if stop:
        raise SystemExit(code)  # the user or the scheduler stopped the whole command, not just this run
    return code


def _overrides(directory_or_list) -> dict[str, str]:
    """key -> value of a command's task overrides, without the keys that do not change what a run is."""
    from hydra.core.hydra_config import HydraConfig

    if isinstance(directory_or_list, Path):
        path = directory_or_list / ".hydra" / "overrides.yaml"
        if not path.exists():
            return {}
        items = OmegaConf.to_container(OmegaConf.load(path))
    else:
        items = list(directory_or_list)
    excluded = set(HydraConfig.get().job.config.override_dirname.exclude_keys) if HydraConfig.initialized() else set()
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key not in excluded and not key.startswith("hydra."):
            out[key] = value
    return out


def differing_overrides(directory: Path) -> list[str]:
    """The keys whose values this command sets differently from the command that started the run."""
    from hydra.core.hydra_config import HydraConfig

    if not (directory / ".hydra" / "overrides.yaml").exists() or not HydraConfig.initialized():
        return []
    own, now = _overrides(directory), _overrides(HydraConfig.get().overrides.task)
    return [f"{k} (run: {own.get(k, '<unset>')}, now: {now.get(k, '<unset>')})" for k in sorted(set(own) | set(now)) if own.get(k) != now.get(k)]


def run_state(directory: Path) -> str:
    """`new` (no record), `finished` (status ok) or `unfinished`; a record that cannot be read raises RecordError."""
    if not (directory / record.FILENAME).exists():
        return "new"
    return "finished" if record.read(directory)["status"] == "ok" else "unfinished"


_SWEEP_FAILURES: list[int] = []


def _refuse(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_job(cfg, kind: str, body, own_record: bool = True) -> int:
    """One Hydra job: body(cfg, run_dir).

    A multirun job is recognised by its directory, which its overrides name (sweep dir / override_dirname):
    re-running the same multirun skips a job whose directory holds a finished run and resumes one that holds
    an unfinished run's training state (interrupted, failed or killed), unless skip_finished=false.
    One process trains a job at a time (study/lock.py); signals are recorded (study/signals.py)."""
    from study.lock import Held, job_lock
    from study.signals import job_signals

    directory = run_dir()
    try:
        if kind != "train":
            return guarded(directory, kind, lambda d: body(cfg, d), write=own_record)
        with job_signals(), (job_lock(directory) if is_rank_zero() else contextlib.nullcontext()):
            return _train_job(cfg, directory, body, own_record)
    except Held as e:
        if is_multirun():
            log.warning("skip: %s", e)
            print(f"note: skipped: {e}", file=sys.stderr)
            return 0
        return _refuse(str(e))
    except Interrupted as e:  # before the job's own record was started (e.g. waiting on the lock)
        raise SystemExit(e.exit_code) from None
    finally:
        release_device_memory()


def release_device_memory() -> None:
    """Give back what a job held on its GPU before a multirun's next job starts: its objects (trainer and module
    refer to each other: only the cycle collector frees them), the allocator's cache, and its memory hold
    (batch_size_memory_gib). On the H200 a failed job's 57 GiB stayed allocated, held to 48, into the next job."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    from lightning_modules.batch_size import hold_to_memory_cap

    torch.cuda.empty_cache()
    hold_to_memory_cap(None)


def _train_job(cfg, directory: Path, body, own_record: bool) -> int:
    from omegaconf import open_dict

    from lightning_modules.training_state import check_checkpoint

    multirun, skip = is_multirun(), cfg.get("skip_finished", False)
    try:
        state = run_state(directory)
    except record.RecordError as e:
        return _refuse(f"{e}; the run's files are left as they are (move it away to train this job again)", 1)
    last = directory / "checkpoints" / "last.ckpt"
    ckpt = cfg.get("ckpt_path")
    if state == "finished":
        if ckpt is not None:
            return _refuse(f"{directory} holds a finished run: there is nothing to resume (ckpt_path={ckpt})")
        if multirun and skip:
            log.info("skip: %s already holds a finished run (skip_finished=true)", directory)
            return 0
        if not multirun:  # never train over a finished run by accident
            return _refuse(f"{directory} holds a finished run; choose another hydra.run.dir")
    if ckpt is None and state == "unfinished" and last.exists():
        if multirun and skip:
            log.info("resume: %s holds an unfinished run; continuing from its training state", directory)
            ckpt = "last"
        elif not multirun:
            return _refuse(f"{directory} holds an unfinished run with a training state; resume it with ckpt_path=last, or choose another hydra.run.dir")
    if ckpt == "last":
        if not last.exists():
            return _refuse(f"{directory} has no training state to resume ({last} does not exist)")
        ckpt = str(last)
    if ckpt is not None:
        differing = differing_overrides(directory)
        if differing:
            return _refuse(f"resuming {directory} with overrides that differ from the run's own: {'; '.join(differing)}")
        if Path(ckpt).exists():
            try:
                check_checkpoint(ckpt)
            except RunFailed as e:
                return _refuse(str(e), 1)
        with open_dict(cfg):
            cfg.ckpt_path = ckpt
    return guarded(directory, kind="train", body=lambda d: body(cfg, d), write=own_record)


def exit_unless_multirun(code: int) -> None:
    """A single run exits with its code; a multirun goes on to its next job whatever this one did, and its
    exit code (sweep_exit_code) says at the end whether some job failed."""
    if code and not is_multirun():
        sys.exit(code)
    if code:
        _SWEEP_FAILURES.append(code)


def sweep_exit_code() -> int:
    """0 when every job of this process's multirun succeeded (or was skipped), 1 otherwise."""
    return 1 if _SWEEP_FAILURES else 0
