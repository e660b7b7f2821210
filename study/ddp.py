"""DDP under Hydra, multirun included: each job starts its own ranks, once, in its own directory.

Lightning's DDP launcher starts ranks 1..N-1 by re-running the script with the parent's command line. Under
`-m` that command line is the whole sweep, so every child re-runs every job into a second sweep directory.
`JobLauncher` starts the children with *this job's* overrides (HydraConfig's task overrides) as a single run
in this job's directory instead, and `job_scope` clears the rendezvous variables and the process group between
jobs, so the next job of the sweep launches its own ranks rather than believing it is already one of them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from pytorch_lightning import Callback
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "RANK")
_VALUE_FLAGS = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir"}


def _script() -> list[str]:
    import __main__
    from hydra.utils import to_absolute_path

    if getattr(__main__, "__spec__", None) is not None:
        return [sys.executable, "-m", __main__.__spec__.name]
    return [sys.executable, to_absolute_path(sys.argv[0])]


def _config_flags(argv: list[str]) -> list[str]:
    """The command line's config-location flags (kept), without -m/--multirun and the overrides."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_FLAGS and i + 1 < len(argv):
            out += argv[i : i + 2]
            i += 2
            continue
        if any(arg.startswith(f + "=") for f in _VALUE_FLAGS if f.startswith("--")):
            out.append(arg)
        i += 1
    return out


def _quote(value: str) -> str:
    """A Hydra override value taken literally (paths of sweep jobs contain '=' and ',')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def job_command(local_rank: int, extra: list[str] | None = None) -> list[str]:
    """The command that starts `local_rank` of the current Hydra job as a single run in the job's directory.
    `extra` carries what the job decided at run time (e.g. ckpt_path=last when a sweep resumes it)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return (
        _script()
        + _config_flags(sys.argv[1:])
        + list(hc.overrides.task)
        + list(extra or [])
        + [
            f"hydra.run.dir={_quote(hc.runtime.output_dir)}",
            f"hydra.job.name={hc.job.name}_rank{local_rank}",
            "hydra.output_subdir=null",  # only rank 0 writes the job's .hydra/ config
        ]
    )


class JobLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher, with children started for this job only."""

    def __init__(self, *args, extra_overrides: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_overrides = extra_overrides or []

    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_original_cwd

        if not HydraConfig.initialized():
            return super()._call_children_scripts()
        self._check_can_spawn_children()
        self.procs = []
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        for local_rank in range(1, self.num_processes):
            env = os.environ.copy()
            env["LOCAL_RANK"] = str(local_rank)
            if os.environ.get("PL_GLOBAL_SEED") is None:
                env.pop("PL_GLOBAL_SEED", None)
            command = job_command(local_rank, self.extra_overrides)
            self.procs.append(subprocess.Popen(command, env=env, cwd=get_original_cwd()))


class HydraDDPStrategy(DDPStrategy):
    def __init__(self, *args, extra_overrides: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_overrides = extra_overrides

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if self._start_method == "popen":
            self._launcher = JobLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes, extra_overrides=self.extra_overrides
            )


def hydra_ddp_strategy(cfg):
    backend = "gloo" if cfg.strategy.accelerator == "cpu" else None
    extra = [f"ckpt_path={_quote(str(cfg.ckpt_path))}"] if cfg.get("ckpt_path") else []
    return HydraDDPStrategy(process_group_backend=backend, extra_overrides=extra)


class LeaveTogether(Callback):
    """Under ddp_spawn: the ranks finish fit together and close the process group before their processes exit.
    Left to exit on their own with the group open, rank 1 sometimes aborted at exit (`terminate called without an
    active exception`, SIGABRT: 2 of 12 test runs on 2 CPU processes, 0 of 14 with this), which failed a finished
    run. A teardown hook runs after every on_fit_end hook, whose gathers are collectives."""

    def teardown(self, trainer, pl_module, stage):
        import torch.distributed as dist

        if stage == "fit" and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def gather_objects(obj, trainer) -> list:
    """Every rank's python object, e.g. predictions as strings (a collective: all ranks must call it)."""
    import torch.distributed as dist

    if trainer is None or trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * trainer.world_size
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def job_scope():
    """Leave no rendezvous variables or process group behind for the next job of a sweep."""
    saved = {k: os.environ.get(k) for k in RENDEZVOUS}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
