"""Steady-state energy rates: the training phase after its warm-up steps, with the one-time cost taken out.

A short run's whole-phase rates hide compile, graph capture and warm-up inside a few steps (25.9 s of them in a
20-step fast-path run on the H200); what a long fine-tune sees is the rate after them. With E_train the measured
training-phase energy (energy_train_kwh) and E_warm its first warmup_steps optimizer steps (warmup_energy_kwh):

    steady energy            = E_train - E_warm
    steady_joules_per_sample = steady energy / samples after the warm-up
    steady_avg_power_w       = steady energy / training seconds after the warm-up
    steady_power_efficiency  = steady_train_samples_per_s / steady_avg_power_w

so that warmup_energy_kwh + steady_joules_per_sample x steady samples = energy_train_kwh. Unknown (too few steps,
energy not measured) is null with the reason as its source, never 0.
"""

from __future__ import annotations

from callbacks.energy import KWH
from study.record import measurement


def steady_costs(energy, speed) -> dict:
    """The steady-state figures from a finished EnergyCallback and SpeedCallback."""
    steps = getattr(speed, "warmup_steps", None)
    e_train, e_warm = getattr(energy, "train_energy_kwh", None), getattr(energy, "warmup_energy_kwh", None)
    steady = getattr(speed, "steady", None)  # (samples, seconds) after the warm-up, or None
    if e_train is None:
        why = "unknown: training energy not measured"
    elif e_warm is None:
        why = f"unknown: warm-up energy not measured (the run had fewer than {steps} optimizer steps)"
    elif not steady or steady[0] <= 0 or steady[1] <= 0:
        why = f"unknown: no optimizer steps after the first {steps}"
    else:
        why = None
    joules = (e_train - e_warm) * KWH if why is None else None
    samples, seconds = steady if why is None else (None, None)
    src = f"derived: (energy_train_kwh - warmup_energy_kwh) over the training steps after the first {steps}"
    power = joules / seconds if joules is not None else None
    rate = samples / seconds if samples is not None else None
    return {
        "steady_joules_per_sample": measurement(joules / samples if joules is not None else None, "J/sample",
                                                why or f"{src}, per training sample"),
        "steady_avg_power_w": measurement(power, "W", why or f"{src}, per second of training"),
        "steady_power_efficiency": measurement(rate / power if power else None, "samples/s/W",
                                               why or "derived: steady_train_samples_per_s / steady_avg_power_w"),
    }
