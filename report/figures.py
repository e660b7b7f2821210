"""The paper's figures, per dataset, from the table: the task metric against each cost.

    <group>_efficiency  Figures 1-5: power efficiency, training energy, training speed, inference speed
    <group>_hardware    Figure 6: GPU utilization, GPU memory, training time
    <group>_projected   accuracy against the projected full fine-tune energy, with its Pareto frontier (project.*)

One point per configuration (report/configurations.py): the mean over seeds, with error bars from min to max where
there are repeats. Energy in J or Wh (whichever reads without an exponent), never kWh with an offset; a budget limit
is a dashed line with the side beyond it shaded. Rates are the steady-state ones (conf/report.yaml costs).

One colour per model (the same across datasets), the input length written at each point, units on the axes,
PNG and SVG. A cost that no run measured is never drawn as zeros: its panel says "not measured", and a figure
whose every panel is unmeasured is not drawn at all (the manifest says why). draw() returns what each panel
plotted, point by point, and writes the same to figures.json.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from lightning_modules import families  # noqa: E402
from report.collect import METRIC_LABEL  # noqa: E402
from report.frontier import implementation, n_runs, usable  # noqa: E402
from report.steady import COSTS as ALL_COSTS  # noqa: E402

FIGURES = {
    "efficiency": ("Figures 1-5", ["power_efficiency", "energy", "train_speed", "inference_speed"]),
    "hardware": ("Figure 6", ["gpu_utilization", "gpu_memory", "train_time"]),
}
NAMES = {  # x-axis names of the record's cost figures; the unit comes from record.COSTS
    "power_efficiency": "Power efficiency", "energy_kwh": "Training energy", "energy_train_kwh": "Training energy, steps only",
    "nvml_energy_kwh": "Training energy (NVML)", "train_samples_per_s": "Training speed", "train_tokens_per_s": "Training speed",
    "inference_samples_per_s": "Inference speed", "gpu_utilization_pct": "Average GPU utilization",
    "gpu_memory_used_gib": "Average GPU memory used", "peak_memory_allocated_gib": "Peak GPU memory allocated",
    "peak_memory_reserved_gib": "Peak GPU memory reserved",
    "train_time_s": "Training time", "train_time_excl_validation_s": "Training time, validation excluded",
    "time_to_best_s": "Time to best checkpoint", "avg_power_w": "Average power", "joules_per_sample": "Training energy per sample",
    "cpu_utilization_pct": "Average CPU utilization", "energy_inference_kwh": "Inference energy", "inference_time_s": "Inference time",
    "steady_train_samples_per_s": "Training speed, after warm-up", "steady_power_efficiency": "Power efficiency, after warm-up",
    "steady_joules_per_sample": "Training energy per sample, after warm-up", "steady_avg_power_w": "Average power, after warm-up",
    "warmup_time_s": "Warm-up time (one-time)", "warmup_energy_kwh": "Warm-up energy (one-time)",
    "projected_energy_kwh": "Projected training energy", "projected_train_time_s": "Projected training time",
}
ENERGY_UNITS = (("kWh", 1.0), ("Wh", 1e3), ("J", 3.6e6))


def display_scale(cost: str, values) -> tuple[str, float]:
    """(unit, factor) to plot a cost in: energy in the largest of kWh, Wh, J whose values are mostly >= 1."""
    unit = ALL_COSTS.get(cost, "")
    if unit != "kWh":
        return unit, 1.0
    known = pd.Series(values, dtype=float).dropna().abs()
    top = known.max() if len(known) else 1.0
    for name, factor in ENERGY_UNITS:
        if top * factor >= 1:
            return name, factor
    return ENERGY_UNITS[-1]


MARKERS = families.markers()  # {family: marker}, in the families' report order (the paper's LED first)
LINESTYLES = ["-", "--", ":", "-."]  # one per implementation, stock HF first
MANIFEST = "figures.json"


def x_label(cost: str, runs: pd.DataFrame | None = None, unit: str | None = None) -> str:
    """The cost's name and unit, and `estimated` when the plotted figures are estimates rather than measurements."""
    label = f"{NAMES.get(cost, cost)} ({unit or ALL_COSTS[cost]})"
    if runs is not None and len(runs):
        known = runs[runs[cost].notna()]
        flags = known["estimated"].fillna("").map(lambda e: cost in [x.strip() for x in e.split(",")])
        if len(known) and flags.all():
            label += ", estimated"
        elif flags.any():
            label += ", partly estimated"
    return label


