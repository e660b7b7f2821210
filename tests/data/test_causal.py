"""The decoder-only layout: prompt (the encoder's input tokens, a separator) then the answer, loss on the answer only."""

import pytest
import torch

from data.causal import IGNORE_INDEX, CausalLayout, position_ids, separator_ids
from data.datamodule import ScrollsDataModule, encode_inputs, encode_targets
from data.tokenizer import load_project_tokenizer
from lightning_modules.families.qwen3 import PROMPT_SEPARATOR
from study.errors import StudyError

QUERY = "question : what is the city ?"


@pytest.fixture(scope="module")
def tok():
    return load_project_tokenizer()


def _rows(tok, seq_len, inputs, answers, max_target_len=8):
    return [
        {"input_ids": x, "labels": y}
        for x, y in zip(encode_inputs(tok, inputs, seq_len), encode_targets(tok, answers, max_target_len))
    ]


def test_the_separator_is_real_words_in_the_project_vocabulary(tok):
    sep = separator_ids(tok, PROMPT_SEPARATOR)
    assert tok.unk_token_id not in sep and tok.decode(sep) == "response :"
    with pytest.raises(ValueError, match="encodes to no tokens"):
        separator_ids(tok, "   ")


def test_training_row_is_left_padded_input_then_separator_then_answer_and_only_the_answer_is_labelled(tok):
    seq_len = 32
    layout = CausalLayout(tok, seq_len, max_target_len=8, separator=PROMPT_SEPARATOR)
    sep = separator_ids(tok, PROMPT_SEPARATOR)
    short, long = "the report", f"{QUERY}\n\n" + " ".join(["budget"] * 200) + " the city is paris ."
    rows = _rows(tok, seq_len, [short, long], ["paris", "red blue green"])
    batch = layout.train(rows)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    width = seq_len + len(sep)
    assert ids.shape == labels.shape == mask.shape and ids.shape[1] == width + 4  # longest answer: 3 words + </s>
    for i, row in enumerate(rows):
        # the input part is exactly the tokens an encoder gets, ending where the separator begins
        n = len(row["input_ids"])
        assert ids[i, seq_len - n: seq_len].tolist() == row["input_ids"]
        assert ids[i, seq_len: width].tolist() == sep
        assert (ids[i, : seq_len - n] == tok.pad_token_id).all() and (mask[i, : seq_len - n] == 0).all()
        # labels: the answer and its end token, nothing of the prompt or the padding
        kept = labels[i][labels[i] != IGNORE_INDEX].tolist()
        assert kept == row["labels"] and kept[-1] == tok.eos_token_id
        assert (labels[i, :width] == IGNORE_INDEX).all()
        assert mask[i].sum().item() == n + len(sep) + len(kept)
    assert tok.decode(labels[1][labels[1] != IGNORE_INDEX], skip_special_tokens=True) == "red blue green"
    # right truncation kept the leading query, and the evidence past the cut is gone
    prompt = tok.decode(ids[1, :seq_len], skip_special_tokens=True)
    assert prompt.startswith(QUERY) and "paris" not in prompt


def test_seq_len_counts_input_tokens_whatever_the_input_length(tok):
    layout = CausalLayout(tok, 24, max_target_len=8, separator=PROMPT_SEPARATOR)
    sep = len(separator_ids(tok, PROMPT_SEPARATOR))
    for text in ("the", " ".join(["report"] * 10), " ".join(["report"] * 500)):
        batch = layout.eval([{"input_ids": encode_inputs(tok, [text], 24)[0], "id": "a", "references": ["x"]}])
        assert batch["input_ids"].shape == (1, 24 + sep)
        assert int(batch["attention_mask"].sum()) == min(len(text.split()) + 1, 24) + sep  # + </s>, at most seq_len
    unpadded = CausalLayout(tok, 24, max_target_len=8, separator=PROMPT_SEPARATOR, pad_to_seq_len=False)
    assert unpadded.prompts([[5, 6, 2], [7, 2]])[0].shape == (2, 3 + sep)


def test_answers_keep_max_target_len_tokens_with_one_end_token_whether_or_not_the_tokenizer_adds_it(tok):
    layout = CausalLayout(tok, 16, max_target_len=4, separator=PROMPT_SEPARATOR)
    eos = tok.eos_token_id
    assert layout.answer([10, 11, 12, 13, 14, eos]) == [10, 11, 12, eos]
    assert layout.answer([10, 11, 12, 13, 14]) == [10, 11, 12, eos]  # a tokenizer (Qwen's) that appends nothing
    assert layout.answer([10, eos]) == layout.answer([10]) == [10, eos]


def test_eval_prompts_are_left_padded_and_end_with_the_separator(tok):
    layout = CausalLayout(tok, 16, max_target_len=4, separator=PROMPT_SEPARATOR)
    sep = separator_ids(tok, PROMPT_SEPARATOR)
    batch = layout.eval([
        {"input_ids": [10, 2], "id": "a", "references": ["r1"]},
        {"input_ids": list(range(10, 25)) + [2], "id": "b", "references": ["r2", "r3"]},
    ])
    assert batch["ids"] == ["a", "b"] and batch["references"] == [["r1"], ["r2", "r3"]]
    assert (batch["input_ids"][:, -len(sep):] == torch.tensor(sep)).all()  # generation continues right after it
    assert batch["attention_mask"][0].tolist() == [0] * 14 + [1] * (2 + len(sep))
    assert "labels" not in batch


def test_positions_count_real_tokens_only(tok):
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]


def _datamodule(tok, tmp_path, **kw):
    rows = tmp_path / "rows"
    rows.mkdir(exist_ok=True)
    synthetic = {"n_train": 8, "n_validation": 4, "n_test": 2, "doc_tokens": 128, "n_facts": 4, "mentions": 1, "seed": 0, "min_doc_fraction": 1.0}
    return ScrollsDataModule(
        name="synthetic", task="summarization", source="synthetic", synthetic=synthetic, cache_dir=str(tmp_path),
        tokenizer=tok, seq_len=64, batch_size=4, eval_batch_size=4, max_target_len=12, **kw,
    )


def test_the_datamodule_builds_causal_batches_when_the_family_asks(tok, tmp_path):
    data = _datamodule(tok, tmp_path, layout="causal", prompt_separator=PROMPT_SEPARATOR)
    data.setup("fit")
    train = next(iter(data.train_dataloader()))
    sep = len(separator_ids(tok, PROMPT_SEPARATOR))
    assert set(train) == {"input_ids", "attention_mask", "labels"} and train["input_ids"].shape[1] > 64 + sep
    assert (train["labels"][:, : 64 + sep] == IGNORE_INDEX).all()
    val = next(iter(data.val_dataloader()))
    assert val["input_ids"].shape == (4, 64 + sep) and len(val["ids"]) == 4
    seq2seq = _datamodule(tok, tmp_path)
    seq2seq.setup("fit")
    assert next(iter(seq2seq.train_dataloader()))["input_ids"].shape == (4, 64)  # the encoder-decoders' batches unchanged


def test_bad_layouts_fail_in_one_line(tok, tmp_path):
    with pytest.raises(StudyError, match="layout=decoder is not one of: seq2seq, causal"):
        _datamodule(tok, tmp_path, layout="decoder")
    with pytest.raises(StudyError, match="layout=causal needs a prompt_separator"):
        _datamodule(tok, tmp_path, layout="causal")
