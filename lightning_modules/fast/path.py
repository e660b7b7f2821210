"""What a family's fast path provides to the shared machinery (model.py, generate.py, step_graph.py).

A family module's `fast_path()` returns one `FastPath`; the shared code asks it, never the family's name.
The decoder (decoder.py, generate.py) is the BART-style decoder LED and BigBird-Pegasus share.
"""


class FastPath:
    encoder_layer = None  # fn(layer, x, pattern, ...) -> x: one encoder layer, compiled once per kind by FastState
    pre_ln = False  # the decoder normalises before each block (Pegasus) rather than after (BART/LED)
    takes_global_mask = False  # whether `global_attention_mask` is a model input
    uses_cache = False  # whether encode() reads a static per-layer cache (FastState.enc_cache)
    plan_floors = ()  # static_plan's counts that may be raised (the extra slots are inert): a captured step keeps the largest

    def base(self, model):
        """The inner model holding .encoder and .decoder."""
        raise NotImplementedError

    def output_cls(self):
        """The ModelOutput class the stock model returns."""
        raise NotImplementedError

    def encode(self, model, fast, input_ids, attention_mask, global_attention_mask, layer_fn, **plan):
        """-> (encoder hidden [B, L, D], key validity [B, L]). `plan`: the host decisions (static_plan), if taken."""
        raise NotImplementedError

    def static_plan(self, input_ids, attention_mask, global_attention_mask) -> dict:
        """The host decisions of one forward, taken ahead so that a CUDA graph can fix them."""
        return {}
