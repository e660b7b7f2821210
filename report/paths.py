"""Stock HF against the fast path, configuration by configuration: the same model at the same input length in two
experiments that differ only in their implementation (same dataset and corpus, training budget, memory budget and
hardware). What the fast path buys (steady training speed, energy per training sample, projected fine-tune energy,
as ratios) and what it costs in accuracy (the difference of the means, and whether the spreads over seeds separate
it from noise); and how it moves the energy frontier: what the most accurate configuration costs on each path.
"""

from __future__ import annotations

import pandas as pd

from report.collect import METRIC_LABEL
from report.frontier import fmt, pareto, spread_overlaps, usable

SETTING_KEYS = ["dataset", "corpus", "training_budget", "memory_budget", "hardware"]  # the group keys but implementation
PATH_COLUMNS = [
    "setting", "experiment", "metric", "model", "seq_len", "stock", "fast", "stock_batch", "fast_batch", "stock_value", "fast_value",
    "n_stock", "n_fast", "difference", "separable", "speedup", "energy_per_sample_ratio", "projected_energy_ratio", "stock_warmup_s", "fast_warmup_s",
]


def setting_of(table: pd.DataFrame, keys=SETTING_KEYS) -> pd.Series:
    """What two experiments must share to be compared (a stock and a fast one: every group key but the
    implementation), as one text key."""
    parts = [table[k].astype(object).where(table[k].notna(), "?").astype(str) if k in table else pd.Series("?", index=table.index)
             for k in keys]
    return parts[0].str.cat(parts[1:], sep="; ")


def ratio(a, b):
    """a / b, NaN where either is unknown or b is not positive."""
    if any(v is None or pd.isna(v) for v in (a, b)) or b <= 0:
        return float("nan")
    return float(a) / float(b)


def compare(confs: pd.DataFrame, costs: dict, statuses=("ok",)) -> pd.DataFrame:
    """One row per configuration (model, seq_len) run on stock and on a fast implementation in one setting.
    speedup = fast / stock steady samples/s; energy_per_sample_ratio and projected_energy_ratio = stock / fast (how
    many times less energy); difference = fast - stock accuracy; separable False where the spreads overlap."""
    runs = usable(confs, statuses)
    if runs.empty or "implementation" not in runs or "attn_impl" not in runs:
        return pd.DataFrame(columns=PATH_COLUMNS)
    runs = runs.assign(_setting=setting_of(runs))
    rows = []
    for setting, group in runs.groupby("_setting", sort=True):
        stock, fast = group[group["attn_impl"].astype(str) == "hf"], group[group["attn_impl"].astype(str) == "fast"]
        pairs = [(a, b) for a in stock["implementation"].unique() for b in fast["implementation"].unique()]
        for s_impl, f_impl in pairs:
            for _, s in stock[stock["implementation"] == s_impl].iterrows():
                match = fast[(fast["implementation"] == f_impl) & (fast["model"] == s["model"]) & (fast["seq_len"] == s["seq_len"])]
                # every fast configuration of the cell (under batch_size=auto its batch may differ run to run of the
                # probe), not only the most accurate of them
                for _, f in match.iterrows():
                    rows.append({
                        "setting": setting, "metric": s["metric"], "model": s["model"], "seq_len": s["seq_len"],
                        "stock": s_impl, "fast": f_impl, "stock_batch": s.get("effective_batch_size"), "fast_batch": f.get("effective_batch_size"),
                        "stock_value": s["metric_value"], "fast_value": f["metric_value"], "n_stock": s.get("n_seeds"), "n_fast": f.get("n_seeds"),
                        **pair_measures(s, f, costs),
                        "stock_warmup_s": s.get(costs["warmup_time"]), "fast_warmup_s": f.get(costs["warmup_time"]),
                    })
    out = pd.DataFrame(rows, columns=PATH_COLUMNS)
    out["experiment"] = setting_names(out["setting"])
    return out


def pair_measures(a: pd.Series, b: pd.Series, costs: dict) -> dict:
    """What configuration b does against a of the same cell: the accuracy difference (b - a) and whether the spreads
    separate it, speedup = b / a steady samples/s, energy_per_sample_ratio and projected_energy_ratio = a / b (how
    many times less energy b takes)."""
    speed, jps = costs["train_speed"], costs["joules_per_sample"]
    return {
        "difference": b["metric_value"] - a["metric_value"], "separable": not spread_overlaps(a, b),
        "speedup": ratio(b.get(speed), a.get(speed)), "energy_per_sample_ratio": ratio(a.get(jps), b.get(jps)),
        "projected_energy_ratio": ratio(a.get("projected_energy_kwh"), b.get("projected_energy_kwh")),
    }