def unknown_reason(runs: pd.DataFrame, cost: str) -> str | None:
    """Why a cost is unknown, when every unknown run gives the same reason (e.g. `not applicable: no GPU in use`)."""
    column = f"{cost}_source"
    if column not in runs:
        return None
    reasons = set(runs.loc[runs[cost].isna(), column].dropna())
    return reasons.pop() if len(reasons) == 1 else None


def y_label(metric: str) -> str:
    return f"{METRIC_LABEL.get(metric, metric)}, validation (0-100)"


def model_colours(table: pd.DataFrame) -> dict:
    """One colour per model, the same in every figure: models ordered by family, then size."""
    known = table.dropna(subset=["model"])
    family_order = {f: i for i, f in enumerate(MARKERS)}  # LED first, as in the paper
    models = (
        known.assign(_f=known["family"].map(family_order).fillna(len(family_order)), _p=pd.to_numeric(known["parameters"], errors="coerce"))
        .sort_values(["_f", "_p", "model"], na_position="last")["model"].drop_duplicates().tolist()
    )
    palette = plt.get_cmap("tab10").colors
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def _params(n) -> str:
    if n is None or pd.isna(n):
        return ""
    n = float(n)
    return f" ({n / 1e9:.2f}B params)" if n >= 1e9 else f" ({n / 1e6:.1f}M params)" if n >= 1e6 else f" ({n / 1e3:.0f}k params)"


def variants(runs: pd.DataFrame) -> list[str]:
    """The implementations in these runs (attention path and precision), stock HF first: each gets its own line style."""
    return sorted(implementation(runs).drop_duplicates(), key=lambda k: (not k.startswith("hf"), k))


