"""Stock HF against the fast path, configuration by configuration, from a report's results.csv.

    python scripts/compare_paths.py docs/gpu-study/results.csv

Prints one markdown table per dataset: for each model and seq_len, the stock run (attn_impl=hf) and the fast run
(attn_impl=fast) side by side, with the ratio fast / stock of training samples/s (the whole run, compile and
warm-up included), of the steady rate after the warm-up steps where both runs recorded it, of joules per training
sample (stock / fast: how many times less energy) and of inference samples/s. — means not recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report.frontier import fmt  # noqa: E402  (the report's number format: 3 significant digits, — if unknown)

COLUMNS = [  # (results.csv column, heading, ratio direction: 1 = fast / stock, -1 = stock / fast)
    ("train_samples_per_s", "training samples/s", 1),
    ("steady_train_samples_per_s", "after warm-up", 1),
    ("joules_per_sample", "J / training sample", -1),
    ("inference_samples_per_s", "inference samples/s", 1),
]


def ratio(stock, fast, direction) -> str:
    if any(v is None or pd.isna(v) or v == 0 for v in (stock, fast)):
        return "—"
    return f"{(fast / stock) ** direction:.2f}x"


def tables(results: pd.DataFrame) -> str:
    ok = results[results["status"] == "ok"]
    out = []
    for dataset, group in ok.groupby("dataset", sort=True):
        out.append(f"### {dataset}\n")
        head = "| model | seq_len | " + " | ".join(f"{h}: stock / fast (ratio)" for _, h, _ in COLUMNS) + " |"
        out += [head, "|" + "---|" * (2 + len(COLUMNS))]
        for (model, seq_len), runs in group.groupby(["model", "seq_len"], sort=False):
            stock, fast = runs[runs["attn_impl"] == "hf"], runs[runs["attn_impl"] == "fast"]
            if stock.empty or fast.empty:
                continue
            s, f = stock.iloc[0], fast.iloc[0]
            cells = [f"{fmt(s[c])} / {fmt(f[c])} ({ratio(s[c], f[c], d)})" for c, _, d in COLUMNS]
            out.append(f"| {model} | {int(seq_len)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/compare_paths.py <report>/results.csv")
    print(tables(pd.read_csv(sys.argv[1])))
