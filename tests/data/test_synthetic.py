"""The embedded corpus: deterministic, SCROLLS-shaped, with evidence spread along each document."""

from data.synthetic import ATTRIBUTES, generate_split, write_corpus
from data.tokenizer import SHIPPED, as_transformers, build, load_project_tokenizer
from data.vocabulary import FILLER, STRUCTURE


def test_same_seed_same_rows_and_other_seed_other_rows():
    a = generate_split("train", "summarization", 5, 512, 8, seed=1)
    assert a == generate_split("train", "summarization", 5, 512, 8, seed=1)
    assert a != generate_split("train", "summarization", 5, 512, 8, seed=2)


def test_summary_lists_each_sections_value_in_order():
    (row,) = generate_split("validation", "summarization", 1, 800, 8, seed=0, mentions=3)
    words = row["input"].split()
    assert len(words) == 800
    values = row["output"].split()
    assert len(values) == 8
    for i, (attribute, value) in enumerate(zip(ATTRIBUTES, values)):
        section = words[i * 100 : (i + 1) * 100]
        assert value in ATTRIBUTES[attribute]
        assert section.count(value) == 3  # every mention of fact i lies inside section i
        assert value not in words[: i * 100] + words[(i + 1) * 100 :]


def test_truncation_loses_facts_in_proportion():
    rows = generate_split("validation", "summarization", 20, 1024, 8, seed=0)
    for cut, expected in ((256, 2), (512, 4), (1024, 8)):
        for row in rows:
            seen = set(row["input"].split()[:cut])
            assert sum(v in seen for v in row["output"].split()) == expected


def test_qa_rows_put_the_question_first_and_may_have_two_references():
    rows = generate_split("validation", "qa", 40, 512, 8, seed=0)
    assert all(r["input"].startswith("question : what is the ") and "?\n\n" in r["input"] for r in rows)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == 40 and len(ids) > 40  # some ids carry a second reference
    for r in rows:
        attribute = r["input"].split()[5]
        assert r["output"].split()[-1] in ATTRIBUTES[attribute]


def test_curriculum_shortens_training_documents_only():
    train = generate_split("train", "summarization", 20, 1000, 8, seed=0, min_doc_fraction=0.25)
    val = generate_split("validation", "summarization", 5, 1000, 8, seed=0, min_doc_fraction=0.25)
    assert min(len(r["input"].split()) for r in train) < 1000
    assert all(len(r["input"].split()) == 1000 for r in val)


def test_write_corpus_in_scrolls_layout(tmp_path):
    write_corpus(tmp_path, "qa", {"train": 3, "validation": 2, "test": 2}, 256, 4, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl", "train.jsonl", "validation.jsonl"]
    assert '"output"' not in (tmp_path / "test.jsonl").read_text()


def test_vocabularies_are_disjoint_so_values_are_found_by_content():
    values = {v for vs in ATTRIBUTES.values() for v in vs}
    assert not values & set(FILLER) and not set(ATTRIBUTES) & set(FILLER) and not values & set(STRUCTURE)
    assert len(values) == sum(len(v) for v in ATTRIBUTES.values())


def test_shipped_tokenizer_is_the_deterministic_rebuild(tmp_path):
    as_transformers(build()).save_pretrained(str(tmp_path))
    assert (tmp_path / "tokenizer.json").read_text() == (SHIPPED / "tokenizer.json").read_text()


def test_tokenizer_covers_the_corpus_without_unknowns():
    tok = load_project_tokenizer()
    for task in ("summarization", "qa"):
        for row in generate_split("validation", task, 3, 512, 8, seed=0):
            assert tok.unk_token_id not in tok(row["input"])["input_ids"]
            assert tok.decode(tok(row["output"])["input_ids"], skip_special_tokens=True) == row["output"]
