"""The study's fine-tuning recipe around a decoder-only causal LM (Qwen3 and its kind).

The same optimizer, schedule, validation by generation, scoring and recording as Seq2SeqModule (this is a
subclass); what differs is the batch (prompt then answer, the loss on the answer only: data/causal.py) and how text is
generated: the prompt batch comes left-padded, is decoded greedily with a KV cache, and only the new tokens are the
prediction. `generation.cache_implementation: static` preallocates the cache (transformers' StaticCache), which
lets torch.compile capture each decoding step on a GPU; null grows a dynamic cache.
"""

from __future__ import annotations

from data.causal import position_ids
from lightning_modules.seq2seq import Seq2SeqModule
from study.errors import StudyError

CACHE_IMPLEMENTATIONS = (None, "dynamic", "static")


class CausalLMModule(Seq2SeqModule):
    def __init__(self, model, tokenizer, task: str, **recipe):
        if recipe.get("attn_impl", "hf") != "hf":  # the project's fused path (lightning_modules/fast) is encoder-decoder only
            raise StudyError(f"model.attn_impl={recipe['attn_impl']}: a decoder-only LM has no fast path; use impl=stock")
        recipe.pop("global_attention_on_first_token", None)  # an encoder setting: a decoder-only LM has no encoder
        super().__init__(model, tokenizer, task, **recipe)
        cache = self.generation.get("cache_implementation")
        if cache not in CACHE_IMPLEMENTATIONS:
            raise StudyError(
                f"generation.cache_implementation={cache} is not one of: {', '.join(map(str, CACHE_IMPLEMENTATIONS))}"
            )

    def forward(self, batch: dict):
        # positions counted over real tokens: a left-padded row starts at position 0, as generate() places it
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels") if k in batch}
        return self.model(**inputs, position_ids=position_ids(batch["attention_mask"]))

    def predict_texts(self, batch) -> list[str]:
        generation = {k: v for k, v in self.generation.items() if v is not None}
        prompt = batch["input_ids"]
        out = self.model.generate(input_ids=prompt, attention_mask=batch["attention_mask"], do_sample=False, **generation)
        texts = self.tokenizer.batch_decode(out[:, prompt.shape[1]:], skip_special_tokens=True)
        return [self.family.postprocess(t) for t in texts] if self.family is not None else texts
