"""SCROLLS as batches: tokenize, truncate to seq_len, pad.

The truncation rule (`encode_inputs`): keep the first seq_len - 1 tokens of the input and the closing </s>
(right truncation, so the query that QMSum and Qasper put first always survives), then pad to seq_len.
Targets keep their first max_target_len tokens the same way. Training sees every (id, output) pair;
evaluation sees one row per id, scored against all of that id's outputs. `layout` is the model family's choice of
batch: `seq2seq` (inputs for the encoder, targets as labels) or `causal` (one sequence, prompt then answer, for a
decoder-only LM: data/causal.py).
"""

from __future__ import annotations

import random

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from data.causal import CausalLayout
from data.resumable import EpochShuffle, ResumableLoader
from data.scrolls import group_references, load_rows
from study.errors import StudyError

IGNORE_INDEX = -100  # label positions the loss skips
LAYOUTS = ("seq2seq", "causal")


def encode_inputs(tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """Token ids of each input, right-truncated to seq_len (special tokens included)."""
    return tokenizer(texts, truncation=True, max_length=seq_len, add_special_tokens=True)["input_ids"]


def question_lengths(tokenizer, texts: list[str], seq_len: int) -> list[int]:
    """Tokens of each QA input's question: the text before its first blank line (SCROLLS' "question\n\ndocument"),
    without special tokens, at most seq_len; 0 where an input has no blank line."""
    questions = [t.split("\n\n", 1)[0] if "\n\n" in t else "" for t in texts]
    ids = tokenizer(questions, add_special_tokens=False)["input_ids"]
    return [min(len(x), seq_len) for x in ids]


def encode_targets(tokenizer, texts: list[str], max_target_len: int) -> list[list[int]]:
    return tokenizer(text_target=texts, truncation=True, max_length=max_target_len)["input_ids"]


def pad(seqs: list[list[int]], value: int, length: int | None = None) -> torch.Tensor:
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s[:length], dtype=torch.long)
    return out


