"""Where a figure came from: the hardware, the libraries and the code that produced a run (metrics.json `provenance`).

Cheap and never fatal: GPU facts from torch.cuda (names, memory) and NVML (driver), the CPU from /proc/cpuinfo
(or `platform`), versions from the installed packages' metadata, the commit from git with a short timeout.
Anything that cannot be read is null, never a guess; collecting provenance never stops a run.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"torch": "torch", "transformers": "transformers", "pytorch_lightning": "pytorch-lightning", "codecarbon": "codecarbon"}
GIT_TIMEOUT_S = 5.0


def _safe(fn, default=None):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - an unknown part is null, not a failed run
        log.debug("provenance: %s unknown (%s: %s)", getattr(fn, "__name__", "part"), type(e).__name__, e)
        return default


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name; `platform` when /proc/cpuinfo has none (not Linux, some ARM boards)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git(*args: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(commit, whether tracked files differ from it). Untracked files (run outputs) do not make the tree dirty."""
    if os.environ.get("STUDY_GIT_COMMIT"):  # a copy of the tree whose .git is missing or not its own: told, not read
        return os.environ["STUDY_GIT_COMMIT"], None
    commit = _safe(lambda: _git("rev-parse", "HEAD"))
    if not commit:
        return None, None
    status = _safe(lambda: _git("status", "--porcelain", "--untracked-files=no"))
    return commit, (None if status is None else bool(status))


def _driver() -> str | None:
    import pynvml

    pynvml.nvmlInit()
    version = pynvml.nvmlSystemGetDriverVersion()
    return version.decode() if isinstance(version, bytes) else str(version)


def gpus(devices: list[int] | None) -> dict:
    """Names and memory of the CUDA devices the run uses on this node (indices as CUDA numbers them)."""
    import torch

    names, memory = [], []
    for i in devices or []:
        props = _safe(lambda i=i: torch.cuda.get_device_properties(i))
        names.append(getattr(props, "name", None))
        memory.append(round(props.total_memory / 2**30, 2) if props is not None else None)
    return {"gpu_names": names, "gpu_memory_gib": memory}


def collect(gpu_devices: list[int] | None = None, gpu_count: int | None = None) -> dict:
    """The `provenance` block. gpu_devices: this node's CUDA devices of the run (None or [] on the CPU);
    gpu_count: GPUs over all nodes (default: len(gpu_devices))."""
    import torch

    gpu = gpus(gpu_devices)
    commit, dirty = git_state()
    return {
        **gpu,
        "gpu_count": int(gpu_count if gpu_count is not None else len(gpu_devices or [])),
        "driver": _safe(_driver) if gpu_devices else None,
        "cpu_model": _safe(cpu_model, "unknown"),
        "host": _safe(socket.gethostname) or _safe(platform.node) or "unknown",
        "cuda": torch.version.cuda,
        "versions": {key: _version(dist) for key, dist in PACKAGES.items()},
        "git_commit": commit,
        "git_dirty": dirty,
    }


def for_trainer(trainer) -> dict:
    """Provenance of a Lightning run: the GPUs of its strategy, if it runs on GPUs."""
    on_gpu = _safe(lambda: trainer.strategy.root_device.type == "cuda", False)
    devices = _safe(lambda: [int(i) for i in trainer.device_ids], []) if on_gpu else []
    count = len(devices) * int(getattr(trainer, "num_nodes", 1) or 1) if devices else 0
    return collect(devices, count)