def setting_names(settings: pd.Series) -> pd.Series:
    """A setting's name: its dataset, and in brackets what sets it apart from the other settings of that dataset."""
    parts = settings.str.split("; ", expand=False)
    names = []
    for p in parts:
        others = [q for q in parts if q[0] == p[0]]
        differ = [p[i] for i in range(1, len(p)) if len({q[i] for q in others}) > 1]
        names.append(f"{p[0]} [{'; '.join(differ)}]" if differ else p[0])
    return pd.Series(names, index=settings.index, dtype=object)


def median_range(values: pd.Series, suffix: str = "x") -> str | None:
    known = pd.to_numeric(values, errors="coerce").dropna()
    if known.empty:
        return None
    if len(known) == 1:
        return f"{fmt(known.iloc[0])}{suffix}"
    return f"{fmt(known.median())}{suffix} (median; {fmt(known.min())}-{fmt(known.max())}{suffix})"


def ratio_parts(rows: pd.DataFrame, spec) -> list[str]:
    """'<words> <median (range)>' for each (column, words, suffix) of spec that has a known value."""
    texts = [(words, median_range(rows[column], suffix)) for column, words, suffix in spec]
    return [f"{words} {text}" for words, text in texts if text]


def accuracy_part(rows: pd.DataFrame, metric: str, seed_columns: tuple[str, str]) -> str:
    """How far the paired accuracies differ, and whether the spreads over seeds can tell that from noise."""
    sep = int(rows["separable"].astype(bool).sum())
    seeds = pd.to_numeric(pd.concat([rows[c] for c in seed_columns]), errors="coerce")
    if seeds.notna().all() and seeds.max() <= 1:
        verdict = "from one run each: no spread to tell a difference from noise (repeat with seeds)"
    else:
        verdict = f"separable from noise in {sep} of {len(rows)}" if sep else "inside the spreads over seeds in every one"
    return f"{metric} differs by at most {fmt(rows['difference'].abs().max())} points, {verdict}"


def frontier_shift(confs: pd.DataFrame, setting: str, stock: str, fast: str, energy: str, statuses=("ok",)) -> str | None:
    """The energy frontier's top on each path: the cheapest configuration at the highest accuracy it reaches."""
    runs = usable(confs, statuses)
    runs = runs[setting_of(runs) == setting] if len(runs) else runs
    tops = {}
    for name, impl in (("stock", stock), ("fast", fast)):
        front = pareto(runs[runs["implementation"] == impl], "metric_value", energy) if len(runs) else runs
        if front.empty:
            return None
        tops[name] = front.iloc[-1]  # sorted cheapest to dearest: the last is the most accurate
    s, f = tops["stock"], tops["fast"]
    times = ratio(s[energy], f[energy])
    return (f"the most accurate point of the energy frontier is {s['label']} ({fmt(s['metric_value'])}, {fmt(s[energy])} kWh) on "
            f"stock and {f['label']} ({fmt(f['metric_value'])}, {fmt(f[energy])} kWh) on the fast path"
            + (f": {fmt(times)}x less energy" if not pd.isna(times) else ""))


def summary(table: pd.DataFrame, confs: pd.DataFrame, costs: dict, statuses=("ok",)) -> list[str]:
    """Per setting and pair of implementations, one sentence: what the fast path bought, what it did to accuracy."""
    lines = []
    for (setting, stock, fast), rows in table.groupby(["setting", "stock", "fast"], sort=True):
        metric = METRIC_LABEL.get(rows["metric"].iloc[0], rows["metric"].iloc[0])
        parts = [f"{len(rows)} configuration{'s' if len(rows) != 1 else ''} ran on both"]
        parts += ratio_parts(rows, (("speedup", "training speed after warm-up", "x"), ("energy_per_sample_ratio", "energy per training sample", "x less"),
                                    ("projected_energy_ratio", "projected fine-tune energy", "x less")))
        parts.append(accuracy_part(rows, metric, ("n_stock", "n_fast")))
        shift = frontier_shift(confs, setting, stock, fast, costs["energy"], statuses)
        if shift:
            parts.append(shift)
        lines.append(f"On {rows['experiment'].iloc[0]} ({stock} against {fast}): " + "; ".join(parts) + ".")
    return lines
