"""The paper's efficiency figures, derived from additive ones by one pure function.

`derive(additive)` is used for one training segment and, unchanged, for a run's totals over its segments
(study/ledger.py sums the additive figures first), so a resumed run's rates are recomputed from summed time,
energy and sample counts, never averaged. Additive inputs are measurements ({value, unit, source}) in s or kWh,
plus the plain counts `samples`, `tokens` and `warmup_samples`. Add a new derived figure here, in one place.
"""

from __future__ import annotations

from callbacks.energy import KWH
from study.record import measurement

CLOCK = "measured: wall clock, gpu synchronised at phase boundaries"


def _v(additive: dict, key: str):
    m = additive.get(key)
    return m.get("value") if isinstance(m, dict) else m


def _ratio(a, b):
    return a / b if a is not None and b else None


def derive(additive: dict) -> dict:
    """Rates from additive figures: samples/s, tokens/s, steady samples/s, W, J/sample, samples/s/W."""
    seconds = _v(additive, "train_time_excl_validation_s")
    samples, tokens = _v(additive, "samples"), _v(additive, "tokens")
    warm_s, warm_n = _v(additive, "warmup_time_s"), _v(additive, "warmup_samples")
    e, e_gpu = _v(additive, "energy_train_kwh"), _v(additive, "energy_train_gpu_kwh")
    source = (additive.get("energy_train_kwh") or {}).get("source", "unknown")
    rate = _ratio(samples, seconds)
    power = _ratio(e * KWH, seconds) if e is not None else None
    gpu_power = _ratio(e_gpu * KWH, seconds) if e_gpu is not None else None
    steady_ok = None not in (samples, seconds, warm_s, warm_n) and seconds > warm_s
    # steady-state energy: the training phase after its warm-up steps, the one-time cost taken out, so that
    # warmup_energy_kwh + steady_joules_per_sample x steady samples = energy_train_kwh
    e_warm = _v(additive, "warmup_energy_kwh")
    n_warm = additive.get("warmup_steps")  # one segment's count; a ledger total names none
    if e is None:
        why = "unknown: training energy not measured"
    elif e_warm is None:
        why = f"unknown: warm-up energy not measured (the run had fewer than {n_warm or 'its warm-up'} optimizer steps)"
    elif not steady_ok or samples <= warm_n:
        why = f"unknown: no optimizer steps after the first {n_warm}" if n_warm else "unknown: no optimizer steps after the warm-up steps"
    else:
        why = None
    steady_j = (e - e_warm) * KWH if why is None else None
    steady_n, steady_s = (samples - warm_n, seconds - warm_s) if why is None else (None, None)
    steady_rate = _ratio(steady_n, steady_s)
    steady_power = _ratio(steady_j, steady_s)
    src = "derived: (energy_train_kwh - warmup_energy_kwh) over the training steps after the warm-up"
    return {
        "train_samples_per_s": measurement(rate, "samples/s", CLOCK + ", all ranks"),
        "train_tokens_per_s": measurement(_ratio(tokens, seconds), "tokens/s", CLOCK + ", all ranks, padded inputs"),
        "steady_train_samples_per_s": measurement(
            (samples - warm_n) / (seconds - warm_s) if steady_ok else None, "samples/s",
            f"{CLOCK}, all ranks, after the warm-up steps" if steady_ok else "unknown: no optimizer steps after the warm-up steps"),
        "avg_power_w": measurement(power, "W", f"derived: energy_train_kwh / train_time_excl_validation_s ({source})"),
        "avg_gpu_power_w": measurement(gpu_power, "W", "derived: training-phase GPU energy (nvml counter) / train_time_excl_validation_s"),
        "power_efficiency": measurement(
            rate / power if rate and power else None, "samples/s/W", "derived: train_samples_per_s / avg_power_w"),
        "gpu_power_efficiency": measurement(
            rate / gpu_power if rate and gpu_power else None, "samples/s/W",
            "derived: train_samples_per_s / avg_gpu_power_w (the paper's GPU-only view)"),
        "joules_per_sample": measurement(
            e * KWH / samples if e is not None and samples else None, "J/sample", "derived: energy_train_kwh / training samples"),
        "warmup_samples": measurement(
            warm_n, "samples", "counted: training samples of the warm-up steps, all ranks" if warm_n is not None
            else "unknown: the run had fewer optimizer steps than its warm-up steps"),
        "steady_joules_per_sample": measurement(_ratio(steady_j, steady_n), "J/sample", why or f"{src}, per training sample"),
        "steady_avg_power_w": measurement(steady_power, "W", why or f"{src}, per second of training"),
        "steady_power_efficiency": measurement(
            _ratio(steady_rate, steady_power), "samples/s/W", why or "derived: steady_train_samples_per_s / steady_avg_power_w"),
    }
