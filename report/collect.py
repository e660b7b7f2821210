"""Run directories -> the tidy table: one row per train run, joined with its infer record.

A train run directory is one that train.py made: it holds `metrics.json` of kind `train`, or (a job that never got
to write one) `.hydra/` of a `train` job. Identity comes from metrics.json where the run recorded it (what actually
ran: e.g. the batch size `paper` resolved to) and from `.hydra/config.yaml` otherwise, so failed runs, which record
little, still say what they were. `<run>/infer/metrics.json` (infer.py) adds the validation score of the best
checkpoint and the inference costs.

Nothing is dropped: a failed, out-of-memory, interrupted or incomplete run is a row with its status and error; a
directory that holds no run is a note.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from report import projection, steady
from study import record

TASK_METRIC = {"summarization": "rgm", "qa": "f1"}
METRIC_LABEL = {"rgm": "Rgm", "f1": "F1", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
SKIP_DIRS = {"checkpoints", "logs", "model", "infer", ".hydra", "lightning_logs", "__pycache__"}
RECENT_S = 600  # an incomplete run whose record changed this recently may still be running

IDENTITY = [
    "model", "family", "parameters", "pretrained", "weights", "dataset", "task", "seq_len",
    "batch_size", "batch_size_source", "batch_size_probe", "accumulate_grad_batches", "effective_batch_size",
    "strategy", "devices", "num_nodes", "precision", "attn_impl", "compile", "cuda_graph", "residual_dtype", "seed",
]
ACCURACY = ["metric", "metric_value", "accuracy_source", "rouge1", "rouge2", "rougeL", "rgm", "f1", "train_best_value", "infer_status"]
PROGRESS = ["best_step", "global_step", "epochs", "stopped_early"]
COST_SOURCES = [f"{name}_source" for name in steady.COSTS]  # how each figure was obtained (or why it is unknown)
# what the run's experiment was (report/configurations.py groups by these): corpus, training budget, hardware
EXPERIMENT = ["corpus", "training_budget", "memory_budget", "max_steps", "max_epochs", "early_stopping", "train_set_size", "train_set_size_source"]
# provenance (metrics.json `provenance`) and CPU energy attribution (`cpu_attribution`); absent in older records
PROVENANCE = ["hardware", "gpu_names", "gpu_count", "gpu_memory_gib", "driver", "cpu_model", "host", "cuda", "torch",
              "transformers", "pytorch_lightning", "codecarbon", "git_commit", "git_dirty"]
ATTRIBUTION = ["tracking_mode", "process_cpu_pct", "machine_cpu_pct", "contended"]
COLUMNS = [
    "label", "status", "error", *IDENTITY, *ACCURACY, *PROGRESS, *steady.COSTS, "energy_source", "estimated",
    *EXPERIMENT, "over_memory_budget", *PROVENANCE, *ATTRIBUTION, "sweep", "job", "overrides", "run_dir", *COST_SOURCES,
]
UNKNOWN_HARDWARE = "unknown hardware"
COST_COLUMNS = ["run_dir", "label", "record", "cost", "value", "unit", "source"]


@dataclass
class Collection:
    table: pd.DataFrame  # results.csv
    costs: pd.DataFrame  # costs.csv: every recorded cost figure, long form (run, record, cost, value, unit, source)
    notes: list[str] = field(default_factory=list)  # directories skipped, and why


# ---- finding runs ------------------------------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        with open(path) as f:
            data = json.load(f)
        record.validate(data, str(path))
        return data, None
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _job_name(directory: Path) -> str | None:
    try:
        with open(directory / ".hydra" / "hydra.yaml") as f:
            return ((yaml.safe_load(f) or {}).get("hydra") or {}).get("job", {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def classify(directory: Path) -> str:
    """'train' (a train run), 'other' (a record that is not a train run: infer, score) or 'none'."""
    metrics = directory / record.FILENAME
    if metrics.exists():
        data, _ = _read_json(metrics)
        if data is None:  # unreadable: a run that broke while writing, or not ours
            return "train" if (directory / ".hydra").is_dir() and _job_name(directory) in (None, "train") else "other"
        return "train" if data.get("kind") == "train" else "other"
    if (directory / ".hydra" / "config.yaml").exists() and _job_name(directory) == "train":
        return "train"  # a train job that never wrote its record
    return "none"


def find_runs(dirs: list[Path], exclude: list[Path] = ()) -> tuple[list[Path], list[str]]:
    """Train run directories at or under each directory, each once, and notes on what was skipped."""
    exclude = {p.resolve() for p in exclude}
    runs: dict[Path, None] = {}
    notes: list[str] = []

    def walk(d: Path) -> int:
        if d.resolve() in exclude:
            return 0
        kind = classify(d)
        if kind == "train":
            runs.setdefault(d.resolve(), None)
            return 1
        if kind == "other":
            if d.name != "infer":  # <run>/infer belongs to its run; anything else is worth a note
                notes.append(f"{d}: skipped, its metrics.json is not a train run's (an infer/score record or unreadable)")
            return 0
        found = 0
        for child in sorted(p for p in d.iterdir() if p.is_dir()):
            if child.name.startswith(".") or child.name in SKIP_DIRS:
                continue
            found += walk(child)
        return found

    for d in dirs:
        if walk(d) == 0:
            notes.append(f"{d}: skipped, not a run directory and holds none (a run directory holds metrics.json or .hydra/ from train.py)")
    return list(runs), notes


# ---- one run -> one row --------------------------------------------------------------------------------------------
def _config(directory: Path) -> tuple[dict, list[str]]:
    cfg, overrides = {}, []
    try:
        with open(directory / ".hydra" / "config.yaml") as f:
            cfg = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        pass
    try:
        with open(directory / ".hydra" / "overrides.yaml") as f:
            overrides = [str(o) for o in (yaml.safe_load(f) or [])]
    except (OSError, yaml.YAMLError):
        pass
    return cfg, overrides


def _plain(value):
    """A config value, or None when it is an unresolved interpolation such as ${strategy.devices}."""
    if isinstance(value, str) and "${" in value:
        return None
    return value


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return _plain(node)


def _from_config(cfg: dict) -> dict:
    strategy = cfg.get("strategy") or {}
    batch = _get(cfg, "batch_size")
    accumulate = _get(cfg, "strategy.accumulate_grad_batches")
    devices, nodes = _get(cfg, "strategy.devices"), _get(cfg, "strategy.num_nodes")
    effective = None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (batch, accumulate, devices, nodes)) and devices > 0:
        effective = batch * accumulate * devices * nodes
    task, attn_impl = _get(cfg, "data.task"), _get(cfg, "model.attn_impl")
    precision = _get(cfg, "trainer.precision")  # its one key; runs before the impl group kept it in strategy
    if not isinstance(precision, str) or precision.startswith("${"):
        precision = _get(cfg, "strategy.precision")
    return {
        "model": _get(cfg, "model.name"), "family": _get(cfg, "model.family"), "pretrained": _get(cfg, "model.pretrained"),
        "dataset": _get(cfg, "data.name"), "task": task, "seq_len": _get(cfg, "seq_len"),
        "batch_size": batch if isinstance(batch, int) else None,
        "batch_size_source": ("config" if isinstance(batch, int) else f"config: {batch} (not resolved: the run did not get that far)") if batch is not None else None,
        "accumulate_grad_batches": accumulate, "effective_batch_size": effective,
        "strategy": strategy.get("name") if isinstance(strategy, dict) else None, "devices": devices, "num_nodes": nodes,
        "precision": precision, "attn_impl": attn_impl,
        "compile": _get(cfg, "model.compile") if attn_impl == "fast" else None,
        "cuda_graph": _get(cfg, "model.cuda_graph") if attn_impl == "fast" else None,
        "residual_dtype": _get(cfg, "model.residual_dtype") if attn_impl == "fast" else None, "seed": _get(cfg, "seed"),
        "metric": TASK_METRIC.get(task),
    }


def _value(costs: dict, name: str):
    m = costs.get(name)
    if not isinstance(m, dict) or m.get("value") is None:
        return None
    try:
        v = float(m["value"])
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def estimated(name: str, sources: dict, seen: frozenset = frozenset()) -> bool:
    """Whether a figure is an estimate: its source says so, or it is derived from one that is
    (power_efficiency = train_samples_per_s / avg_power_w, where avg_power_w comes from estimated energy)."""
    source = str(sources.get(name) or "").lower()
    if "estimated" in source:
        return True
    if source.startswith("derived") and name not in seen:
        return any(estimated(other, sources, seen | {name}) for other in sources if other != name and re.search(rf"\b{other}\b", source))
    return False


def _status(train: dict | None, error: str | None, metrics: Path) -> tuple[str, str | None]:
    if train is None:
        if error:
            return "incomplete", f"metrics.json unreadable ({error})"
        return "incomplete", "no metrics.json: the job never started its record"
    status = train.get("status")
    if status == "running":
        age = time.time() - metrics.stat().st_mtime
        hint = f"; its record changed {age:.0f} s ago, so it may still be running" if age < RECENT_S else ""
        return "incomplete", f"status 'running' with no end recorded: killed or still running{hint}"
    return status, train.get("error")


def load_run(directory: Path, accuracy: str = "infer", energy_cost: str = "energy_kwh") -> tuple[dict, list[dict]]:
    """(row, cost rows) of one train run directory."""
    cfg, overrides = _config(directory)
    train, train_error = (None, None)
    if (directory / record.FILENAME).exists():
        train, train_error = _read_json(directory / record.FILENAME)
    infer, _ = _read_json(directory / "infer" / record.FILENAME) if (directory / "infer" / record.FILENAME).exists() else (None, None)
    if infer is not None and infer.get("kind") != "infer":
        infer = None
    train = train if train is None or train.get("kind") == "train" else None

    row = {c: None for c in COLUMNS}
    row.update(_from_config(cfg))
    rec = train or {}
    for key in IDENTITY:
        src = "data" if key == "dataset" else key
        if rec.get(src) is not None:
            row[key] = rec[src]
    if rec.get("batch_size") is not None:
        row["batch_size_source"] = rec.get("batch_size_source") or "recorded"
    for key in ("parameters", "attn_impl", "model", "family", "pretrained"):  # infer rebuilt the model: as good a source
        if row[key] is None and infer and infer.get(key) is not None:
            row[key] = infer[key]
    row["metric"] = rec.get("metric") or (infer or {}).get("metric") or row["metric"]
    row["status"], row["error"] = _status(train, train_error, directory / record.FILENAME)
    for key in PROGRESS:
        row[key] = rec.get(key)

    # accuracy: infer's validation score of the best checkpoint, else train's best validation
    metric = row["metric"]
    row["train_best_value"] = rec.get(metric) if metric else None
    row["infer_status"] = infer.get("status") if infer else None
    if accuracy == "infer" and infer and infer.get("status") == "ok" and metric and infer.get(metric) is not None:
        chosen = infer
        row["accuracy_source"] = f"infer: validation score of the {infer.get('checkpoint') or 'best'} checkpoint, batch {infer.get('eval_batch_size', '?')}"
    else:
        chosen = rec
        why = "accuracy=train" if accuracy == "train" else (
            "no infer record" if infer is None else f"infer {infer.get('status')}" + (f": {infer.get('error')}" if infer.get("error") else "")
        )
        row["accuracy_source"] = f"train: best validation score during the fit ({why})" if metric and rec.get(metric) is not None else None
    for key in ("rouge1", "rouge2", "rougeL", "rgm", "f1"):
        row[key] = chosen.get(key)
    row["metric_value"] = chosen.get(metric) if metric and row["accuracy_source"] else None

    # costs: the inference figures from the infer record (train's if it alone has one), every other figure from the
    # train record only: the GPU, CPU and energy figures an infer record also holds describe inference, not training
    # (Figure 6 is about training). costs.csv keeps every figure of both records.
    cost_rows, merged = [], {}
    for kind, data in (("train", rec), ("infer", infer or {})):
        for name, m in (data.get("costs") or {}).items():
            cost_rows.append({"record": kind, "cost": name, "value": _value(data["costs"], name), "unit": m.get("unit"), "source": m.get("source")})
            inference = "inference" in name
            if name in steady.COSTS and (kind == "train" and name not in merged or kind == "infer" and inference):
                if kind == "infer" and name in merged and _value(data["costs"], name) is None:
                    continue  # keep a known figure over an unknown one
                merged[name] = m
    sources = {name: (merged.get(name) or {}).get("source") for name in steady.COSTS}
    if infer is None or infer.get("status") != "ok":
        why = "no infer record (python infer.py run_dir=<run>)" if infer is None else f"infer {infer.get('status')}"
        for name in steady.COSTS:
            if "inference" in name and _value(merged, name) is None:
                sources[name] = f"not recorded: {why}"
    for name in steady.COSTS:
        row[name] = _value(merged, name)
        row[f"{name}_source"] = sources[name]
    steady.fill(row)  # steady rates and one-time costs an older record does not hold, derived from what it holds
    sources = {name: row[f"{name}_source"] for name in steady.COSTS}
    row["energy_source"] = sources.get(energy_cost)
    row["estimated"] = ", ".join(n for n in steady.COSTS if row[n] is not None and estimated(n, sources)) or None
    row.update(experiment(cfg))
    row.update(provenance(rec.get("provenance")))
    cap = rec.get("batch_size_memory_gib", _get(cfg, "batch_size_memory_gib"))
    row["memory_budget"] = memory_budget(row["batch_size_source"], cap, row["gpu_memory_gib"])
    row["over_memory_budget"] = over_memory_budget(row["batch_size_source"], cap, cap_peak(row)[0])
    row.update(attribution(rec.get("cpu_attribution")))

    row["job"] = directory.name
    row["sweep"] = directory.parent.name
    row["overrides"] = " ".join(overrides) or None
    row["run_dir"] = _shown(directory)
    for c in cost_rows:
        c["run_dir"] = row["run_dir"]
    return row, cost_rows


def experiment(cfg: dict) -> dict:
    """What the run's experiment was, from its config: the corpus and its settings, and the training budget."""
    data = cfg.get("data") or {}
    corpus = str(data.get("name")) if data.get("name") is not None else None
    settings = dict(data.get("synthetic") or {}) if isinstance(data.get("synthetic"), dict) else {}
    for key in ("max_train_samples", "max_val_samples"):
        if data.get(key) is not None:
            settings[key] = data[key]
    if corpus and settings:
        corpus += " (" + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) + ")"
    trainer = cfg.get("trainer") or {}
    steps, epochs = _plain(trainer.get("max_steps")), _plain(trainer.get("max_epochs"))
    callbacks = cfg.get("callbacks") if isinstance(cfg.get("callbacks"), dict) else None
    stop = (callbacks or {}).get("early_stopping")
    early = None if callbacks is None else (f"patience {stop.get('patience')}" if isinstance(stop, dict) else "off")
    budget = []
    if isinstance(steps, int) and steps > 0:
        budget.append(f"{steps} steps")
    if isinstance(epochs, int) and epochs > 0:
        budget.append(f"at most {epochs} epochs")
    if early:
        budget.append(f"early stopping {early}")
    if _get(cfg, "data.val_every_steps") is not None:
        budget.append(f"validation every {_get(cfg, 'data.val_every_steps')} steps")
    if _get(cfg, "module.global_attention") == "question":  # another recipe: runs with it are their own experiment
        budget.append("global attention on the question")
    size, size_source = projection.train_set_size(cfg)
    return {
        "corpus": corpus, "training_budget": ", ".join(budget) or None,
        "max_steps": steps if isinstance(steps, int) and steps > 0 else None, "max_epochs": epochs if isinstance(epochs, int) else None,
        "early_stopping": early, "train_set_size": size, "train_set_size_source": size_source,
    }


