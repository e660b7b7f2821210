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
    D, Le, _, Fe, _, _ = _dims(arch)
    per_layer = S * (8 * D * D + 4 * D * Fe)
    if family == "led":
        per_layer += S * 4 * D * D + n_global * 2 * D * D  # key_global, value_global (all), query_global (globals)
        window = arch["attention_window"]
        window = window if isinstance(window, int) else window[0]
        per_layer += 4 * D * led_pairs(S, window, n_global)
    else:
        per_layer += 4 * D * bigbird_pairs(S, arch["block_size"], arch["num_random_blocks"])
    return Le * per_layer


def train_flops(arch, family, S, T, n_global=1):
    """Forward + backward FLOPs of one training sample: S input tokens, T target tokens."""
    D, _, Ld, _, Fd, V = _dims(arch)
    dec = Ld * (T * (8 * D * D + 4 * D * D + 4 * D * Fd) + S * 4 * D * D + 4 * D * (T * (T + 1) // 2 + T * S))
    return 3 * (encoder_flops(arch, family, S, n_global) + dec + 2 * T * D * V)


def generate_flops(arch, family, S, new_tokens, n_global=1):
    """FLOPs of greedy generation for one sample: encoder, cross keys/values once, one decoder pass per token."""
    D, _, Ld, _, Fd, V = _dims(arch)
    total = encoder_flops(arch, family, S, n_global) + Ld * S * 4 * D * D
    for t in range(new_tokens):
        total += Ld * (12 * D * D + 4 * D * Fd + 4 * D * (t + 1) + 4 * D * S) + 2 * D * V
    return total