def _panel(ax, runs: pd.DataFrame, cost: str, metric: str, colours: dict, xlabel: str, slug: str, styles: list[str],
           factor: float = 1.0, limit: tuple | None = None) -> dict:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(y_label(metric))
    ax.grid(True, alpha=0.3)
    known = runs[runs[cost].notna()]
    unknown = runs.loc[runs[cost].isna(), "label"].tolist()
    points, texts = [], []
    if known.empty:
        ax.set_xticks([])
        ax.set_yticks([])
        reason = unknown_reason(runs, cost)
        text = "not measured\nin these runs" + (f"\n({textwrap.fill(reason, 34)})" if reason else "")
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35")
        return {"cost": cost, "xlabel": xlabel, "measured": False, "n_points": 0, "unknown": unknown, "reason": reason, "points": []}
    known = known.assign(_variant=implementation(known))
    for (model, variant), group in known.groupby(["model", "_variant"], sort=False):
        group = group.sort_values("seq_len")
        colour = colours.get(model, "black")
        index = styles.index(variant) if variant in styles else 0
        hollow = index > 0  # stock HF solid; each other implementation hollow, with its own line style
        x, y = group[cost] * factor, group["metric_value"]
        ax.plot(x, y, LINESTYLES[index % len(LINESTYLES)], color=colour, alpha=0.35, linewidth=1.2, zorder=2)
        if group.apply(n_runs, axis=1).gt(1).any():  # repeats: min-max bars
            def err(column, centre, group=group):
                lo, hi = group.get(f"{column}_min"), group.get(f"{column}_max")
                if lo is None or hi is None:
                    return None
                return [(centre - lo * (factor if column == cost else 1)).clip(lower=0).fillna(0),
                        (hi * (factor if column == cost else 1) - centre).clip(lower=0).fillna(0)]
            ax.errorbar(x, y, xerr=err(cost, x), yerr=err("metric_value", y), fmt="none", ecolor=colour, alpha=0.6,
                        elinewidth=1, capsize=2.5, zorder=2.5)
        scatter = ax.scatter(
            x, y, s=46, marker=MARKERS.get(group["family"].iloc[0], "o"), zorder=3,
            **({"facecolors": "white", "edgecolors": colour, "linewidths": 1.4} if hollow else {"color": colour, "edgecolors": "white", "linewidths": 0.6}),
        )
        scatter.set_gid(f"points-{slug}-{model}" + ("-" + "".join(c if c.isalnum() else "_" for c in variant) if hollow else ""))
        coincident: dict = {}  # points of one model at the same place (tied accuracy, same cost): one label for them
        for _, r in group.iterrows():
            coincident.setdefault((round(r[cost] * factor, 9), round(r["metric_value"], 6)), []).append(r)
            points.append({"label": r["label"], "model": model, "variant": variant, "seq_len": int(r["seq_len"]), "x": float(r[cost]),
                           "y": float(r["metric_value"]), "n_seeds": int(r["n_seeds"]) if "n_seeds" in r and not pd.isna(r["n_seeds"]) else 1})
        for (px, py), rs in coincident.items():
            texts.append(ax.annotate(
                ", ".join(str(int(r["seq_len"])) for r in rs), (px, py), xytext=(5, 4), textcoords="offset points",
                fontsize=8, color=colour, zorder=4,
            ))
    ax.margins(x=0.15, y=0.12)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    if limit is not None:  # the budget: a dashed line, the side beyond it shaded
        value, beyond_right, text = limit
        ax.axvline(value * factor, color="0.25", linestyle="--", linewidth=1.1, zorder=1)
        lo, hi = ax.get_xlim()
        lo, hi = min(lo, value * factor * 0.9), max(hi, value * factor * 1.1)
        ax.axvspan(value * factor, hi if beyond_right else lo, color="0.5", alpha=0.12, zorder=0)
        ax.set_xlim(lo, hi)
        ax.text(value * factor, 0.98, f" {text}", transform=ax.get_xaxis_transform(), fontsize=7, color="0.25", va="top",
                ha="left" if beyond_right else "right")
    ax._seq_len_labels = texts  # declutter() moves them apart once the figure is laid out
    if unknown:
        ax.text(
            0.01, 0.01, f"not measured: {len(unknown)} run{'s' if len(unknown) > 1 else ''}", transform=ax.transAxes,
            fontsize=7, color="0.4", va="bottom",
        )
    return {"cost": cost, "xlabel": xlabel, "measured": True, "n_points": len(points), "unknown": unknown, "points": points}


LABEL_SPOTS = [(5, 4, "left"), (5, -12, "left"), (-5, 4, "right"), (-5, -12, "right"), (5, 13, "left"), (-5, 13, "right"),
               (5, -21, "left"), (-5, -21, "right"), (0, 22, "center"), (0, -30, "center")]


