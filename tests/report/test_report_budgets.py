"""Under a memory cap against the whole card (report/budgets.py), on small hand-made run tables aggregated as
report.py does; the rows of tests/report/test_report_paths.py, all on the fast path."""

import pandas as pd
import pytest

from report import budgets, configurations, frontier
from tests.report.test_report_paths import COSTS, run

CAP, CARD = "batch_size=auto within 48 GiB", "batch_size=auto, the whole card (139.8 GiB)"


def confs(rows):
    return configurations.aggregate(pd.DataFrame(rows))


def paper_like():
    """The paper's QA finding as a table: under the cap the small model's bigger batch trains it further (more
    accurate), on the whole card both fit big batches and the large one wins; LED-large ran at two whole-card batches."""
    return confs([
        run("led_base", 4096, 1, 40.0, "fast", 170.0, 3.9, 0.004, CAP, 41), run("led_base", 4096, 2, 42.0, "fast", 172.0, 3.9, 0.004, CAP, 41),
        run("led_large", 4096, 1, 30.0, "fast", 60.0, 11.4, 0.004, CAP, 10), run("led_large", 4096, 2, 31.0, "fast", 59.0, 11.4, 0.004, CAP, 10),
        run("led_base", 4096, 1, 44.0, "fast", 180.0, 3.7, 0.004, CARD, 120), run("led_base", 4096, 2, 45.0, "fast", 182.0, 3.7, 0.004, CARD, 120),
        run("led_large", 4096, 1, 50.0, "fast", 66.0, 10.2, 0.004, CARD, 40), run("led_large", 4096, 2, 52.0, "fast", 66.0, 10.2, 0.004, CARD, 40),
        run("led_large", 4096, 3, 47.0, "fast", 64.0, 10.5, 0.004, CARD, 38),
        run("led_base", 1024, 1, 28.0, "fast", 700.0, 0.9, 0.004, CAP, 162),  # under the cap only: nothing to pair with
    ])


def test_each_configuration_under_both_budgets_is_a_row_with_ratios_and_the_tighter_first():
    pairs = budgets.compare(paper_like(), COSTS)
    assert len(pairs) == 3 and set(pairs["tighter"]) == {CAP} and set(pairs["looser"]) == {CARD}
    base = pairs[pairs["model"] == "led_base"].iloc[0]
    assert (base["tighter_batch"], base["looser_batch"], base["batch_ratio"]) == (41, 120, pytest.approx(120 / 41))
    assert base["speedup"] == pytest.approx(181 / 171) and base["energy_per_sample_ratio"] == pytest.approx(3.9 / 3.7)
    assert base["difference"] == pytest.approx(3.5) and base["separable"]
    large = pairs[pairs["model"] == "led_large"].set_index("looser_batch")
    assert sorted(large.index) == [38, 40]  # both whole-card configurations of the cell, not only the more accurate
    assert large.loc[38, "difference"] == pytest.approx(16.5) and large.loc[40, "difference"] == pytest.approx(20.5)


def test_the_summary_says_whether_the_budget_changes_the_answer():
    table = paper_like()
    table["group"] = ["synthetic [" + ("48 GiB" if b == CAP else "whole card") + "]" for b in table["memory_budget"]]
    answers = {a.dataset: a.best["label"] for a in frontier.answer(table, {}, COSTS)}
    assert answers == {"synthetic [48 GiB]": "led_base @ 4096", "synthetic [whole card]": "led_large @ 4096 (batch 40)"}
    line, = budgets.summary(budgets.compare(table, COSTS), answers)
    assert line.startswith(f"On synthetic ({CAP} against {CARD}): 3 configurations ran under both; batch 3.8x (median; 2.93-4x)")
    assert "separable from noise in 3 of 3" in line
    assert line.endswith("the answer is led_base @ 4096 under the tighter budget and led_large @ 4096 (batch 40) under the "
                         "looser: the budget changes it.")
    # a limit nothing meets under one budget is an answer too; an experiment nobody asked about is none
    line, = budgets.summary(budgets.compare(table, COSTS), {**answers, "synthetic [48 GiB]": None})
    assert line.endswith("the answer is nothing (none fits the limits) under the tighter budget and led_large @ 4096 (batch 40) "
                         "under the looser: the budget changes it.")
    line, = budgets.summary(budgets.compare(table, COSTS), {"synthetic [whole card]": "x"})
    assert "the answer" not in line


def test_no_pair_without_two_budgets_and_given_batches_have_none():
    one = confs([run("led_base", 4096, 1, 40.0, "fast", 170.0, 3.9, 0.004, CAP, 41),
                 run("led_base", 4096, 1, 41.0, "fast", 170.0, 3.9, 0.004, None, 8)])  # batch_size=8: no memory budget
    assert budgets.compare(one, COSTS).empty and list(budgets.compare(one, COSTS).columns) == budgets.BUDGET_COLUMNS
    assert budgets.budget_gib(CAP) == 48 and budgets.budget_gib(CARD) == float("inf")


def test_the_section_tables_every_pair(tmp_path):
    from report import render

    pairs = budgets.compare(paper_like(), COSTS)
    doc = render.Doc()
    render.budgets_section(doc, pairs, ["one line"])
    md = doc.markdown(tmp_path)
    assert "- one line" in md and md.count(f"| {CAP} / {CARD} |") == 3 and "| 41 / 120 |" in md and "no: spreads overlap" not in md
    empty = render.Doc()
    render.budgets_section(empty, budgets.compare(paper_like().iloc[:0], COSTS), [])
    assert "No configuration ran under two memory budgets" in empty.markdown(tmp_path)
