"""Measurement callbacks: energy (energy.py), speed and memory (speed.py), utilisation (utilization.py).

`collect_costs` gathers their figures after a run and derives the paper's efficiency metrics from them:
the rates (samples/s, W, J/sample, samples/s/W) come from `callbacks.derived.derive`, the one function that
also derives a resumed run's totals from its summed segments (study/ledger.py).
"""

from __future__ import annotations

from callbacks.derived import derive
from callbacks.energy import EnergyCallback
from callbacks.speed import SpeedCallback
from callbacks.utilization import UtilizationCallback
from study.record import measurement

__all__ = ["EnergyCallback", "SpeedCallback", "UtilizationCallback", "collect_costs", "train_gpu_energy"]


def collect_costs(trainer) -> tuple[dict, dict]:
    """(costs for metrics.json, extra fields such as the energy cross-check; `counts`: samples, tokens and
    warm-up samples of this segment, which the ledger sums)."""
    costs, extra = {}, {}
    energy = speed = utilization = None
    for cb in trainer.callbacks:
        if isinstance(cb, (EnergyCallback, SpeedCallback, UtilizationCallback)):
            costs.update(cb.results)
        if isinstance(cb, EnergyCallback):
            energy = cb
            if getattr(cb, "cross_check", None):
                extra["energy_cross_check"] = cb.cross_check
        if isinstance(cb, SpeedCallback):
            speed = cb
        if isinstance(cb, UtilizationCallback):
            utilization = cb
    if energy is not None and speed is not None and "train_time_excl_validation_s" in costs:
        costs["energy_train_gpu_kwh"] = train_gpu_energy(energy)
        extra["counts"] = {
            "samples": getattr(speed, "train_samples", None), "tokens": getattr(speed, "train_tokens", None),
            "warmup_samples": getattr(speed, "warmup_samples", None),
        }
        costs.update(derive({**costs, **extra["counts"], "warmup_steps": speed.warmup_steps}))
    attribution = cpu_attribution(energy, utilization)
    if attribution is not None:
        extra["cpu_attribution"] = attribution
    return costs, extra


def train_gpu_energy(energy) -> dict:
    """energy_train_gpu_kwh: the training phase's GPU energy (what avg_gpu_power_w divides), after finish or so_far."""
    return measurement(getattr(energy, "train_gpu_energy_kwh", None), "kWh", "measured: nvml counter deltas over the training phase")


def cpu_attribution(energy, utilization) -> dict | None:
    """metrics.json `cpu_attribution`: CodeCarbon's CPU scope and how much of the machine's CPU the run used."""
    if energy is None and utilization is None:
        return None
    share = getattr(utilization, "cpu_share", None) or {}
    return {
        "tracking_mode": getattr(energy, "tracking_mode", None),
        "process_cpu_pct": share.get("process_cpu_pct"),
        "machine_cpu_pct": share.get("machine_cpu_pct"),
        "contended": share.get("contended"),
    }
