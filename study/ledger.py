"""A run is a ledger of training segments: each start (fresh or resumed) until its end (finished, interrupted,
failed or killed) is one entry of metrics.json's `segments`, and the run's `costs` are the totals over them.

Totals: additive figures (units s and kWh, and the sample/token counts) are summed; an unknown figure in any
segment makes its total unknown (null), never a partial sum. Rates are re-derived from the sums by
`callbacks.derived.derive`, the same function one segment uses. Utilisation and memory used: mean over
segments weighted by their training time; peak memory: max.
"""

from __future__ import annotations

import socket
import time

from callbacks.derived import derive
from study.record import measurement

COUNTS = ("samples", "tokens", "warmup_samples")
ADDITIVE_UNITS = ("s", "kWh")
NOT_ADDITIVE = ("time_to_best_s",)  # a moment in the fit, not a duration to add up
WEIGHTED = ("gpu_utilization_pct", "gpu_memory_used_gib", "cpu_utilization_pct")
MAXED = ("peak_memory_allocated_gib", "peak_memory_reserved_gib")
KILLED = "unknown: the segment was killed before it could measure this (figures end at its last saved state)"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None


def open_segment(start_step: int) -> dict:
    """A segment as it starts: `ended` stays `running` until it ends; a later segment that finds it so marks it `killed`."""
    return {"start": now(), "end": None, "ended": "running", "start_step": int(start_step), "end_step": int(start_step),
            "steps": 0, "samples": 0, "host": socket.gethostname(), "gpu": gpu_name(), "costs": {}}


def close_killed(segments: list[dict], resumed_step: int | None) -> list[dict]:
    """A segment left `running` by a process that died: its work counts up to the state it last saved, and its
    costs are those of its last snapshot (taken at each validation, just before the state is saved); what it
    spent after that is lost work, in no figure."""
    out = []
    for seg in segments:
        if seg.get("ended") == "running":
            seg = dict(seg, ended="killed")
            kept = ("the last saved state" if resumed_step is None or resumed_step == seg["end_step"]
                    else f"the run resumed from step {resumed_step}")
            note = f" ({kept}; the segment was killed: what it spent after that is lost work)"
            seg["costs"] = {k: dict(m, source=m["source"] + note) if isinstance(m, dict) and m.get("value") is not None else m
                            for k, m in (seg.get("costs") or {}).items()}
            if resumed_step is not None and resumed_step >= seg["start_step"]:
                per_step = seg["samples"] / seg["steps"] if seg.get("steps") else None
                seg["end_step"], seg["steps"] = resumed_step, resumed_step - seg["start_step"]
                if per_step is not None:
                    seg["samples"] = int(round(per_step * seg["steps"]))
        out.append(seg)
    return out


def _sum(values: list):
    return None if not values or any(v is None for v in values) else sum(values)


def totals(segments: list[dict]) -> dict:
    """The run's costs over all its segments."""
    if not segments:
        return {}
    costs: dict = {}
    names = [k for seg in segments for k in seg.get("costs", {})]
    names = list(dict.fromkeys(names))
    additive = {}
    killed = [i for i, seg in enumerate(segments) if seg.get("ended") == "killed"]
    for name in names:
        ms = [seg.get("costs", {}).get(name) for seg in segments]
        unit = next(m["unit"] for m in ms if m)
        if unit in ADDITIVE_UNITS and name not in NOT_ADDITIVE:
            values = [m["value"] if m else None for m in ms]
            total = _sum(values)
            missing = [i for i, v in enumerate(values) if v is None]
            # the latest segment's source; a killed one's figures end at its last snapshot
            source = next(m["source"] for m in reversed(ms) if m and m["value"] is not None) if total is not None else None
            if total is not None and killed:
                source += f"; segment(s) {', '.join(map(str, killed))} killed: counted up to their last saved state"
            additive[name] = measurement(
                total, unit, f"sum over {len(segments)} segment(s): {source}" if total is not None
                else f"unknown: segment {missing[0]} has no figure ({(ms[missing[0]] or {}).get('source', KILLED)})")
        elif name in WEIGHTED:
            pairs = [(m["value"], (seg["costs"].get("train_time_s") or {}).get("value")) for m, seg in zip(ms, segments) if m]
            known = [(v, w) for v, w in pairs if v is not None and w]
            weight = sum(w for _, w in known)
            first = next(m["source"] for m in ms if m)
            costs[name] = measurement(  # unknown everywhere: the segments' own reason (e.g. no GPU in use), unprefixed
                sum(v * w for v, w in known) / weight if known and weight else None, unit,
                f"time-weighted mean over {len(known)} segment(s): {first}" if known and weight else first)
        elif name in MAXED:
            values = [m["value"] for m in ms if m and m["value"] is not None]
            first = next(m["source"] for m in ms if m)
            costs[name] = measurement(max(values) if values else None, unit, f"max over segments: {first}" if values else first)
    costs.update(additive)
    # time to best: the segments before the one that reached the best, then its own time to it
    best = [i for i, seg in enumerate(segments) if (seg.get("costs", {}).get("time_to_best_s") or {}).get("value") is not None]
    if best:
        k = best[-1]
        before = _sum([(seg.get("costs", {}).get("train_time_s") or {}).get("value") for seg in segments[:k]]) if k else 0.0
        value = None if before is None else before + segments[k]["costs"]["time_to_best_s"]["value"]
        costs["time_to_best_s"] = measurement(value, "s", segments[k]["costs"]["time_to_best_s"]["source"] + ", summed over the segments before")
    counts = {c: _sum([seg.get(c) for seg in segments]) for c in COUNTS}
    costs.update(derive({**additive, **counts}))
    return costs
