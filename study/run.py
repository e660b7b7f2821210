"""What every entry point (train.py, infer.py) shares: argument checks, the run directory, and run status.

A run's status lives in its metrics.json: `running` while it works, then `ok`, `oom` (out of memory), `failed`
(with the error's one line) or `interrupted`. A failure is contained in its own directory: a multirun goes on to
its next job, and finished runs are never written over.
"""

from __future__ import annotations

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
from study.errors import StudyError

log = logging.getLogger("study")

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "data", "strategy", "experiment", "callbacks", "logger")


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
    if not OmegaConf.has_resolver("tty"):
        from callbacks.progress import is_terminal

        OmegaConf.register_new_resolver("tty", is_terminal)
    if not OmegaConf.has_resolver("abspath"):
        OmegaConf.register_new_resolver("abspath", lambda path: str(Path(path).expanduser().resolve()))
    if not OmegaConf.has_resolver("infer_dir"):
        # infer.py writes next to the run it evaluates: <run_dir>/infer; otherwise into the default
        OmegaConf.register_new_resolver("infer_dir", lambda run_dir, default: f"{run_dir}/infer" if run_dir else default)


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


def guarded(directory: Path, kind: str, body, write: bool = True) -> int:
    """Run body(directory) -> status | None with its status recorded in directory/metrics.json.
    Returns the exit code: 0 ok, 1 failed, 2 bad input. Any failure stays inside this run."""
    write = write and is_rank_zero()
    started = time.time()
    if write:
        record.update(directory, kind=kind, status="running", error=None, started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    status, error, code = "ok", None, 0
    try:
        status = body(directory) or "ok"  # a body may report its own outcome, e.g. "interrupted"
    except StudyError as e:
        status, error, code = "failed", str(e), 2
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        status, error, code = "interrupted", "KeyboardInterrupt", 130
    except Exception as e:  # noqa: BLE001 - contain any failure in this run's directory
        status, error, code = ("oom" if _is_oom(e) else "failed"), _one_line(e), 1
        log.error("run failed:\n%s", traceback.format_exc())
        print(f"error: {error} (traceback in {directory})", file=sys.stderr)
    if write:
        record.update(directory, status=status, error=error, wall_time_s=round(time.time() - started, 3))
    if code == 130:
        raise KeyboardInterrupt  # the user stopped the whole command, not just this run
    return code


def resumable(directory: Path) -> bool:
    """An unfinished run that left a full training state behind."""
    return (directory / "checkpoints" / "last.ckpt").exists() and not finished(directory)


def run_job(cfg, kind: str, body, own_record: bool = True) -> int:
    """One Hydra job: body(cfg, run_dir).

    A multirun job is recognised by its directory, which its overrides name (sweep dir / override_dirname):
    re-running the same multirun skips a job whose directory holds a finished run and resumes one that holds
    an unfinished run's last checkpoint (interrupted, failed or killed), unless skip_finished=false."""
    directory = run_dir()
    if kind == "train" and is_multirun() and cfg.get("skip_finished", False) and cfg.get("ckpt_path") is None and resumable(directory):
        log.info("resume: %s holds an unfinished run; continuing from its last checkpoint", directory)
        from omegaconf import open_dict

        with open_dict(cfg):
            cfg.ckpt_path = "last"
    resuming = cfg.get("ckpt_path") is not None
    if not resuming and kind == "train" and finished(directory):
        if is_multirun() and cfg.get("skip_finished", False):
            log.info("skip: %s already holds a finished run (skip_finished=true)", directory)
            return 0
        if not is_multirun():  # never train over a finished run by accident
            print(f"error: {directory} holds a finished run; choose another hydra.run.dir, or resume it with ckpt_path=last", file=sys.stderr)
            return 2
    return guarded(directory, kind, lambda d: body(cfg, d), write=own_record)


def exit_unless_multirun(code: int) -> None:
    """A single run exits with its code; a multirun goes on to its next job whatever this one did."""
    if code and not is_multirun():
        sys.exit(code)
