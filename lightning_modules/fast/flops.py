"""Analytic model FLOPs per sample (multiply-add = 2 FLOPs), the same count for every implementation.

Counted: every matmul of the model as defined (projections, FFN, LM head) and attention over exactly the
(query, key) pairs the model attends (QK^T and PV: 4 * d_model FLOPs per pair, all heads). Not counted:
softmax, LayerNorm, GELU, dropout, embeddings, the loss, the optimizer, and any work an implementation
wastes on masked pairs or padding. LED's key_global/value_global projections are counted over all tokens, as
the model defines them, although the fast path regroups them into G*H dot products per token: this is the
model's count, not the path's. Training = 3 x forward (backward = 2 x forward).
All tokens are taken as non-padded (the benchmark feeds full-length inputs).
"""


def _dims(arch):
    return (arch["d_model"], arch["encoder_layers"], arch["decoder_layers"], arch["encoder_ffn_dim"],
            arch["decoder_ffn_dim"], arch["vocab_size"])


def led_pairs(S, window, n_global):
    """(query, key) pairs of Longformer attention, global tokens at positions 0..n_global-1."""
    w = window // 2
    pairs = 0
    for q in range(n_global, S):
        lo, hi = max(0, q - w), min(S - 1, q + w)
        pairs += hi - lo + 1 + min(n_global, lo)  # window plus the globals left of it
    return pairs + n_global * S


def bigbird_pairs(S, block, n_rand):
    """Distinct (query, key) pairs of block-sparse attention with distinct random blocks (training mode)."""
    nb = S // block
    if nb <= 5 + 2 * n_rand:  # HF uses full attention there
        return S * S
    rows = 2 * S * block  # the two global query blocks attend everything
    rows += 2 * block * (4 + n_rand) * block  # query blocks 1 and nb-2
    rows += (nb - 4) * block * (5 + n_rand) * block
    return rows


def encoder_flops(arch, family, S, n_global=1):
    """The encoder's forward FLOPs of one sample: the family's own count (lightning_modules/families)."""
    from lightning_modules import families

    return families.get(family).encoder_flops(arch, S, n_global=n_global)


def dense_encoder_flops(arch, S, attention_pairs):
    """BART-style encoder layers (q, k, v, o projections, a two-matrix FFN) over S tokens and the given pairs."""
    D, Le, _, Fe, _, _ = _dims(arch)
    return Le * (S * (8 * D * D + 4 * D * Fe) + 4 * D * attention_pairs)


def train_flops(arch, family, S, T, n_global=1):
    """Forward + backward FLOPs of one training sample: S input tokens, T target tokens."""
    from lightning_modules import families

    return families.get(family).train_flops(arch, S, T)


def generate_flops(arch, family, S, new_tokens, n_global=1):
    from lightning_modules import families

    return families.get(family).generate_flops(arch, S, new_tokens)


def seq2seq_train_flops(enc, S, T, D, Ld, Fd, V, A=None, ffn_mats=2):
    """Forward + backward FLOPs of one training sample given the encoder's forward FLOPs `enc`: a decoder of Ld
    layers (model width D, attention width A = heads x head dim, FFN width Fd with `ffn_mats` matrices: 2, or 3
    when gated), causal self-attention over T targets, cross-attention to S inputs, and the LM head."""
    A = D if A is None else A
    ffn = 2 * ffn_mats * D * Fd
    dec = Ld * (T * (8 * D * A + 4 * D * A + ffn) + S * 4 * D * A + 4 * A * (T * (T + 1) // 2 + T * S))
    return 3 * (enc + dec + 2 * T * D * V)


def seq2seq_generate_flops(enc, S, new_tokens, D, Ld, Fd, V, A=None, ffn_mats=2):
    """FLOPs of greedy generation for one sample: encoder, cross keys/values once, one decoder pass per token."""
    A = D if A is None else A
    ffn = 2 * ffn_mats * D * Fd
    total = enc + Ld * S * 4 * D * A
    for t in range(new_tokens):
        total += Ld * (12 * D * A + ffn + 4 * A * (t + 1) + 4 * A * S) + 2 * D * V
    return total


def decode_step_bytes(arch, B, S, new_tokens, dtype_bytes=2):
    """The fewest bytes one greedy decode step of the shared BART-style decoder must read, averaged over
    new_tokens steps: every layer's cross-attention keys and values of the B x S encoder outputs, the decoder's
    matmul weights (the cross key/value projections are not: they run once per call, on the encoder output),
    the LM head, and the self-attention cache written so far. Activations ([B, d_model] per step) are noise."""
    D, _, Ld, _, Fd, V = _dims(arch)
    cross_kv = Ld * 2 * B * S * D
    weights = Ld * (4 * D * D + 2 * D * D + 2 * D * Fd) + V * D
    self_cache = Ld * 2 * B * D * (new_tokens + 1) / 2
    return dtype_bytes * (cross_kv + weights + self_cache)
