"""metrics.json: the one record per run that train.py and infer.py write and report.py reads.

Identity (model, parameters, data, seq_len, batch size, strategy, devices, precision), accuracy (`metric` names the
task's score; `rouge1`/`rouge2`/`rougeL`/`rgm` or `f1`, x100), cost (`costs`: each figure with its unit and its
source, e.g. "measured: nvml" or "estimated: cpu tdp"; an unknown figure has value null, never 0) and `status`.
Written atomically, so a crash mid-write never leaves a half file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SCHEMA = 1
FILENAME = "metrics.json"
STATUSES = ("running", "ok", "oom", "failed", "interrupted")
KINDS = ("train", "infer", "score")
REQUIRED = ("schema", "kind", "status")
ACCURACY_KEYS = ("rouge1", "rouge2", "rougeL", "rgm", "f1")


# The cost figures a run can record under `costs`, with their units. Train runs record the training ones,
# infer runs the inference ones. Every entry also names its source (how it was obtained).
COSTS = {
    # energy (callbacks/energy.py): CodeCarbon per phase, NVML's counter as a cross-check
    "energy_kwh": "kWh",  # the whole fit: training steps + validation + checkpoint saving (+ compile/warm-up)
    "energy_train_kwh": "kWh",  # training steps only, validation and checkpoint saving excluded
    "energy_validation_kwh": "kWh",
    "energy_checkpoint_kwh": "kWh",  # after each validation, until the next step: checkpoint saving
    "energy_gpu_kwh": "kWh",  # parts of energy_kwh
    "energy_cpu_kwh": "kWh",
    "energy_train_gpu_kwh": "kWh",  # the training phase's GPU energy (nvml counter deltas): what avg_gpu_power_w divides
    "energy_ram_kwh": "kWh",
    "energy_inference_kwh": "kWh",  # infer runs: the generation pass
    "nvml_energy_kwh": "kWh",  # the GPUs' own total-energy counters over the same span as energy_kwh
    "avg_power_w": "W",  # energy_train_kwh over train_time_excl_validation_s (GPU + CPU + RAM)
    "avg_gpu_power_w": "W",  # the training phase's GPU energy alone over the same time
    "joules_per_sample": "J/sample",  # energy_train_kwh per training sample
    # speed (callbacks/speed.py)
    "train_time_s": "s",  # wall clock of the fit, validation and checkpoint saving included
    "train_time_excl_validation_s": "s",  # the optimizer steps alone (validation and checkpoint saving excluded)
    "validation_time_s": "s",
    "checkpoint_time_s": "s",
    "time_to_best_s": "s",  # fit wall clock until the best checkpoint's validation ended
    "train_samples_per_s": "samples/s",  # training samples over train_time_excl_validation_s, all ranks
    "warmup_time_s": "s",  # the first few optimizer steps (compile and warm-up), part of the training time
    "steady_train_samples_per_s": "samples/s",  # training samples/s over the steps after the warm-up steps
    # one-time and steady-state energy (callbacks/energy.py, callbacks/derived.py): warm-up + steady = energy_train_kwh
    "warmup_energy_kwh": "kWh",  # the first warmup_steps optimizer steps (compile, graph capture, warm-up)
    "warmup_samples": "samples",  # training samples of those steps, all ranks
    "steady_joules_per_sample": "J/sample",  # training energy after the warm-up per training sample after it
    "steady_avg_power_w": "W",  # training energy after the warm-up over the training time after it
    "steady_power_efficiency": "samples/s/W",  # steady_train_samples_per_s over steady_avg_power_w
    "train_tokens_per_s": "tokens/s",  # input tokens (padded to seq_len) over the same time
    "power_efficiency": "samples/s/W",  # the paper's metric: train_samples_per_s over avg_power_w
    "gpu_power_efficiency": "samples/s/W",  # over avg_gpu_power_w: the paper's wandb figure counted GPU power only
    "inference_time_s": "s",
    "inference_samples_per_s": "samples/s",
    # utilisation (callbacks/utilization.py), sampled in a background thread
    "gpu_utilization_pct": "%",
    "gpu_memory_used_gib": "GiB",  # average over the run, as nvidia-smi reports it
    "peak_memory_allocated_gib": "GiB",  # torch's peak allocation on the device
    "peak_memory_reserved_gib": "GiB",  # torch's peak reservation (allocated + cached + graph pools): what a cap binds
    "cpu_utilization_pct": "%",
}


class RecordError(ValueError):
    pass


def measurement(value: float | None, unit: str, source: str) -> dict:
    """A cost figure. `value=None` means unknown (not measured here), which is different from zero."""
    if value is not None:
        value = float(value)
        if not math.isfinite(value):
            value = None
    return {"value": value, "unit": unit, "source": source}


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / FILENAME
    with open(path) as f:
        try:
            data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise RecordError(f"{path} is not valid JSON ({type(e).__name__}: {e})") from None
    validate(data, str(path))
    return data


def validate(data: Any, origin: str = FILENAME) -> None:
    if not isinstance(data, dict):
        raise RecordError(f"{origin}: not a JSON object")
    for key in REQUIRED:
        if key not in data:
            raise RecordError(f"{origin}: missing '{key}'")
    if data["status"] not in STATUSES:
        raise RecordError(f"{origin}: status '{data['status']}' is not one of: {', '.join(STATUSES)}")
    if data["kind"] not in KINDS:
        raise RecordError(f"{origin}: kind '{data['kind']}' is not one of: {', '.join(KINDS)}")
    for name, m in (data.get("costs") or {}).items():
        if not isinstance(m, dict) or not {"value", "unit", "source"} <= set(m):
            raise RecordError(f"{origin}: cost '{name}' needs value, unit and source")


def update(run_dir: str | os.PathLike, replace_costs: bool = False, **fields) -> dict:
    """Merge fields into the run's metrics.json (costs merge key by key, unless replace_costs: the ledger's
    totals replace them) and write it back atomically. An unreadable record raises RecordError naming it."""
    path = Path(run_dir) / FILENAME
    data = {"schema": SCHEMA}
    if path.exists():
        try:
            with open(path) as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise RecordError(f"{path} is not valid JSON ({type(e).__name__}: {e}); left as it is") from None
    costs = fields.pop("costs", None)
    data.update(fields)
    if replace_costs:
        data["costs"] = dict(costs or {})
    elif costs:
        data.setdefault("costs", {}).update(costs)
    validate(data, str(path))
    _atomic_write(path, data)
    return data


def objectives(run_dir: str | os.PathLike) -> tuple[float, float] | None:
    """(task metric, training energy in kWh) of a finished train run: what train.py returns to a Hydra sweeper
    (experiment=search_budget maximises the first and minimises the second). None when the run did not finish or
    either figure is unknown: the Optuna sweeper marks such a trial failed rather than scoring a made-up value."""
    try:
        data = read(run_dir)
    except (OSError, ValueError):
        return None
    metric = data.get(data.get("metric") or "")
    energy = ((data.get("costs") or {}).get("energy_kwh") or {}).get("value")
    if data.get("status") != "ok" or metric is None or energy is None:
        return None
    return float(metric), float(energy)
