"""The frontier, the budget answer and bigger-model vs longer-input, on small tables whose answers can be checked by hand
(the only place the report's tests use hand-written numbers; the rest run real sweeps)."""

import math

import pandas as pd
import pytest

from report import frontier

COSTS = {
    "energy": "energy_kwh", "train_time": "train_time_s", "inference_speed": "inference_samples_per_s",
    "power_efficiency": "power_efficiency", "train_speed": "train_samples_per_s",
    "gpu_utilization": "gpu_utilization_pct", "gpu_memory": "gpu_memory_used_gib",
}
NAN = float("nan")


def table(rows):
    """(model, family, params, seq_len, rgm, kWh, train s, inference samples/s[, status])"""
    out = []
    for r in rows:
        model, family, params, seq, acc, kwh, secs, speed, *status = r
        out.append({
            "label": f"{model} @ {seq}", "status": status[0] if status else "ok", "dataset": "gov_report", "metric": "rgm",
            "model": model, "family": family, "parameters": params, "seq_len": seq, "metric_value": acc,
            "energy_kwh": kwh, "train_time_s": secs, "inference_samples_per_s": speed,
        })
    return pd.DataFrame(out)


# Hand check, energy (lower is better) against Rgm:
#   A 1.0 kWh 30   B 2.0 kWh 35   C 2.5 kWh 33 (B is cheaper and better)   D 4.0 kWh 40   E 4.0 kWh 38 (D: same cost, better)
#   F unknown kWh 50 (left out, not treated as 0)            G failed (not a configuration)
# Frontier: A, B, D.
GRID = table([
    ("led_base", "led", 160e6, 1024, 30.0, 1.0, 3600, 9.0),
    ("led_base", "led", 160e6, 2048, 35.0, 2.0, 7200, 6.0),
    ("led_base", "led", 160e6, 3072, 33.0, 2.5, 9000, 4.0),
    ("led_large", "led", 460e6, 1024, 40.0, 4.0, 10800, 3.0),
    ("led_large", "led", 460e6, 2048, 38.0, 4.0, 14400, 2.0),
    ("bigbird_large", "bigbird_pegasus", 570e6, 1024, 50.0, NAN, 20000, 1.0),
    ("bigbird_large", "bigbird_pegasus", 570e6, 4096, 60.0, 0.1, 100, 100.0, "failed"),
])


def labels(df):
    return list(df["label"])


def test_energy_frontier_by_hand():
    runs = frontier.usable(GRID)
    assert labels(frontier.pareto(runs, "metric_value", "energy_kwh", minimize=True)) == ["led_base @ 1024", "led_base @ 2048", "led_large @ 1024"]


def test_inference_speed_frontier_maximizes_speed():
    # speed (higher is better): led_base@1024 9/s 30, @2048 6/s 35, led_large@1024 3/s 40, bigbird@1024 1/s 50: each trades
    # speed for accuracy; led_base@3072 (4/s, 33) and led_large@2048 (2/s, 38) are beaten by a faster, better one.
    runs = frontier.usable(GRID)
    got = labels(frontier.pareto(runs, "metric_value", "inference_samples_per_s", minimize=False))
    assert got == ["led_base @ 1024", "led_base @ 2048", "led_large @ 1024", "bigbird_large @ 1024"]


def test_identical_points_are_both_kept_and_a_failed_run_never_counts():
    t = table([("a", "led", 1, 1, 10.0, 1.0, 1, 1), ("b", "led", 1, 2, 10.0, 1.0, 1, 1), ("c", "led", 1, 3, 99.0, 0.0, 1, 1, "oom")])
    assert labels(frontier.pareto(frontier.usable(t), "metric_value", "energy_kwh")) == ["a @ 1", "b @ 2"]


def test_frontiers_name_the_runs_whose_cost_is_not_measured():
    fronts = {f.axis: f for f in frontier.frontiers(GRID, COSTS)}
    assert set(fronts) == {"energy", "train_time", "inference_speed"}
    assert fronts["energy"].unknown == ["bigbird_large @ 1024"]
    assert labels(fronts["train_time"].rows) == ["led_base @ 1024", "led_base @ 2048", "led_large @ 1024", "bigbird_large @ 1024"]
    unmeasured = GRID.assign(energy_kwh=NAN)
    energy = [f for f in frontier.frontiers(unmeasured, COSTS) if f.axis == "energy"][0]
    assert energy.rows.empty and len(energy.unknown) == 6


