"""Under a memory cap or on the whole card, configuration by configuration: the same model at the same input length
in two experiments that differ only in their memory budget (batch_size=auto within batch_size_memory_gib, e.g. the
paper's 48 GB cards emulated, against the whole card; same dataset and corpus, training budget, implementation and
hardware). What the larger budget buys (its batch, steady training speed, energy per training sample, projected
fine-tune energy, as ratios), what it does to accuracy, and whether the experiment's answer changes with it: the
paper's QA finding (a smaller model winning through the bigger batch it fits) is a claim about such a pair.
"""

from __future__ import annotations

import re

import pandas as pd

from report.collect import METRIC_LABEL
from report.frontier import usable
from report.paths import accuracy_part, pair_measures, ratio, ratio_parts, setting_names, setting_of

SETTING_KEYS = ["dataset", "corpus", "training_budget", "implementation", "hardware"]  # the group keys but the memory budget
BUDGET_COLUMNS = [
    "setting", "experiment", "metric", "model", "seq_len", "tighter", "looser", "tighter_experiment", "looser_experiment",
    "tighter_batch", "looser_batch", "tighter_value", "looser_value", "n_tighter", "n_looser", "difference", "separable",
    "batch_ratio", "speedup", "energy_per_sample_ratio", "projected_energy_ratio",
]


def budget_gib(budget) -> float:
    """A memory budget's size for ordering: its cap in GiB, the whole card as infinity (its size is the card's)."""
    found = re.search(r"within ([0-9.]+) GiB", str(budget))
    return float(found.group(1)) if found else float("inf")


def compare(confs: pd.DataFrame, costs: dict, statuses=("ok",)) -> pd.DataFrame:
    """One row per configuration (model, seq_len) run under two memory budgets in one setting, the tighter budget
    first: batch_ratio and speedup = looser / tighter; energy_per_sample_ratio and projected_energy_ratio = tighter
    / looser (how many times less energy the larger budget takes); difference = looser - tighter accuracy."""
    runs = usable(confs, statuses)
    if runs.empty or "memory_budget" not in runs or runs["memory_budget"].isna().all():
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    runs = runs[runs["memory_budget"].notna()]
    runs = runs.assign(_setting=setting_of(runs, SETTING_KEYS))
    rows = []
    for setting, group in runs.groupby("_setting", sort=True):
        budgets = sorted(group["memory_budget"].unique(), key=budget_gib)
        for i, tight in enumerate(budgets):
            for loose in budgets[i + 1:]:
                for _, a in group[group["memory_budget"] == tight].iterrows():
                    match = group[(group["memory_budget"] == loose) & (group["model"] == a["model"]) & (group["seq_len"] == a["seq_len"])]
                    for _, b in match.iterrows():  # every configuration of the cell, not the best of them
                        rows.append({
                            "setting": setting, "metric": a["metric"], "model": a["model"], "seq_len": a["seq_len"],
                            "tighter": tight, "looser": loose, "tighter_experiment": a.get("group"), "looser_experiment": b.get("group"),
                            "tighter_batch": a.get("effective_batch_size"), "looser_batch": b.get("effective_batch_size"),
                            "tighter_value": a["metric_value"], "looser_value": b["metric_value"],
                            "n_tighter": a.get("n_seeds"), "n_looser": b.get("n_seeds"),
                            "batch_ratio": ratio(b.get("effective_batch_size"), a.get("effective_batch_size")),
                            **pair_measures(a, b, costs),
                        })
    out = pd.DataFrame(rows, columns=BUDGET_COLUMNS)
    out["experiment"] = setting_names(out["setting"])
    return out


def summary(table: pd.DataFrame, answers: dict) -> list[str]:
    """Per setting and pair of budgets, one sentence: what the larger budget bought, what it did to accuracy, and
    each budget's answer (answers: experiment name -> the answer's configuration label, or None: nothing fits)."""
    lines = []
    for (_, tight, loose), rows in table.groupby(["setting", "tighter", "looser"], sort=True):
        metric = METRIC_LABEL.get(rows["metric"].iloc[0], rows["metric"].iloc[0])
        parts = [f"{len(rows)} configuration{'s' if len(rows) != 1 else ''} ran under both"]
        parts += ratio_parts(rows, (("batch_ratio", "batch", "x"), ("speedup", "training speed after warm-up", "x"),
                                    ("energy_per_sample_ratio", "energy per training sample", "x less"),
                                    ("projected_energy_ratio", "projected fine-tune energy", "x less")))
        parts.append(accuracy_part(rows, metric, ("n_tighter", "n_looser")))
        groups = {tight: rows["tighter_experiment"].iloc[0], loose: rows["looser_experiment"].iloc[0]}
        if all(g in answers for g in groups.values()):  # each budget's experiment was answered (None: nothing fits)
            best = {b: answers[g] or "nothing (none fits the limits)" for b, g in groups.items()}
            same = best[tight] == best[loose]
            parts.append(f"the answer is {best[tight]} {'under both' if same else f'under the tighter budget and {best[loose]} under the looser'}"
                         + ("" if same else ": the budget changes it"))
        lines.append(f"On {rows['experiment'].iloc[0]} ({tight} against {loose}): " + "; ".join(parts) + ".")
    return lines
