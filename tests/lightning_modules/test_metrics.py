"""The SCROLLS scores against hand-computed cases and against the official formula built from rouge_score."""

import math
import random

import pytest
from rouge_score import rouge_scorer
from rouge_score.rouge_scorer import _lcs_table

from lightning_modules.metrics import lcs_length, rouge, score, squad_normalize, token_f1


def test_rouge_hand_computed():
    s = rouge("the cat sat", "the cat sat on the mat")
    # unigrams: 3 shared of 3 predicted, 6 reference -> P=1, R=.5
    assert s["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    # bigrams: "the cat", "cat sat" shared; 2 of 2 predicted, 5 reference
    assert s["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)
    assert s["rougeL"] == pytest.approx(s["rouge1"])


def test_rgm_takes_each_types_max_over_references_then_the_mean_then_the_geometric_mean():
    preds = {"a": "red blue green", "b": "oslo"}
    refs = {"a": ["red blue green", "nothing shared"], "b": ["lima", "oslo paris"]}
    out = score("summarization", preds, refs)
    r1_b = 2 * 1 * 0.5 / 1.5  # "oslo" vs "oslo paris"
    assert out["rouge1"] == pytest.approx(100 * (1 + r1_b) / 2)
    assert out["rouge2"] == pytest.approx(100 * (1 + 0) / 2)  # one-word prediction has no bigram
    assert out["rgm"] == pytest.approx((out["rouge1"] * out["rouge2"] * out["rougeL"]) ** (1 / 3))


def test_predictions_are_scored_as_given_like_the_official_scorer():
    """`<n>` is Pegasus' newline; it is turned into one where Pegasus output is decoded (test_seq2seq), not here:
    scored raw, as the official scorer does, it is an extra token `n`."""
    with_n = score("summarization", {"a": "red blue<n>green"}, {"a": ["red blue green"]})
    assert with_n["rouge1"] == pytest.approx(100 * 2 * 0.75 * 1 / 1.75)


def test_missing_prediction_scores_zero():
    assert score("qa", {}, {"a": ["x"]})["f1"] == 0.0


def test_squad_normalisation_and_f1():
    assert squad_normalize("The  Cat, sat!") == "cat sat"
    assert token_f1("a red car", "red car") == 1.0
    assert token_f1("red", "the red one") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", "") == 0.0  # SQuAD v1.1: nothing shared scores 0
    out = score("qa", {"q1": "Paris", "q2": "blue"}, {"q1": ["paris"], "q2": ["red", "blue green"]})
    assert out["f1"] == pytest.approx(100 * (1 + 2 * 1 * 0.5 / 1.5) / 2)


def test_unknown_task():
    with pytest.raises(ValueError, match="task 'mt'"):
        score("mt", {}, {"a": ["x"]})


def _random_text(rng, n):
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "the", "a", "1", "2"]
    return " ".join(rng.choice(words) + rng.choice(["", ",", ".", "!"]) for _ in range(n))


def test_bit_parallel_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 80))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 80))]
        expected = _lcs_table(a, b)[-1][-1] if a and b else 0
        assert lcs_length(a, b) == expected


def test_equals_the_official_formula_on_random_predictions():
    """SCROLLS: rouge_score F x100, default tokenizer, no stemming; per id max over refs per type; mean; Rgm."""
    rng = random.Random(1)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    preds, refs = {}, {}
    for i in range(60):
        preds[str(i)] = _random_text(rng, rng.randint(0, 60))
        refs[str(i)] = [_random_text(rng, rng.randint(1, 60)) for _ in range(rng.randint(1, 3))]
    official = {k: 0.0 for k in ("rouge1", "rouge2", "rougeL")}
    for i, rs in refs.items():
        pair = [scorer.score(r, preds[i]) for r in rs]
        for k in official:
            official[k] += max(p[k].fmeasure for p in pair) * 100 / len(refs)
    ours = score("summarization", preds, refs)
    for k in official:
        assert ours[k] == pytest.approx(official[k], abs=1e-9)
    assert ours["rgm"] == pytest.approx(math.prod(official.values()) ** (1 / 3), abs=1e-9)
