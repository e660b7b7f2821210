"""Repeats -> configurations, runs -> experiments (groups), and the HTML tables, on small hand-made tables."""

import math

import pandas as pd
import pytest

from report import configurations, render
from report.collect import hardware_key


def runs(rows):
    """(model, seq_len, seed, rgm, kWh[, extra columns])"""
    out = []
    for model, seq, seed, rgm, kwh, *extra in rows:
        r = {"label": f"{model} @ {seq} (seed {seed})", "status": "ok", "dataset": "synthetic", "metric": "rgm", "model": model,
             "family": "led", "parameters": 1e6, "seq_len": seq, "seed": seed, "metric_value": rgm, "rgm": rgm, "energy_kwh": kwh,
             "batch_size": 4, "effective_batch_size": 4, "devices": 1, "num_nodes": 1, "pretrained": False, "attn_impl": "hf",
             "precision": "32-true", "strategy": "cpu", "corpus": "synthetic (n_train=32)", "training_budget": "100 steps",
             "hardware": "unknown hardware", "contended": None, "run_dir": f"r/{model}{seq}{seed}"}
        r.update(extra[0] if extra else {})
        out.append(r)
    return pd.DataFrame(out)


def test_seeds_of_one_configuration_are_one_row_with_n_mean_spread_and_std_from_three():
    t = runs([("a", 128, 1, 30.0, 1.0), ("a", 128, 2, 34.0, 3.0), ("a", 128, 3, 32.0, 2.0), ("a", 256, 1, 50.0, 4.0),
              ("a", 256, 2, 52.0, 6.0, {"contended": True})])
    conf = configurations.aggregate(t).set_index("label")
    assert list(conf.index) == ["a @ 128", "a @ 256"]
    c = conf.loc["a @ 128"]
    assert (c["n_seeds"], c["seeds"], c["rgm_mean"], c["rgm_min"], c["rgm_max"]) == (3, "1, 2, 3", 32.0, 30.0, 34.0)
    assert c["rgm_std"] == pytest.approx(2.0) and c["energy_kwh_mean"] == pytest.approx(2.0) and c["metric_value"] == 32.0
    d = conf.loc["a @ 256"]
    assert d["n_seeds"] == 2 and math.isnan(d["rgm_std"]) and d["n_contended"] == 1  # std only where n >= 3
    assert configurations.spread_text(c) == "32 (30-34, n=3, std 2)"


def test_a_seed_run_twice_is_one_seed_and_two_runs():
    """The H200 study ran LED-base at 4096 with seed 1 in two calls: two runs of one seed measure run-to-run noise,
    not the spread over seeds, and the report must not call them two seeds."""
    t = runs([("a", 128, 1, 30.0, 1.0), ("a", 128, 1, 31.0, 1.2), ("a", 256, 1, 50.0, 4.0), ("a", 256, 2, 52.0, 6.0),
              ("a", 256, 2, 53.0, 6.5)])
    conf = configurations.aggregate(t).set_index("label")
    c, d = conf.loc["a @ 128"], conf.loc["a @ 256"]
    assert (c["n_seeds"], c["n_runs"], c["seeds"], c["rgm_min"], c["rgm_max"]) == (1, 2, "1, 1", 30.0, 31.0)
    assert configurations.spread_text(c) == "30.5 (30-31, 2 runs of 1 seed)"
    assert (d["n_seeds"], d["n_runs"]) == (2, 3) and configurations.spread_text(d) == "51.7 (50-53, 3 runs of 2 seeds, std 1.53)"


def test_unlike_runs_are_separate_experiments_and_the_report_says_what_separates_them():
    t = runs([("a", 128, 1, 30.0, 1.0), ("a", 128, 2, 31.0, 1.0, {"training_budget": "3 steps"}),
              ("a", 128, 3, 31.0, 1.0, {"hardware": "1 x NVIDIA H200"})])
    conf = configurations.aggregate(t)
    assert len(conf) == 3 and set(conf["n_seeds"]) == {1}
    assert sorted(conf["group"]) == ["synthetic [100 steps; 1 x NVIDIA H200]", "synthetic [100 steps; unknown hardware]",
                                     "synthetic [3 steps; unknown hardware]"]
    lines = configurations.separating(configurations.assign_groups(t))
    assert lines == ["synthetic: 3 experiments, apart in training budget, hardware; each has its own table, figures, frontier and answer"]
    pooled = configurations.aggregate(t.iloc[[0, 2]], pool_hardware=True)
    assert len(pooled) == 1 and pooled["n_seeds"].iloc[0] == 2


