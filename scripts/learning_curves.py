"""Learning curves of train.py runs: each validation's score (and the training loss) by optimizer step, read from
the runs' CSV logs (logs/metrics.csv) and labelled with what their configs set.

    python scripts/learning_curves.py <dir> [<dir> ...] [--out curves.csv] [--figure curves.png]

A directory is a run or holds runs (any depth). Prints one line per run: its label (the directory name), the
metric at each validation, the best and where. --out writes one row per (run, step) with the directory holding
the run (group), the run's model, seq_len, learning rate, curriculum and batch; --figure draws one panel per model (needs matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import yaml

FIELDS = ["group", "run", "model", "seq_len", "lr", "dropout", "weights", "global_attention", "min_doc_fraction", "batch_size", "seed", "status",
          "step", "samples", "metric", "value", "train_loss"]


def find_runs(paths: list[str]) -> dict[Path, str]:
    """Every run under the given directories -> its group: the folders between the directory given and the run
    (call5_grid/finetune_synthetic), so runs of one name in different calls stay apart."""
    runs: dict[Path, str] = {}
    for p in map(Path, paths):
        for run in sorted({m.parents[1] for m in p.rglob("logs/metrics.csv")} | ({p} if (p / "logs/metrics.csv").exists() else set())):
            group = run.parent.relative_to(p).as_posix() if run != p and run.parent != p else run.parent.name
            runs.setdefault(run, group)
    return runs


def _float(v: str) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def read_run(run: Path, group: str | None = None) -> list[dict]:
    """One row per validation: step, samples seen by then, the metric, the last training loss logged before it."""
    cfg = yaml.safe_load((run / ".hydra/config.yaml").read_text()) if (run / ".hydra/config.yaml").exists() else {}
    record = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    metric = record.get("metric") or ("f1" if (cfg.get("data") or {}).get("task") == "qa" else "rgm")
    batch = record.get("effective_batch_size") or record.get("batch_size") or cfg.get("batch_size")
    base = dict(
        group=group or run.parent.name, run=run.name, model=record.get("model") or (cfg.get("model") or {}).get("name"), seq_len=record.get("seq_len") or cfg.get("seq_len"),
        lr=(cfg.get("module") or {}).get("lr"), weights=record.get("weights"),
        # model.arch sets the architecture of random weights only: a checkpoint brings its own (see weights)
        dropout=((cfg.get("model") or {}).get("arch") or {}).get("dropout") if record.get("weights", "random") == "random" else None,
        global_attention=(cfg.get("module") or {}).get("global_attention"),
        min_doc_fraction=((cfg.get("data") or {}).get("synthetic") or {}).get("min_doc_fraction"),
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
    ap.add_argument("--hlines", default="", help="reference levels drawn dotted, e.g. 'ceiling 1024=27.5,guessing=5.4'")
    args = ap.parse_args(argv)
    runs = find_runs(args.dirs)
    if not runs:
        print(f"no run with logs/metrics.csv under: {' '.join(args.dirs)}", file=sys.stderr)
        return 2
    curves = {run: read_run(run, group) for run, group in runs.items()}  # by directory: names repeat across groups
    for run, rows in curves.items():
        if not rows:
            print(f"{runs[run]}/{run.name}: no validation logged")
            continue
        best = max(rows, key=lambda r: r["value"])
        curve = " ".join(f"{r['step']}:{r['value']:.1f}" for r in rows)
        print(f"{runs[run]}/{run.name} [{rows[0]['status']}] {rows[0]['metric']} by step: {curve} | best {best['value']:.1f} at step {best['step']}")
    table = [r for rows in curves.values() for r in rows]
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(table)
    if args.figure and table:
        hlines = {k.strip(): float(v) for k, v in (item.rsplit("=", 1) for item in args.hlines.split(",") if item.strip())}
        draw([rows for rows in curves.values() if rows], args.figure, hlines)
    return 0


def draw(curves: list[list[dict]], path: str, hlines: dict[str, float] | None = None) -> None:
    """One panel per model, one line per run (x: training samples seen when the batch is known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(rows[0]["model"] for rows in curves))
    by_samples = all(r["samples"] for rows in curves for r in rows)
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 5.2), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        for rows in (c for c in curves if c[0]["model"] == model):
            x = [r["samples"] if by_samples else r["step"] for r in rows]
            r0 = rows[0]
            start = f"dropout {r0['dropout']}" if r0["dropout"] is not None else f"from {Path(str(r0['weights']).split()[1]).name}"
            glob = ", global: question" if r0.get("global_attention") == "question" else ""
            label = f"{r0['group']}/{r0['run']}: seq_len {r0['seq_len']}, lr {r0['lr']}, {start}{glob}, seed {r0['seed']}"
            ax.plot(x, [r["value"] for r in rows], marker="o", ms=3, label=label, alpha=0.8)
        for name, level in (hlines or {}).items():
            ax.axhline(level, color="grey", ls=":", lw=0.8)
            ax.annotate(name, (1.0, level), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=6, color="grey")
        ax.set_title(model)
        ax.set_xlabel("training samples seen" if by_samples else "optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)  # below: never over a curve
    axes[0][0].set_ylabel(f"validation {curves[0][0]['metric']}")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    sys.exit(main())
