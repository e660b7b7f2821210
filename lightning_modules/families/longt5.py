"""LongT5 with transient-global attention (Guo et al. 2022, "LongT5: Efficient Text-To-Text Transformer for Long
Sequences"): T5 whose encoder attends a local window (radius `local_radius`, 127) plus "transient global" tokens,
one per block of `global_block_size` (16) inputs, the block's summed embeddings; relative position buckets, so no
input-position table (the study runs it to 16384 tokens, as its paper). The worked example of README's
"Adding a model family": this file and conf/model/longt5_*.yaml are all a family needs.

transformers implements its attention eagerly only (no SDPA or flash kernel), and the project has no fast path
for it: `impl=fast*` is refused.
"""

from __future__ import annotations

from lightning_modules.families import Family, register


def _dims(arch):
    """(model width D, attention width A = heads x head dim, FFN width F, FFN matrices, enc layers, dec layers, vocab)."""
    mats = 3 if str(arch.get("feed_forward_proj", "relu")).startswith("gated") else 2  # gated: wi_0, wi_1, wo
    layers = arch["num_layers"]
    return (arch["d_model"], arch["num_heads"] * arch["d_kv"], arch["d_ff"], mats, layers,
            arch.get("num_decoder_layers") or layers, arch["vocab_size"])


def local_pairs(S: int, radius: int) -> int:
    """(query, key) pairs with |q - k| <= radius among S tokens: what HF's blocked local attention keeps."""
    r = min(radius, S - 1)
    return S * (2 * r + 1) - r * (r + 1)


@register
class LongT5(Family):
    name = "longt5"
    kind = "seq2seq"
    order = 2
    marker = "^"
    optional_weights = ()

    def classes(self):
        from transformers import LongT5Config, LongT5ForConditionalGeneration

        return LongT5Config, LongT5ForConditionalGeneration

    # T5 starts decoding with <pad> (the base class's default); pad/eos come from the tokenizer in use

    def prepare_for_length(self, model, arch, seq_len):
        # the attention does not change with the length: local windows and one global token per block
        return {"transient-global": "transient_global", "local": "local"}[model.config.encoder_attention_type]

    def encoder_flops(self, arch, S, n_global=None):
        D, A, F, mats, Le, _, _ = _dims(arch)
        G = -(-S // arch.get("global_block_size", 16))  # transient global tokens
        per_layer = S * (8 * D * A + 2 * mats * D * F)  # q, k, v, o projections and the FFN
        pairs = local_pairs(S, arch.get("local_radius", 127))
        if arch.get("encoder_attention_type", "local") == "transient-global":
            per_layer += G * 4 * D * A  # the global tokens' keys and values
            pairs += S * G  # every token attends every global token
        return Le * (per_layer + 4 * A * pairs)

    def train_flops(self, arch, S, T):
        from lightning_modules.fast.flops import seq2seq_train_flops

        D, A, F, mats, _, Ld, V = _dims(arch)
        return seq2seq_train_flops(self.encoder_flops(arch, S), S, T, D, Ld, F, V, A=A, ffn_mats=mats)

    def generate_flops(self, arch, S, new_tokens):
        from lightning_modules.fast.flops import seq2seq_generate_flops

        D, A, F, mats, _, Ld, V = _dims(arch)
        return seq2seq_generate_flops(self.encoder_flops(arch, S), S, new_tokens, D, Ld, F, V, A=A, ffn_mats=mats)