def memory_budget(batch_source, cap, card_gib) -> str | None:
    """The memory a batch_size=auto run sized its batch to (the paper's 48 GB cards emulated, or the whole card): a
    hardware budget, so runs under different ones are different experiments. None where the batch was given."""
    if batch_source != "auto":
        return None
    if _is_gib(cap):
        return f"batch_size=auto within {cap:g} GiB"
    return "batch_size=auto, the whole card" + (f" ({card_gib} GiB)" if card_gib else "")


def cap_peak(row) -> tuple[float | None, str | None]:
    """(the peak a memory cap binds on, its kind): the reserved peak, or the allocated one where an older record has
    no reserved peak; (None, None) where neither was measured."""
    for kind in ("reserved", "allocated"):
        value = row.get(f"peak_memory_{kind}_gib")
        if value is not None and not pd.isna(value):
            return float(value), kind
    return None, None


def over_memory_budget(batch_source, cap, peak_gib) -> bool | None:
    """Whether a run sized by batch_size=auto within a cap took more than the cap while it trained (its peak reserved
    memory, or allocated where an older record has no reserved peak; its probe's step fitted: seen on the H200,
    2026-12-02, 45.9-49.7 GiB allocated under 48, the probe's captures left allocated into the run; a run is now
    held to its cap, so this flags older records); None where unknown."""
    if batch_source != "auto" or not _is_gib(cap) or peak_gib is None:
        return None
    return bool(peak_gib > cap)


