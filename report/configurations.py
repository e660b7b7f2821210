"""Runs -> experiments (groups) -> configurations: repeats of one configuration (runs that differ only in seed) are
one configuration with n, mean and spread; runs of different experiments never share a table, frontier or answer.

An experiment (group) is what a comparison holds fixed: the dataset and its corpus settings, the training budget
(steps, epochs, early stopping, validation), the implementation (attention path, compile, step graph, precision,
strategy), the memory budget batch_size=auto sized batches to (48 GiB, the paper's cards, or the whole card) and the
hardware (unless pool_hardware=true). A configuration is a point in it: model and input length
(and batch, devices where those vary).

configurations.csv has one row per configuration: `n_seeds` (distinct seeds), `n_runs` (runs: a seed run twice, e.g.
again in a later call, is one seed and two runs), `<metric>_mean`, `<metric>_min`, `<metric>_max` (over the runs; and
`_std` where n_runs >= 3) for the task metric and each cost. Frontiers, steps and the answer use the means, and the
columns `metric_value`, `<cost>` of the table hold them, so report/frontier.py reads it like a table of runs.
"""

from __future__ import annotations

import pandas as pd

from report.frontier import implementation, n_runs, spread_overlaps, usable  # noqa: F401 - spread_overlaps: one place for it
from report.steady import COSTS

GROUP_KEYS = ["dataset", "corpus", "training_budget", "implementation", "memory_budget", "hardware"]
GROUP_NAMES = {"corpus": "corpus", "training_budget": "training budget", "implementation": "implementation",
               "memory_budget": "memory budget", "hardware": "hardware"}
CONFIG_KEYS = ["model", "seq_len", "batch_size", "effective_batch_size", "devices", "num_nodes", "pretrained"]
ACCURACY = ["metric_value", "rgm", "f1", "rouge1", "rouge2", "rougeL"]
# Accuracies are compared to this many decimals (on their 0-100 scale): past it a difference is float noise (the
# H200's block 1: Rgm 100 averaged to 99.99999999999997 or 100.00000000000001, and that noise put a 3x costlier tie first)
ACCURACY_DECIMALS = 9
CARRIED = ["family", "parameters", "task", "metric", "strategy", "precision", "attn_impl", "batch_size_source", "compile", "cuda_graph", "residual_dtype",
           "accumulate_grad_batches", "train_set_size", "train_set_size_source", "tracking_mode", "gpu_names", "cpu_model"]
PROJECTED = ["projected_samples", "projected_energy_kwh", "projected_train_time_s"]


def _text(series: pd.Series, missing: str) -> pd.Series:
    return series.astype(object).where(series.notna(), missing).astype(str)


def assign_groups(runs: pd.DataFrame, pool_hardware: bool = False) -> pd.DataFrame:
    """The runs with `implementation` and `group` (a name that says what sets the group apart, e.g.
    `synthetic` when there is one group per dataset, `synthetic [200 steps, 1 x NVIDIA H200]` when there are more)."""
    runs = runs.copy()
    if runs.empty:
        return runs.assign(implementation=pd.Series(dtype=object), group=pd.Series(dtype=object))
    runs["implementation"] = implementation(runs, ("attn_impl", "precision", "strategy"))
    for key in GROUP_KEYS:
        if key not in runs:
            runs[key] = None
    if pool_hardware:
        runs["hardware"] = "pooled: " + ", ".join(sorted(_text(runs["hardware"], "unknown hardware").unique()))
    keys = {key: _text(runs[key], "?") for key in GROUP_KEYS}
    frame = pd.DataFrame(keys)
    names = pd.Series(keys["dataset"], index=runs.index, dtype=object)
    for dataset, sub in frame.groupby("dataset", sort=False):
        differ = [k for k in GROUP_KEYS[1:] if sub[k].nunique() > 1]
        if not differ:
            continue
        for i, r in sub.iterrows():
            names[i] = f"{dataset} [{'; '.join(r[k] for k in differ)}]"
    runs["group"] = names
    return runs


def separating(runs: pd.DataFrame) -> list[str]:
    """What sets the groups of one dataset apart, said once per dataset that has more than one group."""
    lines = []
    if runs.empty or "group" not in runs:
        return lines
    for dataset, sub in runs.groupby("dataset", sort=True):
        if sub["group"].nunique() < 2:
            continue
        differ = [GROUP_NAMES[k] for k in GROUP_KEYS[1:] if _text(sub[k], "?").nunique() > 1]
        lines.append(f"{dataset}: {sub['group'].nunique()} experiments, apart in {', '.join(differ)}; each has its own table, "
                     "figures, frontier and answer")
    return lines


def _label(conf: pd.DataFrame) -> pd.Series:
    base = conf.apply(lambda r: f"{r['model'] if isinstance(r['model'], str) else '?'} @ "
                                f"{int(r['seq_len']) if not pd.isna(r['seq_len']) else '?'}", axis=1)
    labels = base.copy()
    for _, sub in conf.groupby([conf["group"], base], sort=False):
        if len(sub) < 2:
            continue
        for key, word in (("effective_batch_size", "batch"), ("batch_size", "per-device batch"), ("devices", "devices"),
                          ("num_nodes", "nodes"), ("pretrained", "pretrained")):
            if sub[key].astype(str).nunique() > 1:
                for i in sub.index:
                    labels[i] = f"{labels[i]} ({word} {sub.at[i, key]})"
                break
    return labels