def test_hardware_key_from_provenance():
    assert hardware_key(None) == "unknown hardware"
    assert hardware_key({"gpu_names": ["NVIDIA H200", "NVIDIA H200"], "gpu_count": 2, "cpu_model": "Xeon"}) == "2 x NVIDIA H200"
    assert hardware_key({"gpu_names": [], "gpu_count": 0, "cpu_model": "AMD EPYC 7B13"}) == "AMD EPYC 7B13 (CPU)"


def test_html_tables_right_align_numbers_and_highlight_marked_rows():
    html = render.styled_table(["configuration", "Rgm", "energy (kWh)"], [["a @ 128", "32 (30-34, n=3)", "~0.002"], ["b", "—", "1,234"]],
                               ["answer", ""], "tx")
    assert html.count("text-align: right") >= 1 and "background-color: #fff3c4" in html
    assert "<th" in html and "configuration" in html and "a @ 128" in html
    assert render._numeric_columns([["a @ 128", "32 (30-34, n=3)", "~0.002"], ["b", "—", "1,234"]]) == [1, 2]


def test_memory_budgets_are_separate_experiments():
    # the paper's 48 GB cards emulated on an H200 against the whole card: batch_size=auto gives each its own batch
    from report.collect import memory_budget

    cap, card = memory_budget("auto", 48.0, "139.8"), memory_budget("auto", None, "139.8")
    assert (cap, card) == ("batch_size=auto within 48 GiB", "batch_size=auto, the whole card (139.8 GiB)")
    assert memory_budget("paper", 48.0, "139.8") is None and memory_budget("given", None, None) is None
    t = runs([("a", 128, 1, 30.0, 1.0, {"memory_budget": cap, "batch_size": 8, "effective_batch_size": 8}),
              ("a", 128, 2, 31.0, 1.0, {"memory_budget": cap, "batch_size": 8, "effective_batch_size": 8}),
              ("a", 128, 1, 33.0, 2.0, {"memory_budget": card, "batch_size": 23, "effective_batch_size": 23})])
    conf = configurations.aggregate(t)
    assert sorted(conf["group"]) == [f"synthetic [{cap}]", f"synthetic [{card}]"]
    assert sorted(conf["n_seeds"]) == [1, 2]
    lines = configurations.separating(configurations.assign_groups(t))
    assert lines == ["synthetic: 2 experiments, apart in memory budget; each has its own table, figures, frontier and answer"]


def test_figure_names_of_long_experiment_names_are_short_and_distinct():
    from report.figures import SLUG_MAX, slug

    assert slug("synthetic [1 x NVIDIA H200]") == "synthetic__1_x_NVIDIA_H200_"
    a = "synthetic [synthetic (doc_tokens=4096, n_train=256); 200 steps, early stopping patience 3; " + "hf, 32-true" * 10 + "]"
    b = a.replace("n_train=256", "n_train=257")
    assert len(slug(a)) == SLUG_MAX and slug(a) != slug(b) and slug(a) == slug(a)


