"""Qwen3: a decoder-only causal LM (Qwen Team 2025; `Qwen/Qwen3-0.6B`), the study's question past 2022.

One sequence per SCROLLS row: the input (the same seq_len tokens an encoder gets), a separator, the answer
(data/causal.py); the loss on the answer only; validation by greedy generation with a KV cache
(lightning_modules/causal.py). Full causal attention through transformers' kernels: `model.arch.attn_implementation`
is sdpa (default), flash_attention_2 (GPU, the flash-attn package) or eager. Rotary positions: the input limit is the
model's max_position_embeddings (40960 for Qwen3-0.6B).
"""

from __future__ import annotations

from lightning_modules.families import Family, register
from study.errors import StudyError

# between the input and the answer: words both the hub tokenizer and the project's word-level one know, in every task
PROMPT_SEPARATOR = "\n\nResponse:"


def _dims(arch: dict):
    D, L, F, V = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"], arch["vocab_size"]
    head_dim = arch.get("head_dim") or D // arch["num_attention_heads"]
    A = arch["num_attention_heads"] * head_dim  # query (and output) width
    Akv = arch.get("num_key_value_heads", arch["num_attention_heads"]) * head_dim  # grouped keys and values
    return D, L, F, V, A, Akv


def _token_flops(D, F, A, Akv):
    """Matmul FLOPs of one token through one layer, attention scores excluded: q, k, v, o and the gated FFN."""
    return 2 * (2 * D * A + 2 * D * Akv) + 2 * 3 * D * F


@register
class Qwen3(Family):
    name = "qwen3"
    kind = "causal"
    order = 3  # after the paper's families and LongT5
    marker = "D"  # a diamond: the one decoder-only family
    optional_weights = ("lm_head.weight",)  # tied to the input embeddings

    def classes(self):
        from transformers import Qwen3Config, Qwen3ForCausalLM

        return Qwen3Config, Qwen3ForCausalLM

    def config_kwargs(self, arch: dict, tokenizer) -> dict:
        arch = super().config_kwargs(arch, tokenizer)
        arch.pop("attn_implementation", None)  # chosen on the built model (prepare_for_length), hub or not
        return arch

    def configure_generation(self, model) -> None:
        # a hub checkpoint's generation_config.json knows its end tokens (Qwen3 has two) and its config.json no pad:
        # keep what is there, fill only what is missing
        gc, c = model.generation_config, model.config
        if gc.pad_token_id is None:
            gc.pad_token_id = c.pad_token_id if c.pad_token_id is not None else c.eos_token_id
        if gc.eos_token_id is None:
            gc.eos_token_id = c.eos_token_id

    def data_kwargs(self) -> dict:
        return {"layout": "causal", "prompt_separator": PROMPT_SEPARATOR}

    def prepare_for_length(self, model, arch: dict, seq_len: int) -> str:
        impl = arch.get("attn_implementation", "sdpa")
        try:
            model.set_attn_implementation(impl)
        except (ImportError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StudyError(
                f"model.arch.attn_implementation={impl} is not available here ({first[:160]}); use sdpa or eager"
            ) from None
        return "causal"

    # ---- cost (lightning_modules/fast/flops.py's rules) ------------------------------------------------------
    def train_flops(self, arch: dict, S: int, T: int) -> int:
        """One training sample: S input and T answer tokens in one causal sequence (the separator's few tokens
        left out); the LM head runs over every position, as the model computes it."""
        D, L, F, V, A, Akv = _dims(arch)
        N = S + T
        forward = L * (N * _token_flops(D, F, A, Akv) + 4 * A * (N * (N + 1) // 2)) + 2 * N * D * V
        return 3 * forward

    def generate_flops(self, arch: dict, S: int, new_tokens: int) -> int:
        """Greedy generation with a KV cache: the prompt in one pass (LM head on its last position, which gives the
        first token), then one single-token pass per further token, attending to everything before it."""
        D, L, F, V, A, Akv = _dims(arch)
        total = L * (S * _token_flops(D, F, A, Akv) + 4 * A * (S * (S + 1) // 2)) + 2 * D * V
        for t in range(1, new_tokens):
            total += L * (_token_flops(D, F, A, Akv) + 4 * A * (S + t + 1)) + 2 * D * V
        return total
