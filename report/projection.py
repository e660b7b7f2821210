"""What a full fine-tune would cost, projected from a short calibration run: the run's one-time cost (warm-up:
compile, graph capture, the first steps) plus the remaining samples at its steady per-sample cost.

    projected_train_time_s = warmup_time_s     + (samples - warmup_samples) / steady_train_samples_per_s
    projected_energy_kwh   = warmup_energy_kwh + (samples - warmup_samples) x steady_joules_per_sample / 3.6e6

`samples` is `project.samples`, or `project.epochs` x the training-set size. Training steps only: validation and
checkpoint saving are not projected (the paper validated every 500 steps; how often is a choice, not a cost of the
configuration). Each figure is labelled `projected` with its inputs; an input that is unknown makes it unknown.
"""

from __future__ import annotations

import math

import pandas as pd

# training-split sizes of the SCROLLS tasks (Shaham et al. 2022, Table 1), for project.epochs on the real corpora
SCROLLS_TRAIN = {"gov_report": 17457, "summ_screen_fd": 3673, "qmsum": 1257, "qasper": 2567}
COLUMNS = ["projected_energy_kwh", "projected_train_time_s"]


def train_set_size(cfg: dict) -> tuple[int | None, str]:
    """The number of training documents a run's config reads (after data.max_train_samples), and where it came from."""
    data = cfg.get("data") or {}
    size, source = None, "unknown: neither a generated corpus nor a SCROLLS task of known size"
    synthetic = data.get("synthetic") if isinstance(data.get("synthetic"), dict) else None
    if synthetic and isinstance(synthetic.get("n_train"), int):
        size, source = synthetic["n_train"], "config: data.synthetic.n_train"
    elif data.get("name") in SCROLLS_TRAIN:
        size, source = SCROLLS_TRAIN[data["name"]], "SCROLLS training split (Shaham et al. 2022, Table 1)"
    cap = data.get("max_train_samples")
    if isinstance(cap, int) and (size is None or cap < size):
        size, source = cap, "config: data.max_train_samples"
    return size, source


def _num(row, name):
    v = row.get(name)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def project_run(row, samples: float | None = None, epochs: float | None = None) -> dict:
    """{projected_energy_kwh, projected_train_time_s, projected_samples} with a `_source` for each."""
    out = {"projected_samples": None, "projected_samples_source": None}
    if samples is None and epochs is None:
        return out
    if samples is None:
        size = _num(row, "train_set_size")
        if size is None:
            why = f"unknown: training-set size not known ({row.get('train_set_size_source') or 'not recorded'}); give project.samples="
            for c in COLUMNS:
                out[c], out[f"{c}_source"] = None, why
            return out
        samples, basis = epochs * size, f"project.epochs={epochs:g} x {int(size):,} training samples"
    else:
        basis = f"project.samples={samples:g}"
    out["projected_samples"], out["projected_samples_source"] = samples, basis
    warm = _num(row, "warmup_samples")
    rest = samples - warm if warm is not None and warm <= samples else samples
    rest_text = f"{basis}, less {warm:g} warm-up samples" if warm is not None and warm <= samples else f"{basis} (warm-up samples unknown: none subtracted)"
    tail = "; training steps only, validation and checkpointing not included"
    specs = (
        ("projected_train_time_s", "warmup_time_s", "s", "steady_train_samples_per_s", lambda r: rest / r, "/"),
        ("projected_energy_kwh", "warmup_energy_kwh", "kWh", "steady_joules_per_sample", lambda j: rest * j / 3.6e6, "x"),
    )
    for column, once, unit, rate, scale, op in specs:
        a, b = _num(row, once), _num(row, rate)
        if a is None or b is None or (op == "/" and b <= 0):
            missing = [n for n, v in ((once, a), (rate, b)) if v is None or (n == rate and op == "/" and v <= 0)]
            out[column], out[f"{column}_source"] = None, f"unknown: {', '.join(missing)} not known"
            continue
        value = a + scale(b)
        flags = [x.strip() for x in str(row.get("estimated") or "").split(",")]
        estimated = once in flags or rate in flags
        out[column] = value
        out[f"{column}_source"] = (
            f"projected{' (from estimated inputs)' if estimated else ''}: {once} {a:.4g} {unit} + {rest:g} samples "
            f"{op} {rate} {b:.4g} ({rest_text}{tail})"
        )
    return out


def project(table: pd.DataFrame, samples: float | None = None, epochs: float | None = None) -> pd.DataFrame:
    """The table with the projection columns (unknown everywhere when no projection was asked for)."""
    table = table.copy()
    rows = [project_run(r, samples, epochs) for _, r in table.iterrows()]
    for column in ("projected_samples", *COLUMNS):
        table[column] = pd.to_numeric(pd.Series([r.get(column) for r in rows], index=table.index, dtype=object), errors="coerce").astype(float)
        table[f"{column}_source"] = pd.Series([r.get(f"{column}_source") for r in rows], index=table.index, dtype=object)
    if samples is not None or epochs is not None:
        flagged = []
        for i, r in table.iterrows():
            extra = [c for c in COLUMNS if not pd.isna(r[c]) and "estimated" in str(r[f"{c}_source"])]
            flagged.append(", ".join([x for x in [r.get("estimated")] if isinstance(x, str) and x] + extra) or None)
        if "estimated" in table:
            table["estimated"] = flagged
    return table
