"""Learning curves of train.py runs: each validation's score (and the training loss) by optimizer step, read from
the runs' CSV logs (logs/metrics.csv) and labelled with what their configs set.

    python scripts/learning_curves.py <dir> [<dir> ...] [--out curves.csv] [--figure curves.png]

A directory is a run or holds runs (any depth). Prints one line per run: its label (the directory name), the
metric at each validation, the best and where. --out writes one row per (run, step) with the run's model,
seq_len, learning rate, curriculum and batch; --figure draws one panel per model (needs matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import yaml

FIELDS = ["run", "model", "seq_len", "lr", "min_doc_fraction", "batch_size", "seed", "status", "step", "samples", "metric", "value", "train_loss"]


def find_runs(paths: list[str]) -> list[Path]:
    runs: list[Path] = []
    for p in map(Path, paths):
        runs += sorted({m.parents[1] for m in p.rglob("logs/metrics.csv")} | ({p} if (p / "logs/metrics.csv").exists() else set()))
    return list(dict.fromkeys(runs))


def _float(v: str) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def read_run(run: Path) -> list[dict]:
    """One row per validation: step, samples seen by then, the metric, the last training loss logged before it."""
    cfg = yaml.safe_load((run / ".hydra/config.yaml").read_text()) if (run / ".hydra/config.yaml").exists() else {}
    record = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    metric = record.get("metric") or ("f1" if (cfg.get("data") or {}).get("task") == "qa" else "rgm")
    batch = record.get("effective_batch_size") or record.get("batch_size") or cfg.get("batch_size")
    base = dict(
        run=run.name, model=record.get("model") or (cfg.get("model") or {}).get("name"), seq_len=record.get("seq_len") or cfg.get("seq_len"),
        lr=(cfg.get("module") or {}).get("lr"), min_doc_fraction=((cfg.get("data") or {}).get("synthetic") or {}).get("min_doc_fraction"),
        batch_size=batch, seed=record.get("seed") or cfg.get("seed"), status=record.get("status", "unknown"), metric=metric,
    )
    rows, loss = [], None
    with open(run / "logs/metrics.csv") as f:
        for line in csv.DictReader(f):
            if _float(line.get("train/loss")) is not None:
                loss = _float(line["train/loss"])
            value = _float(line.get(f"val/{metric}"))
            if value is not None:
                step = int(line["step"]) + 1  # Lightning logs the 0-based index of the step just taken
                samples = step * batch if isinstance(batch, int) else None
                rows.append(dict(base, step=step, samples=samples, value=round(value, 2), train_loss=loss))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--out", help="CSV of every (run, step)")
    ap.add_argument("--figure", help="PNG (or SVG) of the curves, one panel per model")
    args = ap.parse_args(argv)
    runs = find_runs(args.dirs)
    if not runs:
        print(f"no run with logs/metrics.csv under: {' '.join(args.dirs)}", file=sys.stderr)
        return 2
    table = [r for run in runs for r in read_run(run)]
    for run in runs:
        rows = [r for r in table if r["run"] == run.name]
        if not rows:
            print(f"{run.name}: no validation logged")
            continue
        best = max(rows, key=lambda r: r["value"])
        curve = " ".join(f"{r['step']}:{r['value']:.1f}" for r in rows)
        print(f"{run.name} [{rows[0]['status']}] {rows[0]['metric']} by step: {curve} | best {best['value']:.1f} at step {best['step']}")
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(table)
    if args.figure:
        draw(table, args.figure)
    return 0


def draw(table: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in table))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        for run in dict.fromkeys(r["run"] for r in table if r["model"] == model):
            rows = [r for r in table if r["run"] == run]
            x = [r["samples"] or r["step"] for r in rows]
            ax.plot(x, [r["value"] for r in rows], marker="o", ms=3, label=run)
        ax.set_title(model)
        ax.set_xlabel("training samples seen" if all(r["samples"] for r in table) else "optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"validation {table[0]['metric']}")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    sys.exit(main())
