"""BigBird-Pegasus (Zaheer et al. 2020): Pegasus with block-sparse attention (window, global and random blocks)."""

from __future__ import annotations

import logging

from lightning_modules.families import Family, register

log = logging.getLogger(__name__)


def block_sparse_min_len(arch) -> int | None:
    """BigBird uses block-sparse attention only above this many tokens (see transformers' BigBirdPegasusEncoder)."""
    if arch.get("attention_type", "block_sparse") != "block_sparse":
        return None
    return (5 + 2 * arch["num_random_blocks"]) * arch["block_size"] + 1


@register
class BigBirdPegasus(Family):
    name = "bigbird_pegasus"
    kind = "seq2seq"
    order = 1
    marker = "s"
    max_seq_len = 4096  # its published positions: BigBird-Pegasus is not run past the paper's lengths
    pad_to_seq_len = True  # a short batch switches BigBird to full attention for good: always pad to seq_len

    def classes(self):
        from transformers import BigBirdPegasusConfig, BigBirdPegasusForConditionalGeneration

        return BigBirdPegasusConfig, BigBirdPegasusForConditionalGeneration

    def prepare_for_length(self, model, arch, seq_len):
        minimum = block_sparse_min_len(arch)
        if minimum is not None and seq_len < minimum:
            log.warning("seq_len=%d is too short for BigBird block-sparse attention (needs >= %d): using full attention", seq_len, minimum)
            model.get_encoder().set_attention_type("original_full")
        return model.get_encoder().attention_type

    def encoder_flops(self, arch, S, n_global=1):
        from lightning_modules.fast.flops import bigbird_pairs, dense_encoder_flops

        return dense_encoder_flops(arch, S, bigbird_pairs(S, arch["block_size"], arch["num_random_blocks"]))

    def train_flops(self, arch, S, T, n_global=1):
        from lightning_modules.fast.flops import _dims, seq2seq_train_flops

        D, _, Ld, _, Fd, V = _dims(arch)
        return seq2seq_train_flops(self.encoder_flops(arch, S), S, T, D, Ld, Fd, V)

    def generate_flops(self, arch, S, new_tokens, n_global=1):
        from lightning_modules.fast.flops import _dims, seq2seq_generate_flops

        D, _, Ld, _, Fd, V = _dims(arch)
        return seq2seq_generate_flops(self.encoder_flops(arch, S), S, new_tokens, D, Ld, Fd, V)

    def fast_path(self):
        from lightning_modules.fast.bigbird import BIGBIRD_FAST

        return BIGBIRD_FAST

    def postprocess(self, text):
        return text.replace("<n>", "\n")  # Pegasus's tokenizer spells a newline "<n>"
