"""Truncation to seq_len, query preservation, padding, and the train/eval views of the rows."""

import pytest

from data.datamodule import IGNORE_INDEX, ScrollsDataModule, encode_inputs, pad
from data.scrolls import group_references
from data.tokenizer import load_project_tokenizer
from study.errors import StudyError


@pytest.fixture(scope="module")
def tok():
    return load_project_tokenizer()


def test_truncation_keeps_the_first_tokens_and_the_closing_eos(tok):
    text = " ".join(["report"] * 50)
    ids = encode_inputs(tok, [text], seq_len=16)[0]
    assert len(ids) == 16
    assert ids[-1] == tok.eos_token_id
    assert ids[:-1] == [tok.convert_tokens_to_ids("report")] * 15


def test_short_inputs_are_not_padded_by_encoding(tok):
    ids = encode_inputs(tok, ["the report"], seq_len=16)[0]
    assert len(ids) == 3


def test_right_truncation_preserves_a_leading_query(tok):
    query = "question : what is the city ?"
    doc = " ".join(["budget"] * 500) + " the city is paris ."
    ids = encode_inputs(tok, [f"{query}\n\n{doc}"], seq_len=32)[0]
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded.startswith("question : what is the city ?")
    assert "paris" not in decoded  # the evidence past the cut is gone


def _module(tok, tmp_path, **kw):
    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    train = [
        {"id": "a", "pid": "a0", "input": "the report said " * 40, "output": "red paris"},
        {"id": "a", "pid": "a1", "input": "the report said " * 40, "output": "blue oslo"},
        {"id": "b", "pid": "b0", "input": "the budget", "output": "green"},
    ]
    (rows_dir / "train.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in train) + "\n")
    (rows_dir / "validation.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in train) + "\n")
    (rows_dir / "test.jsonl").write_text('{"id": "t", "pid": "t0", "input": "the"}\n')
    args = dict(name="local", task="summarization", source="hub", path=str(rows_dir), max_target_len=2, tokenizer=tok,
                seq_len=24, batch_size=2, eval_batch_size=4)
    args.update(kw)
    dm = ScrollsDataModule(**args)
    dm.setup("fit")
    return dm


def test_training_keeps_every_id_output_pair_and_eval_one_row_per_id(tok, tmp_path):
    dm = _module(tok, tmp_path)
    assert len(dm.train_examples) == 3
    assert [e["id"] for e in dm.eval_examples] == ["a", "b"]
    assert dm.references() == {"a": ["red paris", "blue oslo"], "b": ["green"]}


def test_batches_are_padded_to_seq_len_with_masked_labels(tok, tmp_path):
    dm = _module(tok, tmp_path)
    batch = dm.collate_train(dm.train_examples)
    assert batch["input_ids"].shape == (3, 24)
    assert batch["attention_mask"][2].sum().item() == 3  # "the budget" + </s>
    # targets truncated to max_target_len=2 the same way: first token(s), then </s>
    ids = tok.convert_tokens_to_ids
    assert batch["labels"].tolist() == [[ids("red"), tok.eos_token_id], [ids("blue"), tok.eos_token_id], [ids("green"), tok.eos_token_id]]
    ev = dm.collate_eval(dm.eval_examples)
    assert ev["ids"] == ["a", "b"] and ev["references"][0] == ["red paris", "blue oslo"]


def test_without_static_padding_batches_pad_to_their_longest(tok, tmp_path):
    dm = _module(tok, tmp_path, pad_to_seq_len=False)
    batch = dm.collate_train(dm.train_examples[2:])
    assert batch["input_ids"].shape == (1, 3)


def test_seq_len_must_be_positive(tok):
    with pytest.raises(StudyError, match="seq_len=0"):
        ScrollsDataModule(name="x", task="summarization", tokenizer=tok, seq_len=0)


def test_group_references_keeps_first_seen_order():
    rows = [{"id": "x", "input": "i", "output": "1"}, {"id": "y", "input": "j", "output": "2"}, {"id": "x", "input": "i", "output": "3"}]
    assert group_references(rows) == {"x": {"input": "i", "references": ["1", "3"]}, "y": {"input": "j", "references": ["2"]}}


def test_label_padding_is_ignored_by_the_loss():
    assert pad([[5, 2], [7]], IGNORE_INDEX).tolist() == [[5, 2], [7, IGNORE_INDEX]]


def test_qa_batches_carry_each_questions_length_for_global_attention(tok, tmp_path):
    import json

    import torch

    from lightning_modules import families

    rows_dir = tmp_path / "qa"
    rows_dir.mkdir()
    rows = [{"id": "q1", "pid": "q1_0", "input": "question : what is the city ?\n\nthe city is paris .", "output": "paris"},
            {"id": "q2", "pid": "q2_0", "input": "question : what is it ?\n\nthe report said", "output": "red"},
            {"id": "q3", "pid": "q3_0", "input": "no blank line here", "output": "red"}]
    for split in ("train", "validation", "test"):
        (rows_dir / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dm = ScrollsDataModule(name="local", task="qa", source="hub", path=str(rows_dir), max_target_len=4, tokenizer=tok,
                           seq_len=16, batch_size=3, eval_batch_size=3)
    dm.setup("fit")
    batch, ev = dm.collate_train(dm.train_examples), dm.collate_eval(dm.eval_examples)
    assert batch["question_len"].tolist() == [7, 6, 0] and ev["question_len"].tolist() == [7, 6, 0]
    mask = families.get("led").global_inputs(batch["input_ids"], batch["question_len"])["global_attention_mask"]
    assert mask.sum(1).tolist() == [7, 6, 1]  # at least the first token, as LED's default
    assert tok.decode(batch["input_ids"][0][mask[0].bool()]) == "question : what is the city ?"
    assert torch.equal(families.get("led").global_inputs(batch["input_ids"])["global_attention_mask"].sum(1), torch.ones(3, dtype=torch.long))
    (tmp_path / "s").mkdir()
    summ = _module(tok, tmp_path / "s")
    assert "question_len" not in summ.collate_train(summ.train_examples)  # a summarization batch has no question