def test_a_run_over_its_memory_budget_is_flagged_with_its_peak():
    """On the H200 (2026-12-02) batch_size=auto within 48 GiB chose batches whose probe step peaked at 43 GiB, and
    one run then allocated 49.7 GiB in training: the report says so beside the experiment, never silently."""
    from report.collect import over_memory_budget
    from report.render import _over_budget

    assert over_memory_budget("auto", 48.0, 49.7) is True and over_memory_budget("auto", 48.0, 45.9) is False
    assert over_memory_budget("auto", None, 99.0) is None  # the whole card: nothing to exceed
    assert over_memory_budget("given", 48.0, 99.0) is None and over_memory_budget("auto", 48.0, None) is None
    t = pd.DataFrame({"group": ["g", "g", "h"], "label": ["a @ 1024 (#1)", "a @ 1024 (#2)", "b"],
                      "over_memory_budget": [False, True, True], "peak_memory_allocated_gib": [47.9, 49.7, 60.0],
                      "memory_budget": ["batch_size=auto within 48 GiB"] * 3})
    line = _over_budget(t, "g")
    assert line.startswith("**Over the memory budget:** 1 of this experiment's runs (a @ 1024 (#2)) allocated 49.7 GiB")
    assert "(batch_size=auto within 48 GiB)" in line and _over_budget(t.iloc[:1], "g") is None
    # a newer record holds the reserved peak too (what the cap binds on): the line names that one
    line = _over_budget(t.assign(peak_memory_reserved_gib=[47.95, 50.5, 61.0]), "g")
    assert line.startswith("**Over the memory budget:** 1 of this experiment's runs (a @ 1024 (#2)) reserved 50.5 GiB")


def test_a_run_over_its_cap_is_judged_by_the_memory_it_reserved(tmp_path):
    """The cap binds on reserved memory (H200: a run whose tensors peaked at 36.4 GiB had its probe reserve 42.8):
    a record with both peaks is judged by the reserved one, an older record by the allocated one."""
    import json

    from report import collect

    for name, reserved, over in (("new", 48.5, True), ("old", None, False)):
        run = tmp_path / name / "run"
        run.mkdir(parents=True)
        costs = {"peak_memory_allocated_gib": {"value": 36.4, "unit": "GiB", "source": "measured"}}
        if reserved is not None:
            costs["peak_memory_reserved_gib"] = {"value": reserved, "unit": "GiB", "source": "measured"}
        run.joinpath("metrics.json").write_text(json.dumps({
            "schema": 1, "kind": "train", "status": "ok", "model": "led_base", "seq_len": 1024, "seed": 1, "batch_size": 162,
            "batch_size_source": "auto", "batch_size_memory_gib": 48, "data": "synthetic", "task": "summarization",
            "metric": "rgm", "rgm": 28.3, "costs": costs}))
        table = collect.collect([run.parent], "train", "energy_kwh").table
        assert bool(table["over_memory_budget"].iloc[0]) is over, name


def test_float_noise_in_accuracy_is_no_difference_and_a_tie_goes_to_the_cheaper():
    """H200 block 1: LED-base and LED-large both at Rgm 100 at 4096 tokens, computed as 99.99999999999997 or
    100.00000000000001 by run; that noise ranked LED-large (3x the projected energy) as the more accurate, put it
    alone on the frontier, and gave the bigger model a gain of +1.42e-14 points at 1.29e+14 kWh a point."""
    from report import frontier

    noisy = [100.00000000000001, 99.99999999999997, 100.00000000000001]
    t = runs([("base", 4096, s, v, 0.9 + s / 100) for s, v in zip((1, 2, 3), noisy)]
             + [("large", 4096, s, 99.99999999999997 + s * 1e-14, 2.8, {"parameters": 4e6}) for s in (1, 2)])
    t["metric_value"] = t["rgm"] = [99.99999999999996, *noisy[1:], 99.99999999999998, 100.00000000000003]
    conf = configurations.aggregate(t)
    assert list(conf["metric_value"]) == [100.0, 100.0] and list(conf["metric_value_max"]) == [100.0, 100.0]
    costs = {"energy": "energy_kwh", "train_time": "energy_kwh", "inference_speed": "energy_kwh"}
    a = frontier.answer(conf, {}, costs)[0]
    assert (a.best["model"], a.tied, a.rivals) == ("base", 2, [])  # a tie, and the cheaper one is the answer
    assert labels_of(frontier.pareto(conf, "metric_value", "energy_kwh")) == ["base @ 4096"]
    step = frontier.steps(conf, costs)
    step = step[step["step"] == "bigger model"].iloc[0]
    assert step["gain"] == 0 and math.isnan(step["kwh_per_point"])  # no gain, so no price per point


def labels_of(df):
    return list(df["label"])
