"""The SCROLLS scores, in the one place that train.py, infer.py and the tests all use.

Summarization (GovReport, SummScreenFD, QMSum): ROUGE-1, ROUGE-2 and ROUGE-L (not Lsum) F-measures x 100 with
the `rouge_score` package's default tokenizer and no stemming; for each id the maximum over its references,
separately for each type; the mean over ids; Rgm = (R1 * R2 * RL) ** (1/3).
QA (Qasper): SQuAD-normalised token F1 (SQuAD v1.1 rules: no common token scores 0), max over the id's references,
mean over ids, x 100.

ROUGE-L needs the longest common subsequence; rouge_score fills an O(n*m) Python table (~0.15 s for a pair of
500-word summaries). `lcs_length` computes the same number bit-parallel (Hyyro 2004): one big-integer update per
prediction token, so a GovReport validation pass scores in seconds. A test checks it against rouge_score.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

from rouge_score import tokenize as rouge_tokenize

SUMMARIZATION = "summarization"
QA = "qa"
TASK_METRIC = {SUMMARIZATION: "rgm", QA: "f1"}
# Predictions are scored as given, like the official scorer does: the Pegasus `<n>` newline token is turned into a
# newline where a Pegasus tokenizer's output is decoded (lightning_modules/seq2seq.py), never in a user's file.


# ---- ROUGE -------------------------------------------------------------------------------------------------


def rouge_tokens(text: str) -> list[str]:
    return rouge_tokenize.tokenize(text, None)


def _fmeasure(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def _ngram_f(pred: list[str], ref: list[str], n: int) -> float:
    p = Counter(tuple(pred[i : i + n]) for i in range(len(pred) - n + 1))
    r = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
    return _fmeasure(sum((p & r).values()), sum(p.values()), sum(r.values()))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists, bit-parallel over `a`."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full  # zero bits of v mark LCS matches so far
    for tok in b:
        m = masks.get(tok)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures in [0, 1] for one pair, as rouge_score computes them."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    return {
        "rouge1": _ngram_f(pred, ref, 1),
        "rouge2": _ngram_f(pred, ref, 2),
        "rougeL": _fmeasure(lcs_length(ref, pred), len(pred), len(ref)),
    }


def score_summarization(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for doc_id, refs in references.items():
        pred = predictions.get(doc_id, "")
        pair_scores = [rouge(pred, ref) for ref in refs]
        for key in totals:  # max over references, separately for each ROUGE type
            totals[key] += max(s[key] for s in pair_scores)
    out = {k: 100.0 * v / len(references) for k, v in totals.items()}
    out["rgm"] = (out["rouge1"] * out["rouge2"] * out["rougeL"]) ** (1.0 / 3.0)
    return out


# ---- QA F1 -------------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(reference).split()
    return _fmeasure(sum((Counter(pred) & Counter(ref)).values()), len(pred), len(ref))


def score_qa(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    total = sum(
        max(token_f1(predictions.get(doc_id, ""), ref) for ref in refs) for doc_id, refs in references.items()
    )
    return {"f1": 100.0 * total / len(references)}


def score(task: str, predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """Scores for every id in `references`; an id with no prediction scores as an empty prediction."""
    if not references:
        raise ValueError("no references to score against")
    if task == SUMMARIZATION:
        result = score_summarization(predictions, references)
    elif task == QA:
        result = score_qa(predictions, references)
    else:
        raise ValueError(f"task '{task}' is not one of: {SUMMARIZATION}, {QA}")
    assert all(math.isfinite(v) for v in result.values())
    return result
