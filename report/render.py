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

from report.collect import METRIC_LABEL
from report.figures import NAMES as COST_NAMES
from report.frontier import FRONTIER_AXES, Answer, Frontier, fmt, usable
from study import record

UNKNOWN = "—"


# ---- blocks --------------------------------------------------------------------------------------------------------
@dataclass
class Block:
    kind: str  # heading | text | bullets | table | image
    content: object
    level: int = 0
    alt: str = ""


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

    def table(self, headers: list[str], rows: list[list[str]]):
        self.blocks.append(Block("table", (headers, rows)))

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
        for b in self.blocks:
            if b.kind == "heading":
                body.append(f"<h{b.level}>{_inline(b.content)}</h{b.level}>")
            elif b.kind == "text":
                body.append(f"<p>{_inline(b.content)}</p>")
            elif b.kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.content) + "</ul>")
            elif b.kind == "table":
                headers, rows = b.content
                head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
                rows_html = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table></div>')
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
th {{ background: #f2f2f2; }}
tr:nth-child(even) td {{ background: #fafafa; }}
.scroll {{ overflow-x: auto; }}
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
    return record.COSTS.get(cost, "")


def _metric(m) -> str:
    return METRIC_LABEL.get(m, _s(m))


def _is_estimated(r, cost: str) -> bool:
    return cost in [x.strip() for x in _s(r.get("estimated")).split(",")]


def _cost(r, cost: str) -> str:
    """A cost figure for the table: — when unknown, ~ in front when it is an estimate."""
    text = _n(r[cost])
    return f"~{text}" if text != UNKNOWN and _is_estimated(r, cost) else text


def run_table(table: pd.DataFrame, costs: dict) -> tuple[list[str], list[list[str]]]:
    shown = ["power_efficiency", "energy", "train_speed", "inference_speed", "gpu_utilization", "gpu_memory", "train_time"]
    headers = ["run", "status", "model", "params", "dataset", "seq len", "batch (effective)", "strategy x devices", "precision",
               "metric", "value", "accuracy from"]
    headers += [f"{COST_NAMES.get(costs[k], costs[k])} ({_unit(costs[k])})" for k in shown]
    rows = []
    for _, r in table.iterrows():
        acc = _s(r["accuracy_source"]).split(":")[0] if r["accuracy_source"] else UNKNOWN
        devices = f"{_s(r['strategy'])} x {_s(r['devices'])}" + (f" x {int(r['num_nodes'])} nodes" if not pd.isna(r["num_nodes"]) and r["num_nodes"] > 1 else "")
        rows.append([
            r["label"], r["status"], _s(r["model"]), _params(r["parameters"]), _s(r["dataset"]), _int(r["seq_len"]),
            f"{_int(r['batch_size'])} ({_int(r['effective_batch_size'])})", devices, _s(r["precision"]),
            _metric(r["metric"]), _n(r["metric_value"]), acc,
        ] + [_cost(r, costs[k]) for k in shown])
    return headers, rows


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
                [[r["label"], _n(r["metric_value"]), _n(r[f.cost])] for _, r in f.rows.iterrows()],
            )
            if f.unknown:
                doc.text(f"Left out, {noun} not measured: {', '.join(f.unknown)}.")


def _speed_change(r) -> str:
    if pd.isna(r["d_inference_samples_per_s"]):
        return UNKNOWN
    sign = "+" if r["d_inference_samples_per_s"] > 0 else ""
    pct = f" ({sign}{fmt(r['inference_speed_change_pct'], 2)}%)" if not pd.isna(r["inference_speed_change_pct"]) else ""
    return f"{sign}{fmt(r['d_inference_samples_per_s'])}{pct}"


def steps_section(doc: Doc, steps: pd.DataFrame, summary: list[str]) -> None:
    doc.text(
        "From each configuration, the two ways up that the paper compares: the same model at the next longer input, and "
        "the next bigger model (more parameters, same family where there is one) at the same input. The cost of a step is "
        "what the better configuration costs more; per point is that extra cost over the accuracy gained (only for steps "
        "that gained)."
    )
    doc.bullets(summary)
    if steps.empty:
        doc.text("No such step exists in these runs: it takes two input lengths of one model, or two model sizes at one input length.")
        return
    doc.table(
        ["dataset", "from", "step", "to", "gain (points)", "extra energy (kWh)", "extra training time (s)",
         "inference speed change (samples/s)", "kWh per point", "training s per point", "cheaper way up from here"],
        [[r["dataset"], f"{r['from']} ({_n(r['from_value'])})", r["step"], f"{r['to']} ({_n(r['to_value'])})",
          ("+" if r["gain"] > 0 else "") + _n(r["gain"]), _n(r["d_energy_kwh"]), _n(r["d_train_time_s"]),
          _speed_change(r), _n(r["kwh_per_point"]), _n(r["train_s_per_point"]), _s(r["cheaper_way_up"])]
         for _, r in steps.iterrows()],
    )


ROLES = {
    "power_efficiency": "Figures 1 and 5", "energy": "Figures 2 and 5, energy frontier, budget.kwh",
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


def build(collection, figures: list[dict], fronts: list[Frontier], answers: list[Answer], steps: pd.DataFrame,
          summary: list[str], cfg, out: Path, argv: list[str], when: str) -> Doc:
    table, costs = collection.table, dict(cfg.costs)
    doc = Doc()
    doc.heading("Accuracy vs. efficiency of long-context models: report", 1)
    counts = Counter(table["status"])
    doc.text(
        f"`python report.py {' '.join(argv)}` on {when}: {len(table)} train run{'s' if len(table) != 1 else ''} "
        f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}). "
        f"Figures, frontiers and the answer use runs whose status is {', '.join(cfg.statuses)} and whose accuracy is known; "
        f"the table lists every run. {UNKNOWN} means not measured (unknown), never zero."
    )

    doc.heading("The answer")
    if answers:
        for a in answers:
            doc.text(f"**{a.sentence}**")
    else:
        doc.text(f"**No run has finished with a known accuracy, so there is no answer yet ({len(table)} runs listed below).**")
    if not any(a.limits for a in answers):
        doc.text("Ask within a budget with `budget.kwh=`, `budget.train_hours=` or `budget.min_inference_samples_per_s=`.")

    doc.heading("Runs")
    headers, rows = run_table(table, costs)
    doc.table(headers, rows)
    doc.text("Every column, with each cost's source: [results.csv](results.csv); every cost figure as recorded: [costs.csv](costs.csv).")
    bad = table[table["status"] != "ok"]
    if len(bad):
        doc.heading("Runs that did not finish", 3)
        doc.bullets([f"**{r['label']}** ({_s(r['dataset'])}): {r['status']}: {_s(r['error'])} - `{r['run_dir']}`" for _, r in bad.iterrows()])
    no_acc = table[(table["status"] == "ok") & table["metric_value"].isna()]
    if len(no_acc):
        doc.text("Finished, but with no accuracy recorded (left out of the figures): " + ", ".join(no_acc["label"]) + ".")

    doc.heading("Figures")
    doc.text("As in the paper: the task metric (validation) against each cost, one colour per model, input length at each point.")
    if not figures:
        doc.text("No figure: no run has finished with a known accuracy.")
    for f in figures:
        title = f"{f['dataset']}: {'Figures 1-5 (efficiency)' if f['figure'] == 'efficiency' else 'Figure 6 (hardware)'}"
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
                notes.append(f"{p['xlabel']}: {p['n_points']} runs plotted; not measured for {', '.join(p['unknown'])}.")
        others = usable(table, cfg.statuses)
        left = table[(table["dataset"] == f["dataset"]) & ~table.index.isin(others.index)]
        if len(left):
            notes.append(f"Not plotted ({', '.join(sorted(set(left['status'])))}): {', '.join(left['label'])}.")
        doc.bullets(notes)
        doc.text(f"Files: {', '.join(f'[{k.upper()}](figures/{Path(v).name})' for k, v in f['files'].items())}.")

    doc.heading("Pareto frontier")
    if fronts:
        frontier_section(doc, fronts)
    else:
        doc.text("No frontier: no run has finished with a known accuracy.")

    doc.heading("Bigger model or longer input?")
    steps_section(doc, steps, summary)

    doc.heading("Budget")
    limits = {k: v for k, v in dict(cfg.budget).items() if v is not None}
    doc.text(("Limits: " + ", ".join(f"`budget.{k}={fmt(v)}`" for k, v in limits.items()) + ".") if limits else "No limit set.")
    for a in answers:
        extra = f" {a.fitting} of {a.considered} runs fit." if limits else ""
        doc.text(f"{a.sentence}{extra}")

    doc.heading("Notes: what was measured, what was estimated")
    notes_section(doc, table, costs, cfg.statuses, collection.notes)
    return doc


def write(doc: Doc, out: Path, title: str = "Accuracy vs. efficiency report") -> tuple[Path, Path]:
    md, page = out / "report.md", out / "report.html"
    for path, text in ((md, doc.markdown(out)), (page, doc.html(title))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return md, page