def test_budget_answer_by_hand():
    # within 2.2 kWh: A (30) and B (35) fit, F is unmeasured -> B; and the sentence says F was left out
    (a,) = frontier.answer(GRID, {"kwh": 2.2, "train_hours": None, "min_inference_samples_per_s": None}, COSTS)
    assert a.best["label"] == "led_base @ 2048" and a.fitting == 2 and a.considered == 6
    assert a.unknown["kwh"] == ["bigbird_large @ 1024"]
    assert a.sentence == (
        "Within 2.2 kWh of training energy, the most accurate configuration on gov_report is led_base @ 2048 "
        "(Rgm 35; 2 kWh, 2 h of training, 6 inference samples/s), leaving out 1 of 6 runs whose training energy was not measured."
    )
    # all three limits at once: <= 3 h of training and >= 5 samples/s leaves A and B; 1.5 kWh leaves A
    (a,) = frontier.answer(GRID, {"kwh": 1.5, "train_hours": 3, "min_inference_samples_per_s": 5}, COSTS)
    assert a.best["label"] == "led_base @ 1024"


def test_budget_that_nothing_fits_says_so_and_names_the_nearest():
    (a,) = frontier.answer(GRID, {"kwh": 0.5, "train_hours": None, "min_inference_samples_per_s": None}, COSTS)
    assert a.best is None and a.closest["label"] == "led_base @ 1024"
    assert a.sentence.startswith("Within 0.5 kWh of training energy, no configuration on gov_report fits; the nearest is led_base @ 1024")
    assert a.sentence.count(". ") == 0 and a.sentence.endswith(".")


def test_budget_on_a_cost_nobody_measured_cannot_be_met():
    (a,) = frontier.answer(GRID.assign(energy_kwh=NAN), {"kwh": 10, "train_hours": None, "min_inference_samples_per_s": None}, COSTS)
    assert a.best is None
    assert a.sentence == (
        "Within 10 kWh of training energy, no configuration on gov_report can be shown to fit, because training energy "
        "was not measured for any of its 6 runs."
    )


def test_no_budget_gives_the_most_accurate_run():
    (a,) = frontier.answer(GRID, {"kwh": None, "train_hours": None, "min_inference_samples_per_s": None}, COSTS)
    assert a.best["label"] == "bigbird_large @ 1024"
    assert a.sentence.startswith("With no budget set, the most accurate configuration on gov_report is bigbird_large @ 1024 (Rgm 50;")


def test_a_tie_in_accuracy_is_said_and_goes_to_the_cheapest():
    # random-init models on the GPU study all score 0: the answer must not pretend accuracy chose the run
    tied = GRID.assign(metric_value=0.0)
    (a,) = frontier.answer(tied, {"kwh": None, "train_hours": None, "min_inference_samples_per_s": None}, COSTS)
    assert a.tied == 6 and a.best["label"] == "led_base @ 1024"  # cheapest known energy; unknown energy ranks last
    assert a.sentence.endswith("; 6 configurations tie at Rgm 0, so accuracy does not separate them "
                               "and this is the cheapest of them in training energy, then time.")
    (a,) = frontier.answer(GRID, {"kwh": None, "train_hours": None, "min_inference_samples_per_s": None}, COSTS)
    assert a.tied == 1 and "tie" not in a.sentence


def test_steps_never_cross_from_one_implementation_to_another():
    # the GPU study runs every configuration twice: stock fp32 and the fast path in bf16
    stock = GRID.assign(attn_impl="hf", precision="32-true", strategy="single_gpu")
    fast = GRID.assign(attn_impl="fast", precision="bf16-mixed", strategy="single_gpu", label=GRID["label"] + " (fast)",
                       metric_value=GRID["metric_value"] + 100)  # the fast runs would win every dedup by accuracy
    steps = frontier.steps(pd.concat([stock, fast], ignore_index=True), COSTS)
    assert len(steps) == 2 * len(frontier.steps(stock, COSTS))
    for _, row in steps.iterrows():
        assert row["from"].endswith("(fast)") == row["to"].endswith("(fast)"), (row["from"], row["to"])


