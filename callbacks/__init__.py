"""Measurement callbacks: energy (energy.py), speed and memory (speed.py), utilisation (utilization.py).

`collect_costs` gathers their figures after a run and derives the paper's efficiency metrics from them:
average power = training-phase energy / training time, power efficiency = training samples/s / average power,
joules per sample = training-phase energy / training samples.
"""

from __future__ import annotations

from callbacks.energy import KWH, EnergyCallback
from callbacks.speed import SpeedCallback
from callbacks.steady import steady_costs
from callbacks.utilization import UtilizationCallback
from study.record import measurement

__all__ = ["EnergyCallback", "SpeedCallback", "UtilizationCallback", "collect_costs"]


def collect_costs(trainer) -> tuple[dict, dict]:
    """(costs for metrics.json, extra fields such as the energy cross-check)."""
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
        seconds = costs["train_time_excl_validation_s"]["value"]
        samples = getattr(speed, "train_samples", None)
        rate = costs["train_samples_per_s"]["value"]
        e, e_gpu = getattr(energy, "train_energy_kwh", None), getattr(energy, "train_gpu_energy_kwh", None)
        source = getattr(energy, "total_source", "unknown")
        power = e * KWH / seconds if e is not None and seconds else None
        gpu_power = e_gpu * KWH / seconds if e_gpu is not None and seconds else None
        costs["avg_power_w"] = measurement(power, "W", f"derived: energy_train_kwh / train_time_excl_validation_s ({source})")
        costs["avg_gpu_power_w"] = measurement(gpu_power, "W", "derived: training-phase GPU energy (nvml counter) / train_time_excl_validation_s")
        costs["power_efficiency"] = measurement(
            rate / power if rate and power else None, "samples/s/W", "derived: train_samples_per_s / avg_power_w"
        )
        costs["gpu_power_efficiency"] = measurement(
            rate / gpu_power if rate and gpu_power else None, "samples/s/W", "derived: train_samples_per_s / avg_gpu_power_w (the paper's GPU-only view)"
        )
        costs["joules_per_sample"] = measurement(
            e * KWH / samples if e is not None and samples else None, "J/sample", "derived: energy_train_kwh / training samples"
        )
    if energy is not None and speed is not None and "train_time_excl_validation_s" in costs:
        costs.update(steady_costs(energy, speed))  # steady-state rates, the warm-up taken out (callbacks/steady.py)
    attribution = cpu_attribution(energy, utilization)
    if attribution is not None:
        extra["cpu_attribution"] = attribution
    return costs, extra


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
