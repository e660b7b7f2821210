"""The embedded long-document corpus: SCROLLS-format rows generated deterministically from a seed.

Each document is `doc_tokens` words of report prose cut into `n_facts` equal sections; section i states its
fact, "the <attribute_i> is <value> .", `mentions` times at random places inside it, so the evidence is spread
evenly along the document and an input truncated to a fraction f of it keeps about f of the facts. (Repeating
a fact a few times within its section makes it salient enough for a tiny model to learn from in minutes.)

- summarization: the output lists the facts' values in document order ("red paris otter ...").
- qa: the input starts with "question : what is the <attribute> ?" joined to the document by a blank line
  (as in Qasper and QMSum); the output is the value. A quarter of the ids carry a second reference.

A model that cannot see a fact can only guess its value among the attribute's eight, so the score at a given
seq_len is bounded by the fraction of facts inside it (`oracle_score` computes that ceiling exactly).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from data.vocabulary import ATTRIBUTES, FILLER

TASKS = ("summarization", "qa")
SPLITS = ("train", "validation", "test")
_ATTRIBUTE_NAMES = list(ATTRIBUTES)


def _sentence(rng: random.Random) -> list[str]:
    return [rng.choice(FILLER) for _ in range(rng.randint(7, 15))] + ["."]


def make_section(rng: random.Random, tokens: int, fact: list[str], mentions: int) -> list[str]:
    """`tokens` words of prose with the fact sentence stated `mentions` times at random places."""
    mentions = max(1, min(mentions, tokens // len(fact)))
    prose: list[str] = []
    while len(prose) < tokens - mentions * len(fact):
        prose.extend(_sentence(rng))
    prose = prose[: tokens - mentions * len(fact)]
    for at in sorted((rng.randint(0, len(prose)) for _ in range(mentions)), reverse=True):
        prose[at:at] = fact
    return prose


def make_document(rng: random.Random, doc_tokens: int, n_facts: int, mentions: int = 1) -> tuple[list[str], list[tuple[str, str]]]:
    """Words of one document and its (attribute, value) facts in document order."""
    facts = [(a, rng.choice(ATTRIBUTES[a])) for a in _ATTRIBUTE_NAMES[:n_facts]]
    section_tokens = doc_tokens // n_facts
    words: list[str] = []
    for attribute, value in facts:
        words.extend(make_section(rng, section_tokens, ["the", attribute, "is", value, "."], mentions))
    return words, facts


def generate_split(
    split: str, task: str, n_docs: int, doc_tokens: int, n_facts: int, seed: int, min_doc_fraction: float = 1.0, mentions: int = 1
) -> list[dict]:
    """SCROLLS rows {id, pid, input, output} for one split.

    min_doc_fraction < 1 draws training documents between that fraction of doc_tokens and all of it: a curriculum
    of shorter, denser documents. Validation and test documents always have doc_tokens.
    """
    if task not in TASKS:
        raise ValueError(f"synthetic task '{task}' is not one of: {', '.join(TASKS)}")
    if not 1 <= n_facts <= len(_ATTRIBUTE_NAMES):
        raise ValueError(f"n_facts={n_facts} must be between 1 and {len(_ATTRIBUTE_NAMES)}")
    rng = random.Random(f"{seed}-{split}-{task}")
    rows = []
    for i in range(n_docs):
        length = doc_tokens
        if split == "train" and min_doc_fraction < 1.0:
            length = int(doc_tokens * rng.uniform(min_doc_fraction, 1.0))
        words, facts = make_document(rng, max(length, 8 * n_facts), n_facts, mentions)
        doc_id = f"{task[:4]}-{split}-{i:05d}"
        document = " ".join(words)
        if task == "summarization":
            rows.append({"id": doc_id, "pid": f"{doc_id}_0", "input": document, "output": " ".join(v for _, v in facts)})
            continue
        attribute, value = rng.choice(facts)
        question = f"question : what is the {attribute} ?"
        outputs = [value]
        if rng.random() < 0.25:
            outputs.append(f"the {attribute} is {value}")
        for k, output in enumerate(outputs):
            rows.append({"id": doc_id, "pid": f"{doc_id}_{k}", "input": f"{question}\n\n{document}", "output": output})
    return rows


def write_corpus(
    out_dir: str | os.PathLike,
    task: str,
    sizes: dict[str, int],
    doc_tokens: int,
    n_facts: int,
    seed: int,
    min_doc_fraction: float = 1.0,
    mentions: int = 1,
) -> Path:
    """Write {train,validation,test}.jsonl (test rows without outputs, as in SCROLLS). Atomic per file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = generate_split(split, task, sizes[split], doc_tokens, n_facts, seed, min_doc_fraction, mentions)
        if split == "test":
            rows = [{k: v for k, v in r.items() if k != "output"} for r in rows]
        tmp = out / f".{split}.jsonl.{os.getpid()}"
        with open(tmp, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        os.replace(tmp, out / f"{split}.jsonl")
    return out