def _is_gib(cap) -> bool:
    """batch_size_memory_gib as recorded: a number of GiB (null, or an old record's odd value, is no cap)."""
    return isinstance(cap, (int, float)) and not isinstance(cap, bool)


def hardware_key(prov: dict | None) -> str:
    """What ran it, as one key: `2 x NVIDIA H200` (the GPU count and name), the CPU model when no GPU was in use,
    `unknown hardware` for a record without provenance."""
    if not isinstance(prov, dict):
        return UNKNOWN_HARDWARE
    names = [str(n) for n in (prov.get("gpu_names") or []) if n]
    count = prov.get("gpu_count") or len(names)
    if names and count:
        kinds = sorted(set(names))
        return f"{count} x {' + '.join(kinds)}"
    return str(prov.get("cpu_model") or UNKNOWN_HARDWARE) + (" (CPU)" if prov.get("cpu_model") else "")


def provenance(prov: dict | None) -> dict:
    prov = prov if isinstance(prov, dict) else {}
    versions = prov.get("versions") if isinstance(prov.get("versions"), dict) else {}
    row = {"hardware": hardware_key(prov or None)}
    for key in ("gpu_names", "gpu_memory_gib"):
        row[key] = ", ".join(map(str, prov[key])) if isinstance(prov.get(key), list) and prov[key] else None
    for key in ("gpu_count", "driver", "cpu_model", "host", "cuda", "git_commit", "git_dirty"):
        row[key] = prov.get(key)
    for key in ("torch", "transformers", "pytorch_lightning", "codecarbon"):
        row[key] = versions.get(key)
    return row


