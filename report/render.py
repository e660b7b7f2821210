"""report.md and report.html: the table, the figures, the frontier, the answer and the notes on how each figure was
obtained. Both are rendered from one list of blocks, so they always say the same; the HTML embeds the PNGs (base64)
and opens on its own, the Markdown links them from figures/.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from report.collect import METRIC_LABEL, cap_peak
from report.configurations import assign_groups, spread_text
from report.figures import NAMES as COST_NAMES
from report.frontier import FRONTIER_AXES, Answer, Frontier, fmt, n_runs, usable
from report.steady import COSTS as ALL_COSTS

UNKNOWN = "—"


# ---- blocks --------------------------------------------------------------------------------------------------------
@dataclass
class Block:
    kind: str  # heading | text | bullets | table | image
    content: object
    level: int = 0
    alt: str = ""
    marks: list | None = None  # table: per row, "" or a highlight (frontier | budget | answer)


NUMBER = re.compile(r"^[~+\-−]?[\d,]*\.?\d+(e[+\-]?\d+)?%?( \(.*\))?$")
HIGHLIGHT = {"answer": "background-color: #fff3c4; font-weight: 600;", "budget": "background-color: #eef6ee;",
             "frontier": "background-color: #e8f0fb;"}


def _numeric_columns(rows: list[list[str]]) -> list[int]:
    """Columns whose every known cell is a number (optionally `~`, a sign, a % or a bracketed spread): right-aligned."""
    out = []
    for j in range(len(rows[0]) if rows else 0):
        cells = [str(r[j]) for r in rows if str(r[j]) != UNKNOWN]
        if cells and all(NUMBER.match(c) for c in cells):
            out.append(j)
    return out


def styled_table(headers: list[str], rows: list[list[str]], marks: list | None, uid: str) -> str:
    """An HTML table through pandas' Styler: numbers right-aligned, frontier / in-budget / answer rows highlighted."""
    frame = pd.DataFrame([[_inline(c) for c in row] for row in rows], columns=range(len(headers)))
    sty = frame.style.hide(axis="index").format_index(lambda j: _inline(headers[j]), axis=1)
    sty = sty.set_uuid(uid).set_table_attributes('class="report"')
    numeric = _numeric_columns(rows)
    if numeric:
        sty = sty.set_properties(subset=numeric, **{"text-align": "right", "white-space": "nowrap"})
    if marks and any(marks):
        css = [HIGHLIGHT.get(m, "") for m in marks]
        sty = sty.apply(lambda row: [css[row.name]] * len(row), axis=1)
    return sty.to_html()


class Doc:
    def __init__(self):
        self.blocks: list[Block] = []

    def heading(self, text: str, level: int = 2):
        self.blocks.append(Block("heading", text, level))

    def text(self, text: str):
        self.blocks.append(Block("text", text))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(Block("bullets", list(items)))

    def table(self, headers: list[str], rows: list[list[str]], marks: list | None = None):
        self.blocks.append(Block("table", (headers, rows), marks=marks))

    def image(self, path: Path, alt: str):
        self.blocks.append(Block("image", path, alt=alt))

    # markdown
    def markdown(self, base: Path) -> str:
        out = []
        for b in self.blocks:
            if b.kind == "heading":
                out.append(f"{'#' * b.level} {b.content}")
            elif b.kind == "text":
                out.append(str(b.content))
            elif b.kind == "bullets":
                out.append("\n".join(f"- {item}" for item in b.content))
            elif b.kind == "table":
                headers, rows = b.content
                cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
                lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
                out.append("\n".join(lines))
            elif b.kind == "image":
                out.append(f"![{b.alt}]({Path(os.path.relpath(b.content, base)).as_posix()})")
        return "\n\n".join(out) + "\n"

    # html
    def html(self, title: str) -> str:
        body = []
        for n, b in enumerate(self.blocks):
            if b.kind == "heading":
                body.append(f"<h{b.level}>{_inline(b.content)}</h{b.level}>")
            elif b.kind == "text":
                body.append(f"<p>{_inline(b.content)}</p>")
            elif b.kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.content) + "</ul>")
            elif b.kind == "table":
                headers, rows = b.content
                body.append(f'<div class="scroll">{styled_table(headers, rows, b.marks, f"t{n}")}</div>')
            elif b.kind == "image":
                data = base64.b64encode(Path(b.content).read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}"></figure>')
        return HTML.format(title=html.escape(title), body="\n".join(body))


