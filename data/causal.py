"""A SCROLLS row as one token sequence for a decoder-only LM: the prompt (input, separator), then the answer.

A training row, with seq_len = 6, input x, separator S, answer a b, end of text E, padding P:

    input_ids  P P x x x x S a b E P      (the answer part is right-padded to the batch's longest answer)
    labels     - - - - - - - a b E -      (-100 everywhere but the answer and its end token)

The input part holds exactly the tokens an encoder-decoder's encoder gets (`data.datamodule.encode_inputs`: right
truncation to seq_len, so the query QMSum and Qasper put first survives) and is left-padded to seq_len, so
`seq_len` counts input tokens for every family, and a validation prompt (the same, without the answer) is laid out
as generation wants it: left-padded, ending where the answer begins. The answer keeps at most max_target_len tokens,
its end token included, as the encoder-decoders' targets do.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # label positions the loss skips (as data.datamodule.IGNORE_INDEX)


def separator_ids(tokenizer, separator: str) -> list[int]:
    """The separator's tokens (special-token strings such as "<s>" are recognised), never empty."""
    ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"the prompt separator {separator!r} encodes to no tokens")
    return ids


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as transformers' generate() counts them for a left-padded prompt,
    so training sees each token at the position generation will put it."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0).masked_fill(attention_mask == 0, 0)


class CausalLayout:
    """Batches for a decoder-only LM from the rows ScrollsDataModule encodes (input ids; target ids)."""

    def __init__(self, tokenizer, seq_len: int, max_target_len: int, separator: str, pad_to_seq_len: bool = True):
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("a decoder-only layout needs a tokenizer with a pad and an end-of-text token")
        self.pad_id, self.eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        self.seq_len, self.max_target_len, self.pad_to_seq_len = int(seq_len), int(max_target_len), pad_to_seq_len
        self.separator = separator_ids(tokenizer, separator)

    def answer(self, target_ids: list[int]) -> list[int]:
        """The target's tokens ending in one end token, at most max_target_len in all (a tokenizer that appends
        </s> itself, like the project's, and one that does not, like Qwen's, give the same layout)."""
        ids = list(target_ids)
        if ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        return ids[: self.max_target_len - 1] + [self.eos_id]

    def prompts(self, inputs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of the prompts, left-padded: input part to seq_len (or the batch's longest
        input when pad_to_seq_len is off), then the separator."""
        width = self.seq_len if self.pad_to_seq_len else max(len(x) for x in inputs)
        sep = len(self.separator)
        ids = torch.full((len(inputs), width + sep), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(inputs):
            x = list(x[:width]) + self.separator
            ids[i, width + sep - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, width + sep - len(x):] = 1
        return ids, mask

    def train(self, examples: list[dict]) -> dict:
        prompt_ids, prompt_mask = self.prompts([e["input_ids"] for e in examples])
        answers = [self.answer(e["labels"]) for e in examples]
        width = max(len(a) for a in answers)
        answer_ids = torch.full((len(answers), width), self.pad_id, dtype=torch.long)
        labels = torch.full_like(answer_ids, IGNORE_INDEX)
        for i, a in enumerate(answers):
            answer_ids[i, : len(a)] = torch.tensor(a, dtype=torch.long)
            labels[i, : len(a)] = answer_ids[i, : len(a)]
        return {
            "input_ids": torch.cat([prompt_ids, answer_ids], dim=1),
            "attention_mask": torch.cat([prompt_mask, (labels != IGNORE_INDEX).long()], dim=1),
            "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), labels], dim=1),
        }

    def eval(self, examples: list[dict]) -> dict:
        input_ids, attention_mask = self.prompts([e["input_ids"] for e in examples])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "ids": [e["id"] for e in examples],
            "references": [e["references"] for e in examples],
        }
