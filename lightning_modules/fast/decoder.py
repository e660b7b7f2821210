"""Teacher-forced decoder on SDPA, for LED (post-LN, BART style) and BigBird-Pegasus (pre-LN, final LayerNorm).

Same function as HF's LEDDecoder / BigBirdPegasusDecoder with decoder_attention_mask=None (causal only):
self-attention is causal, cross-attention excludes padded encoder keys. The cross-attention keys and values of
all layers come from one matmul over the encoder output (their weights concatenated).
"""

import math

import torch
import torch.nn.functional as F

from .numerics import as_residual, residual_dtype


def cross_kv(dec, enc):
    """Encoder output [B, S, D] -> keys/values of every decoder layer: [n_layers, 2, B, H, S, dh]."""
    B, S, D = enc.shape
    layers = dec.layers
    H = layers[0].encoder_attn.num_heads
    w = torch.cat([t for layer in layers for t in (layer.encoder_attn.k_proj.weight, layer.encoder_attn.v_proj.weight)])
    b = None
    if layers[0].encoder_attn.k_proj.bias is not None:
        b = torch.cat([t for layer in layers for t in (layer.encoder_attn.k_proj.bias, layer.encoder_attn.v_proj.bias)])
    kv = F.linear(enc, w, b)
    return kv.view(B, S, len(layers), 2, H, D // H).permute(2, 3, 0, 4, 1, 5)


def decoder_layer(layer, x, k_c, v_c, cross_mask, pre_ln, training, p_drop, p_act, res_dtype=None):
    B, T, D = x.shape
    sa, ca = layer.self_attn, layer.encoder_attn
    H, dh = sa.num_heads, sa.head_dim
    scale = 1.0 / math.sqrt(dh)

    def self_attn(h):
        w = torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight])
        b = None if sa.q_proj.bias is None else torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias])
        q, k, v = F.linear(h, w, b).view(B, T, 3, H, dh).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return sa.out_proj(o.transpose(1, 2).reshape(B, T, D))

    def cross_attn(h):
        q = ca.q_proj(h).view(B, T, H, dh).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k_c, v_c, attn_mask=cross_mask, scale=scale)
        return ca.out_proj(o.transpose(1, 2).reshape(B, T, D))

    def ffn(h):
        h = F.dropout(layer.activation_fn(layer.fc1(h)), p_act, training)
        return F.dropout(layer.fc2(h), p_drop, training)

    if pre_ln:
        x = x + F.dropout(self_attn(layer.self_attn_layer_norm(x)), p_drop, training)
        x = x + F.dropout(cross_attn(layer.encoder_attn_layer_norm(x)), p_drop, training)
        return x + ffn(layer.final_layer_norm(x))
    x = as_residual(layer.self_attn_layer_norm(x + F.dropout(self_attn(x), p_drop, training)), res_dtype)
    x = as_residual(layer.encoder_attn_layer_norm(x + F.dropout(cross_attn(x), p_drop, training)), res_dtype)
    return as_residual(layer.final_layer_norm(x + ffn(x)), res_dtype)


def decoder_forward(dec, dec_ids, enc, enc_valid, pre_ln, layer_fn=decoder_layer, res_dtype=None):
    cfg = dec.config
    T = dec_ids.shape[1]
    x = dec.embed_tokens(dec_ids) + dec.embed_positions.weight[:T]
    if not pre_ln:
        x = dec.layernorm_embedding(x)
    res_dtype = residual_dtype(res_dtype, x)
    x = as_residual(x, res_dtype)
    x = F.dropout(x, cfg.dropout, dec.training)
    # one unbind rather than kv[i, 0] per layer: each indexed slice's backward writes a zero-filled gradient of
    # the whole kv tensor and adds it up (2 x n_layers passes over every layer's keys and values: 10-16% of a
    # training step on the H100); unbind's backward is a single stack
    kv = cross_kv(dec, enc).flatten(0, 1).unbind(0)  # k_0, v_0, k_1, v_1, ...
    mask = enc_valid[:, None, None, :]
    for i, layer in enumerate(dec.layers):
        x = layer_fn(layer, x, kv[2 * i], kv[2 * i + 1], mask, pre_ln, dec.training, cfg.dropout,
                     cfg.activation_dropout, res_dtype=res_dtype)
    return dec.layernorm_embedding(x) if pre_ln else x