def test_compiled_fast_path_is_its_own_implementation():
    runs = pd.DataFrame({"attn_impl": ["hf", "fast", "fast", "fast", "fast"], "precision": ["32-true"] + ["bf16-mixed"] * 4,
                         "compile": [None, False, True, "reduce-overhead", "True"]})  # the last as read back from a csv
    assert list(frontier.implementation(runs)) == [
        "hf, 32-true", "fast, bf16-mixed", "fast (compiled), bf16-mixed", "fast (reduce-overhead), bf16-mixed",
        "fast (compiled), bf16-mixed"]
    runs["cuda_graph"] = [None, True, True, False, "False"]
    assert list(frontier.implementation(runs)) == [
        "hf, 32-true", "fast (step graph), bf16-mixed", "fast (compiled, step graph), bf16-mixed",
        "fast (reduce-overhead), bf16-mixed", "fast (compiled), bf16-mixed"]
    runs["residual_dtype"] = [None, "float32", "bfloat16", None, "float32"]  # bf16 residual: another function, its own
    assert list(frontier.implementation(runs))[1:3] == [
        "fast (step graph), bf16-mixed", "fast (compiled, step graph, bf16 residual), bf16-mixed"]


def test_bigger_model_vs_longer_input_by_hand():
    # led_base@1024 (30, 1 kWh) -> longer input led_base@2048 (35, 2 kWh): +5 points for +1 kWh = 0.2 kWh/point
    #                          -> bigger model led_large@1024 (40, 4 kWh): +10 points for +3 kWh = 0.3 kWh/point
    steps = frontier.steps(GRID, COSTS)
    first = steps[steps["from"] == "led_base @ 1024"].set_index("step")
    assert first.loc["longer input", "to"] == "led_base @ 2048" and first.loc["longer input", "gain"] == 5
    assert first.loc["longer input", "kwh_per_point"] == pytest.approx(0.2)
    assert first.loc["bigger model", "to"] == "led_large @ 1024" and first.loc["bigger model", "kwh_per_point"] == pytest.approx(0.3)
    assert first["cheaper_way_up"].iloc[0] == "longer input: 0.2 kWh per point"
    # led_base@2048 -> led_base@3072 lost 2 points: no cost per point; -> led_large@2048 gained 3 for 2 kWh
    second = steps[steps["from"] == "led_base @ 2048"].set_index("step")
    assert second.loc["longer input", "gain"] == -2 and math.isnan(second.loc["longer input", "kwh_per_point"])
    assert second["cheaper_way_up"].iloc[0] == "bigger model: the other lost accuracy"
    # issue 15 item 7: led_large@1024 -> bigbird_large@1024 crosses families, so it is no "bigger model" step (there is
    # no bigger LED); families() compares the two at equal input length instead
    assert list(steps.loc[steps["from"] == "led_large @ 1024", "step"]) == ["longer input"]
    assert (steps["step"] == "bigger model").sum() == 2 and "bigbird_large @ 1024" not in set(steps["to"])
    assert steps["separable"].all()  # single runs of different accuracy
    summary = frontier.comparison_summary(steps)
    # per point overall, over the steps that gained with a known cost: bigger 30->40 (+3 kWh) and 35->38 (+2 kWh):
    # 5 kWh / 13 points = 0.385; longer 30->35 (+1 kWh): 0.2. Inference speed per step:
    # bigger 9->3, 6->2 (-66.7% each), longer 9->6, 6->4, 3->2 (-33.3% each)
    assert summary == [  # every row of GRID is one run: no spread behind any step, and the sentence says so
        "On gov_report, a bigger model gained Rgm in 2 of 2 steps (2 of them rest on a configuration run with one seed: "
        "its spread over seeds is unknown) for 0.385 kWh per point, inference speed -67% (median); a longer input gained "
        "Rgm in 1 of 3 steps (it rests on a configuration run with one seed: its spread over seeds is unknown) for 0.2 "
        "kWh per point, inference speed -33% (median): per point gained, a longer input cost less energy."
    ]