def aggregate(table: pd.DataFrame, statuses=("ok",), pool_hardware: bool = False) -> pd.DataFrame:
    """One row per configuration of the runs that count (status in statuses, accuracy known)."""
    runs = assign_groups(usable(table, statuses), pool_hardware)
    if runs.empty:
        return pd.DataFrame(columns=["group", "label", "n_seeds"])
    rows = []
    keys = ["group", *CONFIG_KEYS]
    frame = runs.assign(**{f"_{k}": _text(runs[k], "?") for k in keys if k in runs})
    costs = [c for c in COSTS if c in runs] + [c for c in PROJECTED if c in runs and c not in COSTS]
    for _, sub in frame.groupby([f"_{k}" for k in keys if k in runs], sort=False):
        first = sub.iloc[0]
        row = {k: first.get(k) for k in [*GROUP_KEYS, "group", *CONFIG_KEYS, *CARRIED] if k in sub}
        row["status"] = "ok"
        n = len(sub)
        seeds = pd.to_numeric(sub["seed"], errors="coerce").dropna() if "seed" in sub else pd.Series(dtype=float)
        row["n_seeds"] = seeds.nunique() + (n - len(seeds))  # a run without a seed counts as its own
        row["n_runs"] = n
        row["seeds"] = ", ".join(str(int(s)) for s in sorted(sub["seed"].dropna())) if "seed" in sub else None
        row["runs"] = "; ".join(sub["run_dir"].astype(str)) if "run_dir" in sub else None
        contended = sub["contended"] if "contended" in sub else pd.Series(dtype=object)
        row["n_contended"] = int((contended.astype(str).str.lower() == "true").sum())
        for column in [*ACCURACY, *costs]:
            if column not in sub:
                continue
            values = pd.to_numeric(sub[column], errors="coerce").dropna()
            stem = first["metric"] if column == "metric_value" and isinstance(first.get("metric"), str) else None
            mean = values.mean() if len(values) else float("nan")
            stats = {"mean": mean, "min": values.min() if len(values) else float("nan"),
                     "max": values.max() if len(values) else float("nan"),
                     "std": values.std(ddof=1) if len(values) >= 3 else float("nan")}
            if column in ACCURACY:  # a mean of equal scores is that score, not it plus float noise
                stats = {k: round(v, ACCURACY_DECIMALS) for k, v in stats.items()}
                mean = stats["mean"]
            row[column] = mean
            for k, v in stats.items():
                row[f"{column}_{k}"] = v
            if stem and f"{stem}_mean" not in row:
                for k, v in stats.items():
                    row[f"{stem}_{k}"] = v
            if f"{column}_source" in sub:
                sources = sub[f"{column}_source"].dropna().astype(str).unique()
                row[f"{column}_source"] = sources[0] if len(sources) == 1 else "; ".join(sources) or None
        flags = sorted({f.strip() for e in sub.get("estimated", pd.Series(dtype=object)).dropna() for f in str(e).split(",") if f.strip()})
        row["estimated"] = ", ".join(flags) or None
        rows.append(row)
    conf = pd.DataFrame(rows)
    for c in ("parameters", "seq_len", "batch_size", "effective_batch_size", "n_seeds", "n_runs"):
        if c in conf:
            conf[c] = pd.to_numeric(conf[c], errors="coerce").astype("Int64")
    conf["label"] = _label(conf)
    order = conf.assign(_p=pd.to_numeric(conf["parameters"], errors="coerce"))
    conf = conf.loc[order.sort_values(["group", "_p", "model", "seq_len", "label"], na_position="last").index].reset_index(drop=True)
    first = ["group", "label", "n_seeds", "n_runs", "seeds", "n_contended"]
    return conf[first + [c for c in conf.columns if c not in first]]


def spread_text(r: pd.Series, column: str = "metric_value", fmt=None) -> str:
    """`35.2 (34.1-36.3, n=3)`; runs that repeat a seed: `(..., 2 runs of 1 seed)`; a single run: its value."""
    from report.frontier import fmt as default_fmt

    fmt = fmt or default_fmt
    n, seeds = n_runs(r), r.get("n_seeds")
    value = fmt(r.get(column))
    if n < 2 or pd.isna(r.get(f"{column}_min")):
        return value
    std = r.get(f"{column}_std")
    extra = f", std {fmt(std)}" if std is not None and not pd.isna(std) else ""
    count = (f"{n} runs of {int(seeds)} seed{'s' if int(seeds) > 1 else ''}"
             if seeds is not None and not pd.isna(seeds) and int(seeds) < n else f"n={n}")
    return f"{value} ({fmt(r[f'{column}_min'])}-{fmt(r[f'{column}_max'])}, {count}{extra})"
