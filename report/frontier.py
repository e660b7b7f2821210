"""The study's question, answered from the table: Pareto-optimal configurations per experiment (group) for each
cost, the most accurate configuration within a budget and the next better one outside it, and the paper's two
comparisons - each step up in accuracy bought with a bigger model (within a family) or with a longer input, and what
it cost; and LED against BigBird-Pegasus at equal input length.

The table is report/configurations.py's (one row per configuration, the means over seeds in `metric_value` and each
cost, the spread in `_min`/`_max`), or a table of single runs. Two configurations whose accuracy spreads overlap are
"not separable": the data cannot say which is more accurate, and the report says so.

Only runs that count (status in `statuses`, default ok) with a known accuracy take part. A cost that was not
measured (null) is unknown, never zero: such a run is left out of that cost's frontier and cannot be shown to fit a
limit on that cost; both are said, with the runs named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from lightning_modules.families import names as family_names
from report.collect import METRIC_LABEL

# the three costs of the frontier and the budget: axis (a key of cfg.costs) -> better direction, budget key, scale to its unit
FRONTIER_AXES = {
    "energy": {"minimize": True, "budget": "kwh", "scale": 1.0, "noun": "training energy"},
    "train_time": {"minimize": True, "budget": "train_hours", "scale": 1 / 3600, "noun": "training time"},
    "inference_speed": {"minimize": False, "budget": "min_inference_samples_per_s", "scale": 1.0, "noun": "inference speed"},
}
DISPLAY_UNIT = {"kwh": "kWh", "train_hours": "h", "min_inference_samples_per_s": "samples/s"}
BUDGET_KEYS = tuple(spec["budget"] for spec in FRONTIER_AXES.values())


def group_of(table: pd.DataFrame) -> pd.Series:
    """The experiment each row belongs to: its `group` (report/configurations.py), else its dataset."""
    if "group" in table and table["group"].notna().any():
        return table["group"].where(table["group"].notna(), table["dataset"])
    return table["dataset"]


def spread_overlaps(a: pd.Series, b: pd.Series, column: str = "metric_value") -> bool:
    """Whether two configurations' spreads (min-max over seeds) of a column overlap: then the data cannot tell them
    apart. A single run's spread is its value."""
    def bounds(r):
        lo, hi = r.get(f"{column}_min"), r.get(f"{column}_max")
        return (r.get(column), r.get(column)) if lo is None or pd.isna(lo) else (lo, hi)
    (lo_a, hi_a), (lo_b, hi_b) = bounds(a), bounds(b)
    if any(v is None or pd.isna(v) for v in (lo_a, hi_a, lo_b, hi_b)):
        return False
    return bool(lo_a <= hi_b and lo_b <= hi_a)