def attribution(att: dict | None) -> dict:
    att = att if isinstance(att, dict) else {}
    return {key: att.get(key) for key in ATTRIBUTION}


def _shown(directory: Path) -> str:
    """Paths relative to where report.py runs, so a committed report holds no machine's absolute paths."""
    try:
        return str(directory.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(directory)


def _labels(table: pd.DataFrame) -> pd.Series:
    """`model @ seq_len`; where that is not unique in a dataset, what tells the runs apart is added in brackets:
    the effective batch, the status of runs that did not finish, the sweep, the seed, ... and at last a number."""
    def part(r, key):
        v = r[key]
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return ""
        if key == "status":
            return "" if v == "ok" else str(v)
        return {"effective_batch_size": f"batch {v}", "sweep": f"sweep {v}", "seed": f"seed {v}"}.get(key, str(v))

    base = table.apply(
        lambda r: f"{r['model'] if isinstance(r['model'], str) else '?'} @ {int(r['seq_len']) if not pd.isna(r['seq_len']) else '?'}", axis=1
    )
    labels = base.copy()
    for _, group in table.groupby([table["dataset"].astype(str), base], sort=False):
        if len(group) < 2:
            continue
        parts = {i: [] for i in group.index}
        for key in ("effective_batch_size", "status", "sweep", "seed", "attn_impl", "precision", "strategy", "job"):
            values = {i: part(table.loc[i], key) for i in group.index}
            if len(set(values.values())) > 1:
                for i in group.index:
                    parts[i].append(values[i])
            if len({tuple(p) for p in parts.values()}) == len(group):
                break
        seen: dict[tuple, int] = {}
        for i in group.index:
            key = tuple(parts[i])
            seen[key] = seen.get(key, 0) + 1
            words = [p for p in parts[i] if p] + ([f"#{seen[key]}"] if sum(tuple(q) == key for q in parts.values()) > 1 else [])
            labels[i] = base[i] + (f" ({', '.join(words)})" if words else "")
    return labels


def collect(dirs: list[Path], accuracy: str = "infer", energy_cost: str = "energy_kwh", exclude: list[Path] = ()) -> Collection:
    runs, notes = find_runs(dirs, exclude)
    rows, cost_rows = [], []
    for run in runs:
        row, costs = load_run(run, accuracy, energy_cost)
        rows.append(row)
        cost_rows += costs
    table = pd.DataFrame(rows, columns=COLUMNS)
    if len(table):
        for c in ("parameters", "seq_len", "batch_size", "accumulate_grad_batches", "effective_batch_size", "best_step", "global_step", "seed", "num_nodes"):
            table[c] = pd.to_numeric(table[c], errors="coerce").astype("Int64")
        for c in ["metric_value", "train_best_value", "rouge1", "rouge2", "rougeL", "rgm", "f1", "epochs", *steady.COSTS,
                  "process_cpu_pct", "machine_cpu_pct", "train_set_size"]:
            table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
        order = table.assign(_d=table["dataset"].fillna("~").astype(str), _m=table["model"].fillna("~").astype(str))
        table = table.loc[order.sort_values(["_d", "parameters", "_m", "seq_len", "run_dir"], na_position="last").index]
        table = table.reset_index(drop=True)
        table["label"] = _labels(table)
    costs = pd.DataFrame(cost_rows, columns=COST_COLUMNS)
    if len(costs):
        costs["label"] = costs["run_dir"].map(dict(zip(table["run_dir"], table["label"])))
    return Collection(table, costs, notes)
