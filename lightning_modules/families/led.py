"""LED (Beltagy et al. 2020): BART with Longformer self-attention in the encoder (sliding window + global tokens)."""

from __future__ import annotations

from lightning_modules.families import Family, first_token_global, question_global, register


@register
class LED(Family):
    name = "led"
    kind = "seq2seq"
    order = 0  # the paper's first family
    marker = "o"

    def classes(self):
        from transformers import LEDConfig, LEDForConditionalGeneration

        return LEDConfig, LEDForConditionalGeneration

    def decoder_start_token_id(self, tokenizer) -> int:
        return tokenizer.eos_token_id  # BART/LED start decoding with </s>

    def config_kwargs(self, arch, tokenizer):
        arch = super().config_kwargs(arch, tokenizer)
        if isinstance(arch.get("attention_window"), int):
            arch["attention_window"] = [arch["attention_window"]] * arch["encoder_layers"]
        return arch

    def global_inputs(self, input_ids, question_len=None):
        # the standard setting for summarization and QA: the first token attends to, and is seen by, all; with
        # question_len (module.global_attention=question) the question's tokens, as Longformer's QA recipe
        if question_len is not None:
            return {"global_attention_mask": question_global(input_ids, question_len)}
        return {"global_attention_mask": first_token_global(input_ids)}

    def prepare_for_length(self, model, arch, seq_len):
        return "sliding_window+global"

    def encoder_flops(self, arch, S, n_global=1):
        from lightning_modules.fast.flops import _dims, led_pairs

        D, Le, *_ = _dims(arch)
        window = arch["attention_window"]
        window = window if isinstance(window, int) else window[0]
        # key_global, value_global over all tokens, query_global over the globals (the model's count)
        extra = Le * (S * 4 * D * D + n_global * 2 * D * D)
        from lightning_modules.fast.flops import dense_encoder_flops

        return dense_encoder_flops(arch, S, led_pairs(S, window, n_global)) + extra

    def train_flops(self, arch, S, T, n_global=1):
        from lightning_modules.fast.flops import _dims, seq2seq_train_flops

        D, _, Ld, _, Fd, V = _dims(arch)
        return seq2seq_train_flops(self.encoder_flops(arch, S, n_global), S, T, D, Ld, Fd, V)

    def generate_flops(self, arch, S, new_tokens, n_global=1):
        from lightning_modules.fast.flops import _dims, seq2seq_generate_flops

        D, _, Ld, _, Fd, V = _dims(arch)
        return seq2seq_generate_flops(self.encoder_flops(arch, S, n_global), S, new_tokens, D, Ld, Fd, V)

    def fast_path(self):
        from lightning_modules.fast.led import LED_FAST

        return LED_FAST
