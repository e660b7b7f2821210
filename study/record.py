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
        data = json.load(f)
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


def update(run_dir: str | os.PathLike, **fields) -> dict:
    """Merge fields into the run's metrics.json (costs merge key by key) and write it back atomically."""
    path = Path(run_dir) / FILENAME
    data = {"schema": SCHEMA}
    if path.exists():
        with open(path) as f:
            data = json.load(f)
    costs = fields.pop("costs", None)
    data.update(fields)
    if costs:
        data.setdefault("costs", {}).update(costs)
    validate(data, str(path))
    _atomic_write(path, data)
    return data