@pytest.mark.parametrize("source, steps_up", [("auto", 1), ("paper", 1), ("given", 0)])
def test_a_longer_input_keeps_a_given_batch_but_not_one_a_rule_chose(source, steps_up):
    """batch_size=auto within 48 GiB chose 192 at 1024 tokens and 48 at 4096 (led_base on the H200, 2026-12-02):
    that is the step the study asks about, as the paper's Table 5 batches shrink with the input. Two given batches
    that differ are two set-ups (Table 2), not a step."""
    runs = table([("led_base", "led", 160e6, 1024, 27.6, 0.0056, 36, NAN), ("led_base", "led", 160e6, 4096, 100.0, 0.0059, 38, NAN)])
    runs = runs.assign(batch_size_source=source, effective_batch_size=[192, 48])
    steps = frontier.steps(runs, COSTS)
    assert len(steps) == steps_up
    if steps_up:
        assert (steps["step"].iloc[0], steps["to"].iloc[0], steps["gain"].iloc[0]) == ("longer input", "led_base @ 4096", pytest.approx(72.4))


def test_fmt_never_shows_unknown_as_zero():
    assert frontier.fmt(None) == "—" and frontier.fmt(NAN) == "—" and frontier.fmt(0.0) == "0"
    assert frontier.fmt(0.000123) == "0.000123" and frontier.fmt(1234.5) == "1,234" and frontier.fmt(35.0) == "35"


def test_family_comparison_at_equal_input_length():
    # at 1024: the best LED is led_large (40, 4 kWh), the only BigBird bigbird_large (50, energy unknown)
    fam = frontier.families(GRID, COSTS)
    assert len(fam) == 1
    r = fam.iloc[0]
    assert (r["seq_len"], r["a"], r["b"], r["difference"], r["more_accurate"]) == (1024, "led_large @ 1024", "bigbird_large @ 1024", 10, "bigbird_large @ 1024")
    assert math.isnan(r["d_energy_kwh"])  # unknown stays unknown


def test_overlapping_spreads_are_not_separable():
    # two configurations of 3 seeds each: means 35 and 36 but spreads 33-37 and 34-38 overlap
    confs = GRID.iloc[[0, 1]].assign(metric_value=[35.0, 36.0], metric_value_min=[33.0, 34.0], metric_value_max=[37.0, 38.0],
                                     n_seeds=[3, 3])
    steps = frontier.steps(confs, COSTS)
    assert list(steps["separable"]) == [False]
    assert "(1 of them not separable: the accuracy spreads overlap)" in frontier.comparison_summary(steps)[0]
    (a,) = frontier.answer(confs, {"kwh": None}, COSTS)
    assert a.best["label"] == "led_base @ 2048" and a.rivals == ["led_base @ 1024"]
    assert "not separable from led_base @ 1024 by Rgm: their spreads over seeds overlap" in a.sentence
    assert "Rgm is the mean of 3 seeds (34-38)" in a.sentence
    fronts = {f.axis: f for f in frontier.frontiers(confs, COSTS)}
    assert fronts["energy"].inseparable == [("led_base @ 1024", "led_base @ 2048")]
    # apart: separable
    apart = confs.assign(metric_value_min=[30.0, 36.5], metric_value_max=[34.0, 39.0])
    assert list(frontier.steps(apart, COSTS)["separable"]) == [True] and frontier.answer(apart, {}, COSTS)[0].rivals == []
    assert list(frontier.steps(apart, COSTS)["one_run"]) == [False] and "run once" not in frontier.comparison_summary(frontier.steps(apart, COSTS))[0]
    # apart, but one end ran once (H200 block 1: led_large @ 1024, one seed, above led_base's two): separable, and said
    # to rest on one run, in the sentence and in the table's cell
    once = apart.assign(n_seeds=[3, 1], metric_value_min=[30.0, NAN], metric_value_max=[34.0, NAN])
    steps = frontier.steps(once, COSTS)
    assert list(steps["separable"]) == [True] and list(steps["one_run"]) == [True]
    assert "(it rests on a configuration run with one seed: its spread over seeds is unknown)" in frontier.comparison_summary(steps)[0]
    from report.render import _separable
    assert _separable(steps.iloc[0]) == "yes, from one seed (spread unknown)"