def declutter(fig) -> None:
    """Place each input-length label next to its point where it covers neither another label nor any marker: the
    first free spot of LABEL_SPOTS (offsets in points), else where it was."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pad = 4.5 * fig.dpi / 72  # a marker's half-width in pixels
    for ax in fig.axes:
        labels = getattr(ax, "_seq_len_labels", [])
        if not labels:
            continue
        markers = []
        for collection in ax.collections:
            for x, y in ax.transData.transform(collection.get_offsets()):
                markers.append(Bbox.from_extents(x - pad, y - pad, x + pad, y + pad))
        placed = []
        for text in labels:
            for dx, dy, ha in LABEL_SPOTS:
                text.set_position((dx, dy))
                text.set_horizontalalignment(ha)
                box = text.get_window_extent(renderer)
                if not any(box.overlaps(other) for other in placed + markers):
                    break
            else:
                text.set_position(LABEL_SPOTS[0][:2])
                text.set_horizontalalignment("left")
                box = text.get_window_extent(renderer)
            placed.append(box)


def _remove_previous(directory: Path) -> None:
    """Figures of an earlier report in the same place, so that none of them is left over from other runs."""
    manifest = directory / MANIFEST
    if not manifest.exists():
        return
    try:
        previous = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return
    for fig in previous:
        for path in (fig.get("files") or {}).values():
            p = directory / Path(path).name
            if p.exists():
                p.unlink()


SLUG_MAX = 80  # file names stay well under the 255 bytes file systems allow; an experiment's name can be far longer


def slug(text: str) -> str:
    """A file-name-safe form of an experiment's name; a long one is cut and keeps a hash of the whole, so that two
    names that share their first characters still get two files."""
    import hashlib

    text = str(text)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
    if len(safe) <= SLUG_MAX:
        return safe
    return f"{safe[:SLUG_MAX - 9]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


BUDGET_AXES = {"energy": ("kwh", 1.0, True, "kWh"), "train_time": ("train_hours", 3600.0, True, "h"),
               "inference_speed": ("min_inference_samples_per_s", 1.0, False, "samples/s")}


def _limits(budget: dict | None, basis: str) -> dict:
    """axis -> (limit in the cost's record unit, shade to the right?, text) for the budget limits that are set."""
    out = {}
    for axis, (key, scale, right, unit) in BUDGET_AXES.items():
        value = (budget or {}).get(key)
        if value is not None:
            projected = basis == "projected" and axis != "inference_speed"
            out[("projected_" if projected else "") + axis] = (value * scale, right, f"budget {value:g} {unit}")
    return out


def _limit(limit, factor: float, unit: str):
    """The budget line's (value, shade right?, text), the text in the panel's display unit."""
    if limit is None:
        return None
    value, right, _ = limit
    from report.frontier import fmt

    return value, right, f"budget {fmt(value * factor)} {unit}"


def _legend(fig, group: pd.DataFrame, colours: dict, styles: list[str]) -> None:
    present = group.drop_duplicates("model").set_index("model")
    handles = [
        plt.Line2D([], [], color=colour, marker=MARKERS.get(present.at[m, "family"], "o"), linestyle="-", markersize=7,
                   label=f"{m}{_params(present.at[m, 'parameters'])}")
        for m, colour in colours.items() if m in present.index
    ]
    if len(styles) > 1:  # stock and fast path side by side: say which line style is which
        handles += [
            plt.Line2D([], [], color="0.3", marker="o", linestyle=LINESTYLES[i % len(LINESTYLES)], markersize=7,
                       markerfacecolor="white" if i else "0.3", label=v.replace(", ", " attention, ") + " precision")
            for i, v in enumerate(styles)
        ]
    # as many columns as the figure's width holds (three models' entries ran off the 7.5-inch projection figure)
    entry_in = 0.7 + 0.075 * max(len(h.get_label()) for h in handles) if handles else 1.0
    fits = max(1, int(fig.get_figwidth() // entry_in))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), fits, 3 if len(handles) > 4 else 4), frameon=False)


def _save(fig, directory: Path, base: str, formats, dpi, info: dict) -> None:
    declutter(fig)
    for fmt in formats:
        path = directory / f"{base}.{fmt}"
        fig.savefig(path, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
        info["files"][fmt] = str(path)
    plt.close(fig)


def _repeats(group: pd.DataFrame) -> str:
    runs = group.apply(n_runs, axis=1) if len(group) else pd.Series(dtype=int)
    if not runs.gt(1).any():
        return ""
    seeds = pd.to_numeric(group.get("n_seeds", runs), errors="coerce").fillna(runs)
    if (seeds >= runs).all():
        return "; points are means over seeds, bars min to max"
    return ("; points are means over their runs (seeds, or a seed run again), bars min to max" if (seeds > 1).any()
            else "; points are means over repeated runs of one seed, bars min to max")


def setting(group: pd.DataFrame) -> str:
    """What the figure's points ran on and how: hardware, implementation, memory budget (each figure says it, as a
    figure copied out of the report no longer has the report's text around it)."""
    parts = []
    for column in ("hardware", "implementation", "memory_budget"):
        values = sorted({str(v) for v in group.get(column, pd.Series(dtype=object)).dropna()})
        if values:
            parts.append(" / ".join(values))
    hardware = group.get("hardware", pd.Series(dtype=object)).dropna()
    if hardware.empty:
        parts.insert(0, "unknown hardware")
    return "; ".join(parts)


def draw(table: pd.DataFrame, directory: Path, costs: dict, statuses=("ok",), formats=("png", "svg"), dpi: int = 150,
         budget: dict | None = None, basis: str = "measured") -> list[dict]:
    """The figures of each experiment (group), from a table of configurations (or of runs)."""
    from report.frontier import group_of, pareto

    directory.mkdir(parents=True, exist_ok=True)
    _remove_previous(directory)
    runs = usable(table, statuses)
    colours = model_colours(table)
    limits = _limits(budget, basis)
    figures = []
    for dataset, group in runs.groupby(group_of(runs), sort=True):  # dataset: the experiment (group) name
        metric = group["metric"].iloc[0]
        for name, (paper, axes_keys) in FIGURES.items():
            info = {"dataset": dataset, "figure": name, "paper": paper, "metric": metric, "files": {}, "panels": []}
            panel_costs = [costs[k] for k in axes_keys]
            if all(c not in group or group[c].isna().all() for c in panel_costs):
                info["omitted"] = f"not drawn: none of {', '.join(panel_costs)} was measured in these runs"
                figures.append(info)
                continue
            ncols = 2 if len(axes_keys) == 4 else len(axes_keys)
            nrows = -(-len(axes_keys) // ncols)
            fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows + 0.8), squeeze=False, layout="constrained")
            styles = variants(group)
            for ax, key in zip(axes.flat, axes_keys):
                cost = costs[key]
                unit, factor = display_scale(cost, group[cost] if cost in group else [])
                label = x_label(cost, group, unit)
                info["panels"].append({"axis": key, "unit": unit, **_panel(ax, group, cost, metric, colours, label, slug(key), styles,
                                                                          factor, _limit(limits.get(key), factor, unit))})
            _legend(fig, group, colours, styles)
            info["setting"] = setting(group)
            fig.suptitle(
                f"{dataset}: {METRIC_LABEL.get(metric, metric)} vs. cost, as in {paper} of the paper\n"
                + textwrap.fill(f"one colour per model; the number at each point is its input length (tokens){_repeats(group)}", 110)
                + f"\n{info['setting']}",
                fontsize=11,
            )
            _save(fig, directory, f"{slug(dataset)}_{name}", formats, dpi, info)
            figures.append(info)
        if "projected_energy_kwh" in group and group["projected_energy_kwh"].notna().any():
            cost = "projected_energy_kwh"
            info = {"dataset": dataset, "figure": "projected", "paper": "projection", "metric": metric, "files": {}, "panels": []}
            fig, ax = plt.subplots(figsize=(7.5, 5.4), layout="constrained")
            unit, factor = display_scale(cost, group[cost])
            styles = variants(group)
            front = pareto(group, "metric_value", cost, True)
            ax.step(front[cost] * factor, front["metric_value"], where="post", color="0.2", linewidth=1.6, alpha=0.7, zorder=1.5,
                    label="Pareto frontier")
            info["panels"].append({"axis": "projected_energy", "unit": unit, "frontier": list(front["label"]),
                                   **_panel(ax, group, cost, metric, colours, x_label(cost, group, unit), "projected_energy", styles,
                                            factor, _limit(limits.get("projected_energy"), factor, unit))})
            _legend(fig, group, colours, styles)
            samples = group["projected_samples_source"].dropna().unique() if "projected_samples_source" in group else []
            title = (f"{dataset}: {METRIC_LABEL.get(metric, metric)} vs. projected full fine-tune energy"
                     f"{' (' + samples[0] + ')' if len(samples) == 1 else ''}: one-time warm-up + samples x steady J/sample; "
                     f"the line is the Pareto frontier{_repeats(group)}")
            info["setting"] = setting(group)
            fig.suptitle(textwrap.fill(title, 95) + "\n" + info["setting"], fontsize=10)
            _save(fig, directory, f"{slug(dataset)}_projected", formats, dpi, info)
            figures.append(info)
    tmp = directory / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(figures, indent=2) + "\n")
    os.replace(tmp, directory / MANIFEST)
    return figures