def fmt(value, digits: int = 3) -> str:
    """A number for a sentence or a table: 3 significant digits, no exponent for everyday magnitudes; — if unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    value = float(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 6 or magnitude <= -5:
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usable(table: pd.DataFrame, statuses=("ok",)) -> pd.DataFrame:
    """Runs that count: their status is one of `statuses` and their accuracy is known."""
    if table.empty:
        return table
    return table[table["status"].isin(list(statuses)) & table["metric_value"].notna()]


def _compile_label(mode):
    """model.compile as recorded (bool, a torch.compile mode, or either as text from a csv) -> label or None."""
    if str(mode).lower() in ("true", "default"):  # True, "True" (from a csv) or the default mode
        return "compiled"
    if isinstance(mode, str) and mode.lower() not in ("false", "none", "nan", ""):
        return mode
    return None


def _fast_label(compile, cuda_graph, residual_dtype=None):
    """`compiled`, `step graph`, `bf16 residual`, any of them (`compiled, step graph`) or None."""
    residual = "bf16 residual" if isinstance(residual_dtype, str) and residual_dtype not in ("float32", "nan") else None
    parts = [_compile_label(compile), "step graph" if str(cuda_graph).lower() == "true" else None, residual]
    return ", ".join(p for p in parts if p) or None


def implementation(runs: pd.DataFrame, columns=("attn_impl", "precision")) -> pd.Series:
    """Each run's implementation as text, e.g. `fast, bf16-mixed`: the attention path (`hf` unless recorded
    otherwise), then the other columns (`?` where unknown)."""
    parts = []
    for c in columns:
        value = runs[c].astype(object) if c in runs else pd.Series(None, index=runs.index, dtype=object)
        value = value.where(value.notna(), "hf" if c == "attn_impl" else "?").astype(str)
        if c == "attn_impl":  # compiled or graphed fast paths are other implementations: `fast (compiled, step graph)`
            compile = runs["compile"] if "compile" in runs else pd.Series(None, index=runs.index, dtype=object)
            graph = runs["cuda_graph"] if "cuda_graph" in runs else pd.Series(None, index=runs.index, dtype=object)
            res = runs["residual_dtype"] if "residual_dtype" in runs else pd.Series(None, index=runs.index, dtype=object)
            mode = pd.Series([_fast_label(a, b, r) for a, b, r in zip(compile, graph, res)], index=runs.index, dtype=object)
            value = value.where(mode.isna(), value + " (" + mode.astype(str) + ")")
        parts.append(value)
    return parts[0].str.cat(parts[1:], sep=", ") if len(parts) > 1 else parts[0]


def pareto(df: pd.DataFrame, accuracy: str, cost: str, minimize: bool = True) -> pd.DataFrame:
    """The configurations no other one beats: none is at least as accurate and at least as cheap, and better in one.
    Rows with an unknown cost or accuracy are not considered. Sorted from cheapest to dearest."""
    known = df[df[accuracy].notna() & df[cost].notna()]
    keep = []
    for i, row in known.iterrows():
        a, c = row[accuracy], row[cost]
        for j, other in known.iterrows():
            if i == j:
                continue
            b, d = other[accuracy], other[cost]
            cheaper_or_same = d <= c if minimize else d >= c
            strictly = (d < c if minimize else d > c) or b > a
            if b >= a and cheaper_or_same and strictly:
                break
        else:
            keep.append(i)
    out = known.loc[keep]
    return out.sort_values([cost, accuracy], ascending=[minimize, False])


@dataclass
class Frontier:
    dataset: str
    metric: str
    axis: str  # energy | train_time | inference_speed
    cost: str  # the record.COSTS name
    minimize: bool
    rows: pd.DataFrame  # the Pareto set, cheapest first
    unknown: list[str] = field(default_factory=list)  # labels of runs that count but whose cost is not measured
    inseparable: list[tuple[str, str]] = field(default_factory=list)  # neighbours on the frontier whose accuracy spreads overlap


def frontiers(table: pd.DataFrame, costs: dict, statuses=("ok",)) -> list[Frontier]:
    out = []
    runs = usable(table, statuses)
    for dataset, group in runs.groupby(group_of(runs), sort=True):  # dataset: the experiment (group) name
        metric = group["metric"].iloc[0]
        for axis, spec in FRONTIER_AXES.items():
            cost = costs[axis]
            if cost not in group:
                continue
            rows = pareto(group, "metric_value", cost, spec["minimize"])
            pairs = [(rows.iloc[i]["label"], rows.iloc[i + 1]["label"]) for i in range(len(rows) - 1)
                     if spread_overlaps(rows.iloc[i], rows.iloc[i + 1]) and rows.iloc[i]["metric_value"] != rows.iloc[i + 1]["metric_value"]]
            out.append(Frontier(dataset, metric, axis, cost, spec["minimize"], rows,
                                unknown=list(group.loc[group[cost].isna(), "label"]), inseparable=pairs))
    return out


# ---- the answer ----------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    dataset: str
    metric: str
    best: pd.Series | None  # the chosen run, None when nothing fits
    limits: dict  # budget key -> value, only the limits that are set
    considered: int  # runs that count on this dataset
    fitting: int  # of which fit every limit
    unknown: dict  # budget key -> labels of runs left out because that cost is not measured
    closest: pd.Series | None = None  # when nothing fits: the run that comes nearest
    tied: int = 1  # fitting runs as accurate as the best (the cheapest of them is chosen)
    sentence: str = ""
    rivals: list[str] = field(default_factory=list)  # fitting configurations whose accuracy spread overlaps the best's
    next_better: pd.Series | None = None  # the cheapest configuration outside the budget that is more accurate
    beyond: str = ""  # what the next better configuration would cost, in one sentence
    fits: list[str] = field(default_factory=list)  # labels of the configurations within every limit


def _rank(df: pd.DataFrame, costs: dict) -> pd.DataFrame:
    """Most accurate first; ties go to the cheaper (energy, then training time), then the smaller, then the shorter."""
    return df.sort_values(
        ["metric_value", costs["energy"], costs["train_time"], "parameters", "seq_len"],
        ascending=[False, True, True, True, True], na_position="last",
    )


def _limit_text(key: str, value: float) -> str:
    if key == "min_inference_samples_per_s":
        return f"at least {fmt(value)} inference samples/s"
    return f"{fmt(value)} {DISPLAY_UNIT[key]} of {'training energy' if key == 'kwh' else 'training time'}"


def duration(seconds) -> str:
    """A training time as people say it: 42 s, 3.5 min, 14 h."""
    if seconds is None or pd.isna(seconds):
        return "—"
    if seconds < 120:
        return f"{fmt(seconds)} s"
    if seconds < 7200:
        return f"{fmt(seconds / 60)} min"
    return f"{fmt(seconds / 3600)} h"


def is_estimated(run: pd.Series, cost: str) -> bool:
    flags = run.get("estimated")
    return isinstance(flags, str) and cost in [x.strip() for x in flags.split(",")]


def _marks(run: pd.Series, cost: str) -> str:
    words = [w for w, on in (("projected", cost.startswith("projected_")), ("estimated", is_estimated(run, cost))) if on]
    return f" ({', '.join(words)})" if words else ""


def _cost_text(run: pd.Series, costs: dict) -> str:
    parts = []
    if not pd.isna(run.get(costs["energy"])):
        parts.append(f"{fmt(run[costs['energy']])} kWh" + _marks(run, costs["energy"]))
    if not pd.isna(run.get(costs["train_time"])):
        parts.append(f"{duration(run[costs['train_time']])} of training" + _marks(run, costs["train_time"]))
    if not pd.isna(run.get(costs["inference_speed"])):
        parts.append(f"{fmt(run[costs['inference_speed']])} inference samples/s" + (" (estimated)" if is_estimated(run, costs["inference_speed"]) else ""))
    return ", ".join(parts)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def answer(table: pd.DataFrame, budget: dict, costs: dict, statuses=("ok",)) -> list[Answer]:
    """Per dataset: the most accurate configuration within every limit that is set (all of them at once)."""
    limits = {k: v for k, v in budget.items() if v is not None and k in BUDGET_KEYS}
    axis_of = {spec["budget"]: axis for axis, spec in FRONTIER_AXES.items()}
    answers = []
    runs = usable(table, statuses)
    for dataset, group in runs.groupby(group_of(runs), sort=True):
        metric = group["metric"].iloc[0]
        fits = pd.Series(True, index=group.index)
        unknown = {}
        for key, limit in limits.items():
            axis = axis_of[key]
            column = costs[axis]
            value = group[column] * FRONTIER_AXES[axis]["scale"]
            unknown[key] = list(group.loc[value.isna(), "label"])
            fits &= value.notna() & ((value >= limit) if key == "min_inference_samples_per_s" else (value <= limit))
        inside = group[fits]
        best = _rank(inside, costs).iloc[0] if len(inside) else None
        a = Answer(dataset, metric, best, limits, len(group), len(inside), unknown)
        a.fits = list(inside["label"])
        if best is not None:
            a.tied = int((inside["metric_value"] == best["metric_value"]).sum())
            a.rivals = [r["label"] for _, r in _rank(inside, costs).iterrows()
                        if r["label"] != best["label"] and r["metric_value"] != best["metric_value"] and spread_overlaps(best, r)]
        if best is None and limits:
            a.closest = _closest(group, limits, costs)
        if best is not None and limits:
            better = group[~fits & (group["metric_value"] > best["metric_value"])]
            a.next_better = _closest(better, limits, costs) if len(better) else None
        a.sentence = sentence(a, costs)
        a.beyond = beyond(a, costs)
        answers.append(a)
    return answers


def beyond(a: Answer, costs: dict) -> str:
    """The next better configuration outside the budget and what it would take (item 10 of issue 15)."""
    if a.best is None or not a.limits:
        return ""
    metric = METRIC_LABEL.get(a.metric, a.metric)
    run = a.next_better
    if run is None:
        return f"No configuration outside the budget on {a.dataset} is more accurate, among those whose cost on every limit is known."
    axis_of = {spec["budget"]: axis for axis, spec in FRONTIER_AXES.items()}
    needs = []
    for key, limit in a.limits.items():
        axis = axis_of[key]
        value = run[costs[axis]] * FRONTIER_AXES[axis]["scale"]
        over = value < limit if key == "min_inference_samples_per_s" else value > limit
        if over:
            ratio = (limit / value if key == "min_inference_samples_per_s" else value / limit) if limit > 0 and value > 0 else math.inf
            needs.append(f"{_limit_text(key, value)} ({fmt(ratio, 2)}x the limit)" if math.isfinite(ratio) else _limit_text(key, value))
    gain = run["metric_value"] - a.best["metric_value"]
    noise = " - not separable from the answer: their accuracy spreads overlap" if spread_overlaps(run, a.best) else ""
    return (f"The next better configuration on {a.dataset}, outside the budget, is {run['label']} "
            f"({metric} {fmt(run['metric_value'])}, {'+' if gain > 0 else ''}{fmt(gain)}{noise}): it would need {_join(needs)}.")


def _closest(group: pd.DataFrame, limits: dict, costs: dict) -> pd.Series | None:
    """The run that misses the budget by the least (largest ratio of need to limit), among runs measured on every limit."""
    axis_of = {spec["budget"]: axis for axis, spec in FRONTIER_AXES.items()}
    ratios = {}
    for key, limit in limits.items():
        axis = axis_of[key]
        value = group[costs[axis]] * FRONTIER_AXES[axis]["scale"]
        if key == "min_inference_samples_per_s":
            ratios[key] = limit / value.where(value > 0)
        else:
            ratios[key] = value / limit if limit > 0 else value.where(value <= 0, math.inf)
    worst = pd.DataFrame(ratios).max(axis=1, skipna=False)  # not measured on any limit: cannot say how near it is
    worst = worst.dropna()
    return group.loc[worst.idxmin()] if len(worst) else None


def _tie_text(a: Answer, metric: str) -> str:
    text = ""
    if a.tied >= 2:
        text = (f"; {a.tied} configurations tie at {metric} {fmt(a.best['metric_value'])}, so accuracy does not separate them "
                "and this is the cheapest of them in training energy, then time")
    if a.rivals:
        text += (f"; not separable from {_join(a.rivals[:3])}{f' and {len(a.rivals) - 3} more' if len(a.rivals) > 3 else ''}"
                 f" by {metric}: their spreads over seeds overlap")
    n, runs = a.best.get("n_seeds"), n_runs(a.best)
    spread = f"({fmt(a.best.get('metric_value_min'))}-{fmt(a.best.get('metric_value_max'))})"
    if n is not None and not pd.isna(n) and int(n) > 1:
        text += f"; {metric} is the mean of {int(n)} seeds" + (f" ({runs} runs)" if runs > int(n) else "") + f" {spread}"
    elif n is not None and not pd.isna(n) and int(n) == 1 and runs > 1:
        text += (f"; {metric} is the mean of {runs} runs of one seed {spread}: their range is run-to-run noise, not the "
                 "spread over seeds; repeat it with seed=1,2,3 before relying on it")
    elif n is not None and not pd.isna(n) and int(n) == 1:
        text += f"; {metric} is from one run (one seed): its spread is unknown, repeat it with seed=1,2,3 before relying on it"
    contended = a.best.get("n_contended")
    if contended is not None and not pd.isna(contended) and int(contended) > 0:
        text += f"; {int(contended)} of its runs were measured under CPU contention, so its CPU energy is uncertain"
    return text


def sentence(a: Answer, costs: dict) -> str:
    """The answer in one plain sentence."""
    metric = METRIC_LABEL.get(a.metric, a.metric)
    if not a.limits:
        run = a.best
        return (
            f"With no budget set, the most accurate configuration on {a.dataset} is {run['label']} "
            f"({metric} {fmt(run['metric_value'])}" + (f"; {_cost_text(run, costs)}" if _cost_text(run, costs) else "") + ")"
        ) + _tie_text(a, metric) + "."
    within = _join([_limit_text(k, v) for k, v in a.limits.items()])
    left_out = sorted({label for labels in a.unknown.values() for label in labels})
    unmeasured = [FRONTIER_AXES[ax]["noun"] for ax in FRONTIER_AXES if a.unknown.get(FRONTIER_AXES[ax]["budget"])]
    if a.best is not None:
        run = a.best
        tail = f", leaving out {len(left_out)} of {a.considered} runs whose {_join(unmeasured)} was not measured" if left_out else ""
        return (
            f"Within {within}, the most accurate configuration on {a.dataset} is {run['label']} "
            f"({metric} {fmt(run['metric_value'])}; {_cost_text(run, costs)}){tail}"
        ) + _tie_text(a, metric) + "."
    if len(left_out) == a.considered:
        return (
            f"Within {within}, no configuration on {a.dataset} can be shown to fit, because {_join(unmeasured)} "
            f"was not measured for any of its {a.considered} runs."
        )
    near = f"; the nearest is {a.closest['label']} ({metric} {fmt(a.closest['metric_value'])}; {_cost_text(a.closest, costs)})" if a.closest is not None else ""
    extra = f", and {len(left_out)} runs could not be checked because their {_join(unmeasured)} was not measured" if left_out else ""
    return f"Within {within}, no configuration on {a.dataset} fits{near}{extra}."


# ---- bigger model vs longer input ----------------------------------------------------------------------------------
STEP_COLUMNS = [
    "dataset", "metric", "from", "step", "to", "from_value", "to_value", "gain",
    "d_energy_kwh", "d_train_time_s", "d_inference_samples_per_s", "inference_speed_change_pct", "kwh_per_point", "train_s_per_point",
    "separable", "one_run", "batch_changes", "cheaper_way_up",
]


def steps(table: pd.DataFrame, costs: dict, statuses=("ok",)) -> pd.DataFrame:
    """From every configuration (model, seq_len), the two ways up the paper compares: the same model at the next
    longer input, and the next bigger model of the same family (led_base -> led_large) at the same input; across
    families is families()'s comparison, not a step. A step stays within one experiment and implementation
    (attention path, precision, strategy): stock fp32 and the fast path are two studies side by side, not rungs of
    one ladder. The longer input keeps the batch where it was given, not where a rule chose it (batch_size=paper or
    auto: the paper's batches shrink with the input as memory requires; `batch_changes` says so). On a table of
    configurations the means stand for each; on a table of runs, where a configuration was run more than once, its
    most accurate run does. `separable` is False where the two accuracy spreads overlap; `one_run` is True where
    either end ran with one seed (its spread over seeds is unknown, so a separable step may still be noise; a seed run again is still one)."""
    runs = usable(table, statuses)
    runs = _rank(runs.assign(_impl=implementation(runs, ("attn_impl", "precision", "strategy")), _group=group_of(runs)), costs)
    runs = runs.drop_duplicates(["_group", "_impl", "model", "seq_len", *[c for c in ("effective_batch_size",) if c in runs]])
    rows = []
    for (dataset, _), group in runs.groupby(["_group", "_impl"], sort=True):
        for _, a in group.sort_values(["parameters", "model", "seq_len"]).iterrows():
            same = group[(group["model"] == a["model"])]
            if "effective_batch_size" in group and not pd.isna(a.get("effective_batch_size")) and _batch_given(a):
                # a given batch is part of the configuration (Table 2's set-ups); one chosen by a rule (the paper's
                # Table 5, or auto within a memory budget) is meant to change with the input length
                same = same[same["effective_batch_size"] == a["effective_batch_size"]]
            longer = same[same["seq_len"] > a["seq_len"]].sort_values("seq_len")
            same_len = group[(group["seq_len"] == a["seq_len"]) & (group["parameters"] > a["parameters"])]
            bigger = same_len[same_len["family"] == a["family"]].sort_values("parameters")
            for kind, candidates, nearest in (("longer input", longer, "seq_len"), ("bigger model", bigger, "parameters")):
                if not len(candidates):
                    continue
                # every configuration at the nearest step up is a target, not only the most accurate of them: two
                # batches one rule chose for the same cell (batch_size=auto before and after a probe fix, the
                # H200's LED-large at 1024: 28.9 at batch 59, 25.6 at batch 51) are both what that step buys
                for _, b in candidates[candidates[nearest] == candidates.iloc[0][nearest]].iterrows():
                    rows.append(_step_row(dataset, kind, a, b, costs))
    out = pd.DataFrame(rows, columns=STEP_COLUMNS)
    out["cheaper_way_up"] = out["cheaper_way_up"].astype(object)
    # where both ways up exist from one configuration: which one bought its points for less
    for (dataset, start), pair in out.groupby(["dataset", "from"]):
        out.loc[pair.index, "cheaper_way_up"] = _cheaper(pair) if len(pair) > 1 else "only this way was run"
    return out


def _step_row(dataset, kind: str, a: pd.Series, b: pd.Series, costs: dict) -> dict:
    """One step up, from configuration a to b: what it gained and what it cost more."""
    energy, ttime, ispeed = costs["energy"], costs["train_time"], costs["inference_speed"]
    gain = b["metric_value"] - a["metric_value"]
    d_e, d_t, d_i = b[energy] - a[energy], b[ttime] - a[ttime], b[ispeed] - a[ispeed]
    return {
        "dataset": dataset, "metric": a["metric"], "from": a["label"], "step": kind, "to": b["label"],
        "from_value": a["metric_value"], "to_value": b["metric_value"], "gain": gain,
        "d_energy_kwh": d_e, "d_train_time_s": d_t, "d_inference_samples_per_s": d_i,
        "inference_speed_change_pct": 100 * d_i / a[ispeed] if not pd.isna(d_i) and a[ispeed] > 0 else float("nan"),
        "kwh_per_point": d_e / gain if gain > 0 and not pd.isna(d_e) else float("nan"),
        "train_s_per_point": d_t / gain if gain > 0 and not pd.isna(d_t) else float("nan"),
        "separable": not spread_overlaps(a, b),
        "one_run": _seeds_of(a) < 2 or _seeds_of(b) < 2,
        "batch_changes": _differ(a.get("effective_batch_size"), b.get("effective_batch_size")),
    }


def _seeds_of(configuration) -> int:
    """Seeds behind a configuration's value (1 for a row of the run table): a seed run twice is still one seed."""
    n = configuration.get("n_seeds")
    return 1 if n is None or pd.isna(n) else int(n)


def n_runs(r) -> int:
    """Runs behind a configuration's value (n_seeds where a table predates n_runs; 1 for a row of the run table)."""
    for key in ("n_runs", "n_seeds"):
        n = r.get(key)
        if n is not None and not pd.isna(n):
            return int(n)
    return 1


def _differ(a, b) -> bool:
    return not (pd.isna(a) or pd.isna(b)) and a != b


def _batch_given(run) -> bool:
    """The run's batch was a number on the command line, not the paper's (Table 5) or the largest that fits (auto)."""
    return run.get("batch_size_source") not in ("paper", "auto")


def _cheaper(pair: pd.DataFrame) -> str:
    gained = pair[pair["gain"] > 0]
    if gained.empty:
        return "neither gained accuracy"
    if gained["step"].nunique() == 1:
        return f"{gained['step'].iloc[0]}: the other " + ("lost accuracy" if (pair.loc[pair["step"] != gained["step"].iloc[0], "gain"] < 0).all()
                                                          else "gained none")
    for column, unit, noun in (("kwh_per_point", "kWh", "energy"), ("train_s_per_point", "s of training", "training time")):
        if gained[column].notna().all():
            best = gained.sort_values(column).iloc[0]
            if best[column] <= 0:
                return f"{best['step']}: more accurate for less {noun}"
            return f"{best['step']}: {fmt(best[column])} {unit} per point"
    return "unknown: cost not measured"


def _median(rows: pd.DataFrame, column: str):
    known = rows[column].dropna()
    return known.median() if len(known) else None


PER_POINT = (("d_energy_kwh", "kWh", "energy"), ("d_train_time_s", "s of training", "training time"))


def _per_point(up: pd.DataFrame, column: str):
    """Extra cost over points gained, summed over the steps that gained and whose cost is known: what a point
    cost on the whole (a step that gained and also saved counts with its saving)."""
    known = up[up[column].notna()]
    return known[column].sum() / known["gain"].sum() if len(known) and known["gain"].sum() > 0 else None


def comparison_summary(step_table: pd.DataFrame) -> list[str]:
    """Per dataset, one sentence: per accuracy point gained, what a bigger model cost against a longer input (in
    training energy where both are known, else in training time), and what each did to inference speed."""
    lines = []
    for dataset, group in step_table.groupby("dataset", sort=True):
        metric = METRIC_LABEL.get(group["metric"].iloc[0], group["metric"].iloc[0])
        kinds = {kind: group[group["step"].str.startswith(kind)] for kind in ("bigger model", "longer input")}
        ups = {kind: rows[rows["gain"] > 0] for kind, rows in kinds.items()}
        unit = None
        for column, name, noun in PER_POINT:
            if all(_per_point(up, column) is not None for kind, up in ups.items() if len(up)):
                unit = (column, name, noun)
                break
        parts = []
        for kind, rows in kinds.items():
            if rows.empty:
                parts.append(f"no {kind} step was run")
                continue
            noise = int((~ups[kind]["separable"].astype(bool)).sum()) if "separable" in ups[kind] else 0
            text = f"a {kind} gained {metric} in {len(ups[kind])} of {len(rows)} steps"
            if noise:
                text += f" ({noise} of them not separable: the accuracy spreads overlap)"
            once = int(ups[kind]["one_run"].astype(bool).sum()) if "one_run" in ups[kind] else 0
            if once:
                text += (f" ({'it rests' if len(ups[kind]) == 1 else f'{once} of them rest'} on a configuration run with "
                         "one seed: its spread over seeds is unknown)")
            if unit and len(ups[kind]):
                text += f" for {fmt(_per_point(ups[kind], unit[0]))} {unit[1]} per point"
            speed = _median(rows, "inference_speed_change_pct")
            if speed is not None:
                text += f", inference speed {'+' if speed > 0 else ''}{fmt(speed, 2)}% (median)"
            parts.append(text)
        verdict = ""
        if unit and all(len(up) for up in ups.values()):
            cheaper = min(kinds, key=lambda k: _per_point(ups[k], unit[0]))
            verdict = f": per point gained, a {cheaper} cost less {unit[2]}"
        elif any(len(up) for up in ups.values()) and not unit:
            verdict = " (the cost per point is unknown: training energy and time were not measured)"
        lines.append(f"On {dataset}, " + "; ".join(parts) + verdict + ".")
    return lines


# ---- LED vs BigBird-Pegasus at equal input length -------------------------------------------------------------------
FAMILY_COLUMNS = ["dataset", "metric", "seq_len", "a", "a_family", "a_value", "b", "b_family", "b_value", "difference",
                  "separable", "d_energy_kwh", "d_train_time_s", "d_inference_samples_per_s", "more_accurate"]


def families(table: pd.DataFrame, costs: dict, statuses=("ok",)) -> pd.DataFrame:
    """The paper's other finding: at each input length of an experiment where two model families were run, the most
    accurate configuration of each family against the other's (b - a; a is the family listed first: LED)."""
    runs = usable(table, statuses)
    rows = []
    order = {name: i for i, name in enumerate(family_names())}  # the families' report order: the paper's LED first
    for (dataset, seq_len), group in runs.assign(_group=group_of(runs)).groupby(["_group", "seq_len"], sort=True):
        fams = sorted(group["family"].dropna().unique(), key=lambda f: (order.get(f, 9), f))
        if len(fams) < 2:
            continue
        best = {f: _rank(group[group["family"] == f], costs).iloc[0] for f in fams}
        for i, fa in enumerate(fams):
            for fb in fams[i + 1:]:
                a, b = best[fa], best[fb]
                diff = b["metric_value"] - a["metric_value"]
                separable = not spread_overlaps(a, b)
                winner = "not separable" if not separable else (b["label"] if diff > 0 else a["label"] if diff < 0 else "tie")
                rows.append({
                    "dataset": dataset, "metric": a["metric"], "seq_len": seq_len, "a": a["label"], "a_family": fa,
                    "a_value": a["metric_value"], "b": b["label"], "b_family": fb, "b_value": b["metric_value"],
                    "difference": diff, "separable": separable,
                    "d_energy_kwh": b[costs["energy"]] - a[costs["energy"]], "d_train_time_s": b[costs["train_time"]] - a[costs["train_time"]],
                    "d_inference_samples_per_s": b[costs["inference_speed"]] - a[costs["inference_speed"]], "more_accurate": winner,
                })
    return pd.DataFrame(rows, columns=FAMILY_COLUMNS)