class ScrollsDataModule(pl.LightningDataModule):
    def __init__(
        self,
        name: str,
        task: str,
        source: str = "hub",
        path: str | None = None,
        hub_url: str | None = None,
        synthetic: dict | None = None,
        max_target_len: int = 1024,
        val_every_steps: int = 500,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        num_workers: int = 0,
        cache_dir: str = ".cache",
        pad_to_seq_len: bool = True,
        tokenizer=None,
        seq_len: int | None = None,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        eval_split: str = "validation",
        seed: int = 0,
        layout: str = "seq2seq",
        prompt_separator: str | None = None,
    ):
        super().__init__()
        if seq_len is None or int(seq_len) <= 0:
            raise StudyError(f"seq_len={seq_len} must be a positive number of tokens")
        if layout not in LAYOUTS:
            raise StudyError(f"layout={layout} is not one of: {', '.join(LAYOUTS)}")
        self.name, self.task, self.source, self.path = name, task, source, path
        self.hub_url, self.synthetic, self.cache_dir = hub_url, synthetic, cache_dir
        self.max_target_len, self.val_every_steps = max_target_len, val_every_steps
        self.max_train_samples, self.max_val_samples = max_train_samples, max_val_samples
        self.num_workers, self.pad_to_seq_len = num_workers, pad_to_seq_len
        self.tokenizer, self.seq_len = tokenizer, int(seq_len)
        self.batch_size, self.eval_batch_size, self.eval_split, self.seed = batch_size, eval_batch_size, eval_split, seed
        self.train_examples: list[dict] | None = None
        self.eval_examples: list[dict] | None = None
        self.causal = None
        if layout == "causal":  # a decoder-only LM: one sequence per row, prompt then answer
            if prompt_separator is None:
                raise StudyError("layout=causal needs a prompt_separator (the model's model.prompt_separator)")
            self.causal = CausalLayout(tokenizer, self.seq_len, max_target_len, prompt_separator, pad_to_seq_len)

    # ---- rows ----------------------------------------------------------------------------------------------
    def rows(self, split: str) -> list[dict]:
        return load_rows(self.source, self.name, self.task, split, self.path, self.hub_url, self.synthetic, self.cache_dir)

    def _subset(self, items: list, limit: int | None) -> list:
        # a fixed random subset, the same for every seq_len and model so that runs stay comparable
        if limit is None or limit >= len(items):
            return items
        keep = sorted(random.Random(self.seed).sample(range(len(items)), limit))
        return [items[i] for i in keep]

    def prepare_train(self):
        rows = self._subset(self.rows("train"), self.max_train_samples)
        inputs = encode_inputs(self.tokenizer, [r["input"] for r in rows], self.seq_len)
        labels = encode_targets(self.tokenizer, [r["output"] for r in rows], self.max_target_len)
        self.train_examples = [{"input_ids": x, "labels": y} for x, y in zip(inputs, labels)]
        self._add_question_lengths(self.train_examples, [r["input"] for r in rows])
        if len(self.train_examples) < self.batch_size:
            raise StudyError(
                f"batch_size={self.batch_size} is larger than the {len(self.train_examples)} training examples of data={self.name}"
            )

    def prepare_eval(self):
        grouped = group_references(self.rows(self.eval_split))
        ids = self._subset(list(grouped), self.max_val_samples)
        inputs = encode_inputs(self.tokenizer, [grouped[i]["input"] for i in ids], self.seq_len)
        self.eval_examples = [
            {"id": i, "input_ids": x, "references": grouped[i]["references"]} for i, x in zip(ids, inputs)
        ]
        self._add_question_lengths(self.eval_examples, [grouped[i]["input"] for i in ids])

    def _add_question_lengths(self, examples: list[dict], texts: list[str]) -> None:
        # QA batches carry each question's length, for LED's global attention on it (module.global_attention)
        if self.task == "qa" and self.causal is None:
            for e, n in zip(examples, question_lengths(self.tokenizer, texts, self.seq_len)):
                e["question_len"] = n

    def setup(self, stage: str | None = None):
        if stage in ("fit", None) and self.train_examples is None:
            self.prepare_train()
        if stage in ("fit", "validate", "predict", None) and self.eval_examples is None:
            self.prepare_eval()

    def references(self) -> dict[str, list[str]]:
        return {e["id"]: e["references"] for e in self.eval_examples}

    # ---- batches -------------------------------------------------------------------------------------------
    def _inputs(self, seqs: list[list[int]]) -> dict:
        length = self.seq_len if self.pad_to_seq_len else None
        input_ids = pad(seqs, self.tokenizer.pad_token_id, length)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.tokenizer.pad_token_id).long()}

    def collate_train(self, examples: list[dict]) -> dict:
        if self.causal is not None:
            return self.causal.train(examples)
        batch = self._inputs([e["input_ids"] for e in examples])
        batch["labels"] = pad([e["labels"] for e in examples], IGNORE_INDEX)
        return self._with_question_lengths(batch, examples)

    @staticmethod
    def _with_question_lengths(batch: dict, examples: list[dict]) -> dict:
        if examples and "question_len" in examples[0]:
            batch["question_len"] = torch.tensor([e["question_len"] for e in examples], dtype=torch.long)
        return batch

    def collate_eval(self, examples: list[dict]) -> dict:
        if self.causal is not None:
            return self.causal.eval(examples)
        batch = self._inputs([e["input_ids"] for e in examples])
        batch["ids"] = [e["id"] for e in examples]
        batch["references"] = [e["references"] for e in examples]
        return self._with_question_lengths(batch, examples)

    def train_dataloader(self):
        # resumable mid-epoch (data/resumable.py): Lightning saves and restores its position with the training state
        loader = ResumableLoader(
            self.train_examples,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(self.train_examples), self.seed),
            collate_fn=self.collate_train,
            num_workers=self.num_workers,
            drop_last=True,
        )
        loader.position = self._batches_done_in_epoch
        return loader

    def _batches_done_in_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return 0 if trainer is None else trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def val_dataloader(self):
        return DataLoader(
            self.eval_examples, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collate_eval, num_workers=self.num_workers
        )

    predict_dataloader = val_dataloader