def test_the_next_better_configuration_outside_the_budget_and_what_it_would_cost():
    # within 2.2 kWh the answer is led_base@2048 (35); more accurate and outside: led_large@1024 (40, 4 kWh) and @2048 (38,
    # 4 kWh): the nearer to the budget, ties by order, is led_large@1024; bigbird_large@1024 (50) has no energy figure
    (a,) = frontier.answer(GRID, {"kwh": 2.2}, COSTS)
    assert a.next_better["label"] == "led_large @ 1024"
    assert a.beyond == ("The next better configuration on gov_report, outside the budget, is led_large @ 1024 (Rgm 40, +5): "
                        "it would need 4 kWh of training energy (1.8x the limit).")
    (a,) = frontier.answer(GRID, {"kwh": 100}, COSTS)  # everything measured fits: nothing better outside
    assert a.next_better is None and a.beyond.startswith("No configuration outside the budget on gov_report is more accurate")


def test_an_answer_from_one_run_says_so_and_one_from_seeds_gives_their_spread():
    none = {"kwh": None, "train_hours": None, "min_inference_samples_per_s": None}
    (a,) = frontier.answer(GRID.assign(n_seeds=1), none, COSTS)
    assert a.sentence.endswith("; Rgm is from one run (one seed): its spread is unknown, repeat it with seed=1,2,3 before relying on it.")
    seeds = GRID.assign(n_seeds=3, metric_value_min=GRID.metric_value - 1, metric_value_max=GRID.metric_value + 1)
    (a,) = frontier.answer(seeds, none, COSTS)
    assert "Rgm is the mean of 3 seeds (49-51)" in a.sentence and "one run" not in a.sentence
    again = seeds.assign(n_seeds=1, n_runs=2)  # one seed, run in two calls: their range is not a spread over seeds
    (a,) = frontier.answer(again, none, COSTS)
    assert "Rgm is the mean of 2 runs of one seed (49-51): their range is run-to-run noise, not the spread over seeds" in a.sentence
    steps = frontier.steps(again, COSTS)
    assert len(steps) and steps["one_run"].astype(bool).all()  # a step from a seed run twice still rests on one seed


def test_a_step_up_goes_to_every_configuration_of_the_next_cell_not_the_best_of_them():
    """The H200's block 1: LED-large at 1024 ran at two batches batch_size=auto chose (59 before the probe counted
    validation, 51 after): 28.9 and 25.6 Rgm against LED-base's 28.3. Stepping to the more accurate one alone
    reported a gain the other configuration of that cell does not show; both are steps, one up and one down."""
    runs = table([("led_base", "led", 160e6, 1024, 28.3, 0.227, 1223, NAN), ("led_large", "led", 460e6, 1024, 28.9, 0.645, 3424, NAN),
                  ("led_large", "led", 460e6, 1024, 25.6, 0.656, 3416, NAN), ("led_base", "led", 160e6, 2048, 53.4, 0.46, 2468, NAN)])
    runs = runs.assign(batch_size_source="auto", effective_batch_size=[162, 59, 51, 83])
    runs["label"] = ["led_base @ 1024", "led_large @ 1024 (batch 59)", "led_large @ 1024 (batch 51)", "led_base @ 2048"]
    steps = frontier.steps(runs, COSTS)
    up = steps[(steps["from"] == "led_base @ 1024") & (steps["step"] == "bigger model")].set_index("to")
    assert sorted(up.index) == ["led_large @ 1024 (batch 51)", "led_large @ 1024 (batch 59)"]
    assert up.loc["led_large @ 1024 (batch 59)", "gain"] == pytest.approx(0.6) and up.loc["led_large @ 1024 (batch 51)", "gain"] == pytest.approx(-2.7)
    assert set(steps.loc[steps["from"] == "led_base @ 1024", "cheaper_way_up"]) == {"longer input: 0.00928 kWh per point"}
    # a way up that gained nothing did not lose accuracy either, and the sentence says which
    flat = runs.assign(metric_value=[28.3, 28.3, 28.3, 20.0])
    last = frontier.steps(flat, COSTS)
    assert set(last.loc[last["from"] == "led_base @ 1024", "cheaper_way_up"]) == {"neither gained accuracy"}
    flat = runs.assign(metric_value=[28.3, 28.3, 28.3, 53.4])
    last = frontier.steps(flat, COSTS)
    assert set(last.loc[last["from"] == "led_base @ 1024", "cheaper_way_up"]) == {"longer input: the other gained none"}