def _inline(text) -> str:
    """Escaped text with the little Markdown the report uses: **bold**, `code`, [text](link)."""
    s = html.escape(str(text), quote=False)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    s = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', s)
    return s.replace("\\|", "|")


HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; position: sticky; top: 0; }}
tr:nth-child(even) td {{ background-color: #fafafa; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
.scroll table {{ white-space: nowrap; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
code {{ background: #f4f4f4; padding: 0 3px; }}
</style></head><body>
{body}
</body></html>
"""


# ---- the report ----------------------------------------------------------------------------------------------------
def _n(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
        return UNKNOWN
    return fmt(v)


def _int(v) -> str:
    return UNKNOWN if v is None or pd.isna(v) else f"{int(v):,}"


def _params(v) -> str:
    if v is None or pd.isna(v):
        return UNKNOWN
    v = float(v)
    return f"{v / 1e9:.2f}B" if v >= 1e9 else f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"


def _s(v) -> str:
    return UNKNOWN if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _unit(cost: str) -> str:
    return ALL_COSTS.get(cost, "")


def _metric(m) -> str:
    return METRIC_LABEL.get(m, _s(m))


def _is_estimated(r, cost: str) -> bool:
    return cost in [x.strip() for x in _s(r.get("estimated")).split(",")]


def _cost(r, cost: str) -> str:
    """A cost figure for the table: — when unknown, ~ in front when it is an estimate."""
    text = _n(r[cost])
    return f"~{text}" if text != UNKNOWN and _is_estimated(r, cost) else text


RUN_SHOWN = ["power_efficiency", "energy", "joules_per_sample", "train_speed", "warmup_time", "warmup_energy", "inference_speed",
             "gpu_utilization", "gpu_memory", "train_time"]


def _contended(r) -> str:
    value = r.get("contended")
    return "yes" if str(value).lower() == "true" else "no" if str(value).lower() == "false" else UNKNOWN


def run_table(table: pd.DataFrame, costs: dict) -> tuple[list[str], list[list[str]]]:
    shown = [k for k in RUN_SHOWN if k in costs]
    headers = ["run", "status", "model", "params", "dataset", "seq len", "seed", "batch (effective)", "strategy x devices", "precision",
               "hardware", "metric", "value", "accuracy from"]
    headers += [f"{COST_NAMES.get(costs[k], costs[k])} ({_unit(costs[k])})" for k in shown] + ["CPU contention"]
    rows = []
    for _, r in table.iterrows():
        acc = _s(r["accuracy_source"]).split(":")[0] if r["accuracy_source"] else UNKNOWN
        devices = f"{_s(r['strategy'])} x {_s(r['devices'])}" + (f" x {int(r['num_nodes'])} nodes" if not pd.isna(r["num_nodes"]) and r["num_nodes"] > 1 else "")
        rows.append([
            r["label"], r["status"], _s(r["model"]), _params(r["parameters"]), _s(r["dataset"]), _int(r["seq_len"]), _int(r.get("seed")),
            f"{_int(r['batch_size'])} ({_int(r['effective_batch_size'])})", devices, _s(r["precision"]), _s(r.get("hardware")),
            _metric(r["metric"]), _n(r["metric_value"]), acc,
        ] + [_cost(r, costs[k]) for k in shown] + [_contended(r)])
    return headers, rows


CONF_SHOWN = [("energy", "measured total"), ("projected_energy", "projected"), ("projected_time", "projected"),
              ("joules_per_sample", "steady"), ("train_speed", "steady"), ("power_efficiency", "steady"),
              ("warmup_time", None), ("warmup_energy", None), ("inference_speed", None), ("train_time", "measured total")]


def _spread(r, column: str) -> str:
    text = spread_text(r, column)
    return f"~{text}" if text != UNKNOWN and _is_estimated(r, column) else text


def configuration_table(confs: pd.DataFrame, costs: dict, marks: dict) -> tuple[list[str], list[list[str]], list[str]]:
    """One experiment's configurations: n, the metric's mean (min-max, std where n >= 3) and each cost's mean."""
    columns = {**costs, "projected_energy": "projected_energy_kwh", "projected_time": "projected_train_time_s"}
    shown = [(k, w) for k, w in CONF_SHOWN if k in columns and columns[k] in confs
             and (not k.startswith("projected") or confs[columns[k]].notna().any())]
    metric = _metric(confs["metric"].iloc[0]) if len(confs) else "metric"
    headers = ["configuration", "marks", "n (seeds)", f"{metric} mean (min-max)"]
    headers += [f"{COST_NAMES.get(columns[k], columns[k])} ({_unit(columns[k])}{', ' + w if w else ''})" for k, w in shown]
    headers += ["runs under CPU contention"]
    rows, row_marks = [], []
    for _, r in confs.iterrows():
        mark = marks.get(r["label"], "")
        runs = n_runs(r)
        seeds = f"{int(r['n_seeds'])}" + (f" ({r['seeds']})" if isinstance(r.get("seeds"), str) and r["seeds"] else "")
        seeds += f", {runs} runs" if runs > int(r["n_seeds"]) else ""
        rows.append([r["label"], mark, seeds, _spread(r, "metric_value")] + [_spread(r, columns[k]) for k, _ in shown]
                    + [str(int(r["n_contended"])) if not pd.isna(r.get("n_contended")) else UNKNOWN])
        row_marks.append(mark.split(",")[0] if mark else "")
    return headers, rows, row_marks


def frontier_section(doc: Doc, fronts: list[Frontier]) -> None:
    for dataset in sorted({f.dataset for f in fronts}):
        doc.heading(dataset, 3)
        for f in (f for f in fronts if f.dataset == dataset):
            noun = FRONTIER_AXES[f.axis]["noun"]
            direction = "lower is better" if f.minimize else "higher is better"
            title = f"**{noun.capitalize()}** (`{f.cost}`, {_unit(f.cost)}, {direction})"
            if f.rows.empty:
                doc.text(f"{title}: not measured for any run, so no frontier.")
                continue
            order = "cheapest first" if f.minimize else "fastest first"
            doc.text(f"{title}: {len(f.rows)} Pareto-optimal configuration{'s' if len(f.rows) > 1 else ''}, {order}"
                     " - no other run is at least as accurate at no higher cost.")
            doc.table(
                ["configuration", f"{_metric(f.metric)}", f"{noun} ({_unit(f.cost)})"],
                [[r["label"], spread_text(r, "metric_value"), spread_text(r, f.cost)] for _, r in f.rows.iterrows()],
            )
            if f.inseparable:
                doc.text("Not separable (their accuracy spreads over seeds overlap): "
                         + "; ".join(f"{a} and {b}" for a, b in f.inseparable) + ".")
            if f.unknown:
                doc.text(f"Left out, {noun} not measured: {', '.join(f.unknown)}.")


def _speed_change(r) -> str:
    if pd.isna(r["d_inference_samples_per_s"]):
        return UNKNOWN
    sign = "+" if r["d_inference_samples_per_s"] > 0 else ""
    pct = f" ({sign}{fmt(r['inference_speed_change_pct'], 2)}%)" if not pd.isna(r["inference_speed_change_pct"]) else ""
    return f"{sign}{fmt(r['d_inference_samples_per_s'])}{pct}"


def _separable(step) -> str:
    if not step["separable"]:
        return "no: spreads overlap"
    once = step.get("one_run")
    return "yes, from one seed (spread unknown)" if once is not None and not pd.isna(once) and bool(once) else "yes"


def steps_section(doc: Doc, steps: pd.DataFrame, summary: list[str], projected: bool = False) -> None:
    doc.text(
        "From each configuration, the two ways up that the paper compares: the same model at the next longer input, and "
        "the next bigger model of the same family (more parameters) at the same input. The cost of a step is "
        "what the better configuration costs more; per point is that extra cost over the accuracy gained (only for steps "
        "that gained). " + ("Costs are the projected full fine-tune's (`budget.basis=projected`): every configuration "
                            "trained on the same number of samples." if projected else "Costs are as measured.")
    )
    doc.bullets(summary)
    if steps.empty:
        doc.text("No such step exists in these runs: it takes two input lengths of one model, or two model sizes at one input length.")
        return
    if not projected and "batch_changes" in steps and steps["batch_changes"].fillna(False).astype(bool).any():
        doc.text("**Note:** in some steps the batch changes (chosen by `batch_size=auto` or the paper's table), so the two runs "
                 "trained on different numbers of samples and their measured totals are not the same work. "
                 "`project.samples=N budget.basis=projected` compares the same fine-tune.")
    unit = "kWh, projected" if projected else "kWh"
    time_unit = "s, projected" if projected else "s"
    doc.table(
        ["experiment", "from", "step", "to", "gain (points)", "separable", f"extra energy ({unit})", f"extra training time ({time_unit})",
         "inference speed change (samples/s)", "kWh per point", "training s per point", "cheaper way up from here"],
        [[r["dataset"], f"{r['from']} ({_n(r['from_value'])})", r["step"], f"{r['to']} ({_n(r['to_value'])})",
          ("+" if r["gain"] > 0 else "") + _n(r["gain"]), _separable(r),
          _n(r["d_energy_kwh"]), _n(r["d_train_time_s"]),
          _speed_change(r), _n(r["kwh_per_point"]), _n(r["train_s_per_point"]), _s(r["cheaper_way_up"])]
         for _, r in steps.iterrows()],
    )


def families_section(doc: Doc, fams: pd.DataFrame, projected: bool = False) -> None:
    doc.text("The paper's other finding: at equal input length, the most accurate configuration of each model family "
             "(LED, BigBird-Pegasus) in one experiment (of equals, the cheapest), side by side. A bigger-model step above "
             "stays inside a family. " + ("Costs are the projected full fine-tune's (`budget.basis=projected`)." if projected
                                          else "Costs are as measured."))
    if fams.empty:
        doc.text("No experiment ran two model families at one input length.")
        return
    unit, time_unit = ("kWh, projected", "s, projected") if projected else ("kWh", "s")
    doc.table(
        ["experiment", "input length", "LED side", "other side", "difference (points)", "more accurate", f"extra energy ({unit})",
         f"extra training time ({time_unit})", "inference speed change (samples/s)"],
        [[r["dataset"], _int(r["seq_len"]), f"{r['a']} ({_n(r['a_value'])})", f"{r['b']} ({_n(r['b_value'])})",
          ("+" if r["difference"] > 0 else "") + _n(r["difference"]), _s(r["more_accurate"]), _n(r["d_energy_kwh"]),
          _n(r["d_train_time_s"]), _n(r["d_inference_samples_per_s"])] for _, r in fams.iterrows()],
    )


def paths_section(doc: Doc, both: pd.DataFrame, lines: list[str]) -> None:
    doc.text("The same configuration (model, input length) on stock HF and on the fast path, in experiments that differ only in "
             "implementation: what the fast path buys per training sample, what it does to accuracy, and where it moves the "
             "energy frontier. Ratios: fast / stock for speed, stock / fast for energy. Every row: [paths.csv](paths.csv).")
    if both.empty:
        doc.text("No configuration ran on both paths in one setting (same corpus, training budget, memory budget, hardware).")
        return
    doc.bullets(lines)
    doc.table(
        ["experiment", "configuration", "stock / fast", "batch (stock / fast)", "accuracy (stock / fast)", "difference", "separable",
         "training speed", "energy per sample", "projected energy", "warm-up s (stock / fast)"],
        [[r["experiment"], f"{r['model']} @ {_int(r['seq_len'])}", f"{r['stock']} / {r['fast']}",
          f"{_n(r['stock_batch'])} / {_n(r['fast_batch'])}", f"{_n(r['stock_value'])} / {_n(r['fast_value'])}",
          ("+" if r["difference"] > 0 else "") + _n(r["difference"]), "yes" if r["separable"] else "no: spreads overlap",
          _x(r["speedup"]), _x(r["energy_per_sample_ratio"]), _x(r["projected_energy_ratio"]),
          f"{_n(r['stock_warmup_s'])} / {_n(r['fast_warmup_s'])}"] for _, r in both.iterrows()],
    )


def budgets_section(doc: Doc, pairs: pd.DataFrame, lines: list[str]) -> None:
    doc.text("The same configuration (model, input length) under a memory cap (`batch_size=auto` within "
             "`batch_size_memory_gib`, e.g. the paper's 48 GB cards) and on the whole card, in experiments that differ only "
             "in memory budget: what the larger budget buys (its batch, speed, energy per sample), what it does to accuracy, "
             "and whether the experiment's answer changes with it. Ratios: looser / tighter for batch and speed, tighter / "
             "looser for energy. Every row: [budgets.csv](budgets.csv).")
    if pairs.empty:
        doc.text("No configuration ran under two memory budgets in one setting (same corpus, training budget, implementation, hardware).")
        return
    doc.bullets(lines)
    doc.table(
        ["experiment", "configuration", "tighter / looser", "batch (tighter / looser)", "accuracy (tighter / looser)", "difference",
         "separable", "training speed", "energy per sample", "projected energy"],
        [[r["experiment"], f"{r['model']} @ {_int(r['seq_len'])}", f"{r['tighter']} / {r['looser']}",
          f"{_n(r['tighter_batch'])} / {_n(r['looser_batch'])}", f"{_n(r['tighter_value'])} / {_n(r['looser_value'])}",
          ("+" if r["difference"] > 0 else "") + _n(r["difference"]), "yes" if r["separable"] else "no: spreads overlap",
          _x(r["speedup"]), _x(r["energy_per_sample_ratio"]), _x(r["projected_energy_ratio"])] for _, r in pairs.iterrows()],
    )


def _x(v) -> str:
    return UNKNOWN if v is None or pd.isna(v) else f"{fmt(v)}x"


ROLES = {
    "power_efficiency": "Figures 1 and 5 (after warm-up)", "energy": "Figures 2 and 5, energy frontier, budget.kwh (measured total)",
    "joules_per_sample": "configuration table, projection (after warm-up)", "warmup_time": "one-time cost, projection",
    "warmup_energy": "one-time cost, projection",
    "train_speed": "Figures 3 and 5", "inference_speed": "Figures 4 and 5, inference-speed frontier, budget.min_inference_samples_per_s",
    "gpu_utilization": "Figure 6", "gpu_memory": "Figure 6", "train_time": "Figure 6, training-time frontier, budget.train_hours",
}


def notes_section(doc: Doc, table: pd.DataFrame, costs: dict, statuses, notes: list[str]) -> None:
    runs = usable(table, statuses)
    doc.text(
        f"How each cost the report uses was obtained, over the {len(runs)} runs in the figures (each run's own `source` "
        "strings; results.csv has them for every cost, costs.csv every figure each record holds). Estimates are marked ~ in "
        "the run table and `estimated` on the figures' axes."
    )
    rows = []
    for axis, role in ROLES.items():
        if axis not in costs:
            continue
        cost = costs[axis]
        values = runs[cost]
        flags = runs.apply(lambda r, cost=cost: _is_estimated(r, cost), axis=1) if len(runs) else pd.Series(dtype=bool)
        n_est = int((values.notna() & flags).sum()) if len(runs) else 0
        n_meas = int(values.notna().sum()) - n_est
        sources = runs.loc[values.notna(), f"{cost}_source"].dropna().unique().tolist()
        if n_est:
            sources = [f"{x} (from an estimate)" if str(x).startswith("derived") and "estimated" not in str(x) else x for x in sources]
        why = runs.loc[values.isna(), f"{cost}_source"].fillna("not recorded").unique().tolist()
        rows.append([
            f"`{cost}` ({_unit(cost)})", role, str(n_meas), str(n_est),
            str(int(values.isna().sum())) + (f" ({'; '.join(why)})" if why else ""), "; ".join(sources) or UNKNOWN,
        ])
    doc.table(["cost", "used for", "measured", "estimated", "unknown (why)", "how it was obtained"], rows)
    items = []
    acc = Counter(_s(s).split(" (")[0] for s in table["accuracy_source"].dropna())
    for source, n in acc.items():
        items.append(f"Accuracy of {n} run{'s' if n > 1 else ''}: {source}.")
    fallback_rows = table[table["accuracy_source"].fillna("").str.startswith("train")]
    if len(fallback_rows):
        items.append("Runs whose accuracy is train's best validation score, not infer.py's: "
                     + "; ".join(f"{r['label']} ({r['accuracy_source'].split('(', 1)[-1].rstrip(')')})" for _, r in fallback_rows.iterrows()) + ".")
    items.append(f"{UNKNOWN} in a table and a panel that says \"not measured\" mean unknown (null in metrics.json): never zero, never plotted.")
    items += notes
    doc.bullets(items)


def _over_budget(table: pd.DataFrame, group: str) -> str | None:
    """A warning where runs of an experiment under a memory budget allocated more than it while they trained."""
    if "over_memory_budget" not in table or "group" not in table:
        return None
    runs = table[(table["group"] == group) & (table["over_memory_budget"].astype(str).str.lower() == "true")]
    if runs.empty:
        return None
    measured = [cap_peak(r) for _, r in runs.iterrows()]
    peaks = pd.Series([p for p, _ in measured], dtype=float)
    span = fmt(peaks.min()) if peaks.min() == peaks.max() else f"{fmt(peaks.min())}-{fmt(peaks.max())}"
    kinds = sorted({k for _, k in measured if k}, reverse=True)
    took = " or ".join(kinds) or "took"
    return (f"**Over the memory budget:** {len(runs)} of this experiment's runs ({', '.join(runs['label'])}) {took} "
            f"{span} GiB at the peak of training, more than their budget ({runs['memory_budget'].iloc[0]}), though their "
            "probe's step fitted it (on the H200 such peaks were the probe's own captured steps, left allocated into the "
            "run before that was fixed; a run is now held to its cap). On a card of that size these batches may not fit "
            "(peak_memory_reserved_gib, peak_memory_allocated_gib and over_memory_budget in results.csv).")


def hardware_lines(table: pd.DataFrame) -> list[str]:
    """What produced the figures: per hardware key, its runs, and the software and commits they recorded."""
    lines = []
    for hw, sub in table.groupby(table["hardware"].fillna("unknown hardware") if "hardware" in table else pd.Series("unknown hardware", index=table.index), sort=True):
        parts = [f"**{hw}**: {len(sub)} run{'s' if len(sub) != 1 else ''}"]
        for column, name in (("gpu_memory_gib", "GPU memory GiB"), ("driver", "driver"), ("cuda", "CUDA"), ("cpu_model", "CPU"), ("host", "host")):
            values = sorted({str(v) for v in sub.get(column, pd.Series(dtype=object)).dropna()})
            if values:
                parts.append(f"{name} {', '.join(values)}")
        versions = []
        for column in ("torch", "transformers", "pytorch_lightning", "codecarbon"):
            values = sorted({str(v) for v in sub.get(column, pd.Series(dtype=object)).dropna()})
            if values:
                versions.append(f"{column} {'/'.join(values)}")
        if versions:
            parts.append(", ".join(versions))
        commits = sorted({str(v)[:10] + (" (dirty)" if str(d).lower() == "true" else "") for v, d in
                          zip(sub.get("git_commit", pd.Series(dtype=object)), sub.get("git_dirty", pd.Series(dtype=object))) if isinstance(v, str)})
        if commits:
            parts.append(f"commit {', '.join(commits)}")
        if hw == "unknown hardware":
            early = int((sub["status"] != "ok").sum()) if "status" in sub else 0
            why = []
            if early:
                why.append(f"{early} {'/'.join(sorted(set(sub.loc[sub['status'] != 'ok', 'status'])))} before training "
                           "began (such a record holds only its status)")
            if early < len(sub):
                why.append(f"{len(sub) - early} made before provenance was recorded")
            parts.append("their records hold no provenance: " + "; ".join(why))
        lines.append("; ".join(parts))
    return lines


def _marks(group_confs: pd.DataFrame, fronts: list[Frontier], answer: Answer | None, limits: dict, fits) -> dict:
    marks = {}
    energy = [f for f in fronts if f.dataset == group_confs["group"].iloc[0] and f.axis == "energy"]
    on_front = set(energy[0].rows["label"]) if energy else set()
    for label in group_confs["label"]:
        words = []
        if answer is not None and answer.best is not None and answer.best["label"] == label:
            words.append("answer")
        if limits and label in fits:
            words.append("budget")
        if label in on_front:
            words.append("frontier")
        marks[label] = ", ".join(words)
    return marks


def build(collection, confs: pd.DataFrame, figures: list[dict], fronts: list[Frontier], answers: list[Answer], steps: pd.DataFrame,
          summary: list[str], fams: pd.DataFrame, cfg, out: Path, argv: list[str], when: str, separate: list[str] = (),
          fitting: dict | None = None, both: tuple | None = None, grouped: pd.DataFrame | None = None,
          budgets: tuple | None = None) -> Doc:
    table, costs = collection.table, dict(cfg.costs)
    doc = Doc()
    doc.heading("Accuracy vs. efficiency of long-context models: report", 1)
    counts = Counter(table["status"])
    n_conf = len(confs)
    doc.text(
        f"`python report.py {' '.join(argv)}` on {when}: {len(table)} train run{'s' if len(table) != 1 else ''} "
        f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), {n_conf} configuration{'s' if n_conf != 1 else ''} "
        f"in {confs['group'].nunique() if n_conf else 0} experiment{'s' if n_conf and confs['group'].nunique() != 1 else ''}. "
        f"Runs that differ only in seed are one configuration (mean, min-max; a seed run again is another run of it, not another seed). "
        f"Figures, frontiers and the answer use runs whose status is {', '.join(cfg.statuses)} and whose accuracy is known; "
        f"the run table lists every run. {UNKNOWN} means not measured (unknown), never zero."
    )
    doc.text("Hardware" + (" (pooled: pool_hardware=true)" if cfg.pool_hardware else " (runs on different hardware are separate experiments)") + ":")
    doc.bullets(hardware_lines(table))

    doc.heading("The answer")
    if answers:
        for a in answers:
            doc.text(f"**{a.sentence}**")
            if a.beyond:
                doc.text(a.beyond)
    else:
        doc.text(f"**No run has finished with a known accuracy, so there is no answer yet ({len(table)} runs listed below).**")
    if not any(a.limits for a in answers):
        doc.text("Ask within a budget with `budget.kwh=`, `budget.train_hours=` or `budget.min_inference_samples_per_s=`; "
                 "`project.epochs=N` with `budget.basis=projected` asks it of a full fine-tune.")
    if cfg.budget.basis == "projected":
        doc.text("The budget is checked against the **projected** full fine-tune (see Projection), not the runs' measured costs.")

    if separate:
        doc.heading("Experiments")
        doc.text("Runs are compared only within one experiment: one dataset and corpus, training budget, implementation, memory "
                 "budget and hardware.")
        doc.bullets(list(separate))

    doc.heading("Configurations")
    doc.text("One row per configuration, per experiment: the mean over its runs (its seeds, and any seed run again), the spread (min-max; std where n >= 3) in brackets. "
             "Rates are steady-state (after warm-up); warm-up (compile, graph capture, the first steps) is its own one-time cost; "
             "the measured total training energy is as measured, warm-up included. Highlighted: the answer, configurations "
             "within the budget, and the energy frontier. Every column: [configurations.csv](configurations.csv).")
    if grouped is None:  # the usable runs, named by the experiment they belong to (report.py passes its own)
        grouped = assign_groups(usable(table, cfg.statuses), cfg.pool_hardware)
    for a_group, sub in confs.groupby("group", sort=True) if n_conf else []:
        answer = next((a for a in answers if a.dataset == a_group), None)
        meta = sub.iloc[0]
        doc.heading(str(a_group), 3)
        memory = f"; {meta.get('memory_budget')}" if isinstance(meta.get("memory_budget"), str) else ""
        doc.text(f"{_s(meta.get('corpus'))}; {_s(meta.get('training_budget'))}; {_s(meta.get('implementation'))}{memory}; {_s(meta.get('hardware'))}.")
        over = _over_budget(grouped, a_group)
        if over:
            doc.text(over)
        headers, rows, marks = configuration_table(sub, costs, _marks(sub, fronts, answer, answer.limits if answer else {}, (fitting or {}).get(a_group, set())))
        doc.table(headers, rows, marks)

    doc.heading("Runs")
    headers, rows = run_table(table, costs)
    doc.table(headers, rows)
    doc.text("Every column, with each cost's source: [results.csv](results.csv); every cost figure as recorded: [costs.csv](costs.csv).")
    contended = table[table.get("contended", pd.Series(dtype=object)).astype(str).str.lower() == "true"] if "contended" in table else table.iloc[0:0]
    if len(contended):
        doc.text("Measured under CPU contention (the machine's CPU load well above the run's own, so CodeCarbon's machine-level CPU "
                 "energy counts other work): " + ", ".join(contended["label"]) + ".")
    bad = table[table["status"] != "ok"]
    if len(bad):
        doc.heading("Runs that did not finish", 3)
        doc.bullets([f"**{r['label']}** ({_s(r['dataset'])}): {r['status']}: {_s(r['error'])} - `{r['run_dir']}`" for _, r in bad.iterrows()])
    no_acc = table[(table["status"] == "ok") & table["metric_value"].isna()]
    if len(no_acc):
        doc.text("Finished, but with no accuracy recorded (left out of the figures): " + ", ".join(no_acc["label"]) + ".")

    doc.heading("Figures")
    doc.text("As in the paper: the task metric (validation) against each cost, one colour per model, input length at each point; "
             "one point per configuration (mean over seeds, bars min to max). Budget limits are dashed lines, the side beyond shaded.")
    if not figures:
        doc.text("No figure: no run has finished with a known accuracy.")
    titles = {"efficiency": "Figures 1-5 (efficiency)", "hardware": "Figure 6 (hardware)", "projected": "accuracy vs. projected full fine-tune energy"}
    for f in figures:
        title = f"{f['dataset']}: {titles.get(f['figure'], f['figure'])}"
        if f.get("omitted"):
            doc.text(f"**{title}**: {f['omitted']}.")
            continue
        doc.heading(title, 3)
        doc.image(Path(f["files"]["png"]), title)
        notes = []
        for p in f["panels"]:
            if not p["measured"]:
                notes.append(f"{p['xlabel']}: not measured in these runs.")
            elif p["unknown"]:
                notes.append(f"{p['xlabel']}: {p['n_points']} configurations plotted; not measured for {', '.join(p['unknown'])}.")
        others = usable(table, cfg.statuses)
        dataset = f["dataset"].split(" [")[0]
        left = table[(table["dataset"] == dataset) & ~table.index.isin(others.index)]
        if len(left) and f["figure"] != "projected":
            notes.append(f"Not plotted ({', '.join(sorted(set(left['status'])))}): {', '.join(left['label'])}.")
        doc.bullets(notes)
        doc.text(f"Files: {', '.join(f'[{k.upper()}](figures/{Path(v).name})' for k, v in f['files'].items())}.")

    doc.heading("Pareto frontier")
    if fronts:
        frontier_section(doc, fronts)
    else:
        doc.text("No frontier: no run has finished with a known accuracy.")

    doc.heading("Bigger model or longer input?")
    steps_section(doc, steps, summary, cfg.budget.basis == "projected")

    doc.heading("LED or BigBird-Pegasus?")
    families_section(doc, fams, cfg.budget.basis == "projected")

    doc.heading("Stock or fast path?")
    paths_section(doc, *(both or (pd.DataFrame(), [])))

    doc.heading("Memory cap or the whole card?")
    budgets_section(doc, *(budgets or (pd.DataFrame(), [])))

    doc.heading("Projection")
    projection_section(doc, confs, cfg)

    doc.heading("Budget")
    limits = {k: v for k, v in dict(cfg.budget).items() if v is not None and k != "basis"}
    doc.text(("Limits: " + ", ".join(f"`budget.{k}={fmt(v)}`" for k, v in limits.items()) + f" on the {cfg.budget.basis} costs.") if limits else "No limit set.")
    for a in answers:
        extra = f" {a.fitting} of {a.considered} configurations fit." if limits else ""
        doc.text(f"{a.sentence}{extra}" + (f" {a.beyond}" if a.beyond else ""))

    doc.heading("Notes: what was measured, what was estimated")
    notes_section(doc, table, costs, cfg.statuses, collection.notes)
    return doc


def projection_section(doc: Doc, confs: pd.DataFrame, cfg) -> None:
    asked = cfg.project.epochs is not None or cfg.project.samples is not None
    if not asked:
        doc.text("Not asked for. `project.epochs=N` (or `project.samples=N`) projects each configuration's full fine-tune: "
                 "its one-time warm-up cost plus the remaining samples at its steady per-sample cost (training steps only).")
        return
    doc.text("projected_train_time_s = warmup_time_s + (samples - warm-up samples) / steady_train_samples_per_s; "
             "projected_energy_kwh = warmup_energy_kwh + (samples - warm-up samples) x steady_joules_per_sample. Training steps only: "
             "validation and checkpoint saving are not projected. Each configuration's inputs (configurations.csv, "
             "`projected_*_source` in results.csv):")
    rows = []
    for _, r in confs.iterrows():
        rows.append([str(r["group"]), r["label"], _n(r.get("projected_samples")), _n(r.get("warmup_time_s")), _n(r.get("warmup_energy_kwh")),
                     _n(r.get("steady_train_samples_per_s")), _n(r.get("steady_joules_per_sample")),
                     _n(r.get("projected_train_time_s")), _n(r.get("projected_energy_kwh")),
                     _s(r.get("projected_energy_kwh_source")) if pd.isna(r.get("projected_energy_kwh")) else "projected"])
    doc.table(["experiment", "configuration", "samples", "warm-up time (s)", "warm-up energy (kWh)", "steady samples/s",
               "steady J/sample", "projected training time (s)", "projected energy (kWh)", "label"], rows)


def write(doc: Doc, out: Path, title: str = "Accuracy vs. efficiency report") -> tuple[Path, Path]:
    md, page = out / "report.md", out / "report.html"
    for path, text in ((md, doc.markdown(out)), (page, doc.html(title))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return md, page
