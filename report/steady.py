"""Steady-state rates and one-time costs, kept apart: every rate the report shows (training speed, power efficiency,
J/sample) is the one after the warm-up steps; warm-up (compile, graph capture, the first steps) is a one-time cost of
its own, in time and energy.

A run records these directly (`steady_*`, `warmup_*` under `costs`). An older record, or one from before the
callbacks split energy at the end of warm-up, holds only totals and the warm-up time; the figures are then derived
from what it holds and their `source` says how (never a zero for an unknown).
"""

from __future__ import annotations

import math
import re

from study import record

# figures the report reads beyond study/record.py's (recorded by newer runs, derived here for older ones)
DERIVED = {
    "warmup_energy_kwh": "kWh",  # energy of the warm-up steps: compile, capture, the first steps
    "warmup_samples": "samples",  # training samples seen in the warm-up steps
    "steady_joules_per_sample": "J/sample",  # training energy per sample after warm-up
    "steady_avg_power_w": "W",  # average power after warm-up
    "steady_power_efficiency": "samples/s/W",  # steady_train_samples_per_s over steady_avg_power_w
    "projected_energy_kwh": "kWh",  # report/projection.py: a full fine-tune's energy
    "projected_train_time_s": "s",  # report/projection.py: a full fine-tune's training time
}
COSTS = {**record.COSTS, **{k: v for k, v in DERIVED.items() if k not in record.COSTS}}
STEPS = re.compile(r"first (\d+) optimizer steps")


def _known(row: dict, name: str) -> bool:
    v = row.get(name)
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _set(row: dict, name: str, value, source: str) -> None:
    if value is not None and math.isfinite(value):
        row[name] = float(value)
        row[f"{name}_source"] = source


def fill(row: dict) -> None:
    """Derive, in place, the steady and one-time figures a run did not record (a recorded one is kept as is)."""
    if not _known(row, "steady_avg_power_w") and _known(row, "avg_power_w"):
        _set(row, "steady_avg_power_w", row["avg_power_w"],
             "derived: avg_power_w (no steady power recorded: power over all training steps, warm-up included)")
    if not _known(row, "steady_joules_per_sample") and _known(row, "steady_avg_power_w") and _known(row, "steady_train_samples_per_s") \
            and row["steady_train_samples_per_s"] > 0:
        _set(row, "steady_joules_per_sample", row["steady_avg_power_w"] / row["steady_train_samples_per_s"],
             "derived: steady_avg_power_w / steady_train_samples_per_s")
    if not _known(row, "steady_power_efficiency") and _known(row, "steady_avg_power_w") and _known(row, "steady_train_samples_per_s") \
            and row["steady_avg_power_w"] > 0:
        _set(row, "steady_power_efficiency", row["steady_train_samples_per_s"] / row["steady_avg_power_w"],
             "derived: steady_train_samples_per_s / steady_avg_power_w")
    if not _known(row, "warmup_energy_kwh") and _known(row, "warmup_time_s") and _known(row, "avg_power_w"):
        _set(row, "warmup_energy_kwh", row["avg_power_w"] * row["warmup_time_s"] / 3.6e6,
             "derived: avg_power_w x warmup_time_s (no warm-up energy recorded)")
    if not _known(row, "warmup_samples") and _known(row, "effective_batch_size"):
        # the speed callback says how many steps it timed as warm-up: that many optimizer steps of the effective batch
        steps = STEPS.search(str(row.get("warmup_time_s_source") or ""))
        if steps and _known(row, "warmup_time_s"):
            _set(row, "warmup_samples", int(steps.group(1)) * float(row["effective_batch_size"]),
                 f"derived: {steps.group(1)} warm-up optimizer steps (warmup_time_s's source) x effective_batch_size")
