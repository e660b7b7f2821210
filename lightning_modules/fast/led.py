"""LED encoder (Longformer self-attention) on the sparse-attention core; same function as HF's LEDEncoder.

HF semantics reproduced (transformers/models/led/modeling_led.py):
- attention_mask * (global_attention_mask + 1): 0 = padded, 1 = local, 2 = global (a padded token is never global).
- A local query attends keys with |q - kv| <= attention_window // 2 plus every global key, all through the
  local query/key/value projections; padded keys are excluded; a padded query's output is zero.
- A global query attends every non-padded key through the separate query_global/key_global/value_global
  projections; its row overwrites the local result.
The global rows use (q Wk^T) . x instead of q . (W_k x): the same sums regrouped, so the key_global/value_global
projections of all L tokens (2 d^2 per token) shrink to G*H dot products per token.
"""

import math

import torch
import torch.nn.functional as F

from .attention import TILE, Pattern, attend, pad_to_tile, qkv_layout, tiles_1d
from .numerics import as_residual, residual_dtype
from .path import FastPath


def merge_masks(attention_mask, global_attention_mask, shape, device):
    am = attention_mask if attention_mask is not None else torch.ones(shape, dtype=torch.long, device=device)
    merged = am * (global_attention_mask + 1) if global_attention_mask is not None else am
    return merged > 0, merged > 1  # valid, global (as HF: merged 0 -> masked, 2 -> global)


def led_pattern(kind, w):
    """kind int8 [B, L] (0 pad, 1 local, 2 global); w = one-sided window."""
    L = kind.shape[1]
    kind = pad_to_tile(kind)
    nt = kind.shape[1] // TILE
    dev = kind.device

    def mask_mod(b, h, q, kv):
        kd = kind[b, kv]
        return (kd == 2) | ((kd == 1) & ((q - kv).abs() <= w))

    start = torch.arange(nt, device=dev) * TILE
    end = start + TILE - 1
    qs, qe, ks, ke = start[:, None], end[:, None], start[None, :], end[None, :]
    min_dist = (ks - qe).clamp(min=0) + (qs - ke).clamp(min=0)
    max_dist = torch.maximum(ke - qs, qe - ks)
    win_any, win_all = min_dist <= w, max_dist <= w  # [nt, nt]
    valid_any, valid_all = tiles_1d(kind > 0, TILE)
    glob_any, glob_all = tiles_1d(kind > 1, TILE)
    q_any = valid_any[:, :, None]
    partial = ((win_any[None] & valid_any[:, None, :]) | glob_any[:, None, :]) & q_any
    full = ((win_all[None] & valid_all[:, None, :]) | glob_all[:, None, :]) & q_any
    return Pattern(mask_mod, kind > 0, partial[:, None], full[:, None], L, L)


def global_rows(sa, x, a, gidx, gval, valid):
    """Overwrite the rows of global tokens in a [B, L, D] with HF's global attention output."""
    B, L, D = x.shape
    H, dh = sa.num_heads, sa.head_dim
    G = gidx.shape[1]
    idx = gidx[..., None].expand(B, G, D)
    qg = sa.query_global(x.gather(1, idx)) / math.sqrt(dh)  # HF divides, not multiplies
    qg = qg.view(B, G, H, dh)
    u = torch.einsum("bghe,hed->bghd", qg, sa.key_global.weight.view(H, dh, D))
    s = torch.einsum("bghd,bsd->bghs", u, x)
    if sa.key_global.bias is not None:
        s = s + torch.einsum("bghe,he->bgh", qg, sa.key_global.bias.view(H, dh))[..., None]
    s = s.masked_fill(~valid[:, None, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1, dtype=torch.float32)
    ctx = torch.einsum("bghs,bsd->bghd", p, x)
    out = torch.einsum("bghd,hed->bghe", ctx, sa.value_global.weight.view(H, dh, D))
    if sa.value_global.bias is not None:
        out = out + sa.value_global.bias.view(H, dh)
    out = out.reshape(B, G, D).to(a.dtype)
    # empty slots (rows with fewer global tokens) point at distinct local positions and write back their own value
    out = torch.where(gval[..., None], out, a.gather(1, idx))
    return a.scatter(1, idx, out)


def led_layer(layer, x, pattern, gidx, gval, valid, training, p_drop, p_act, res_dtype=None):
    sa = layer.self_attn.longformer_self_attn
    B, L, D = x.shape
    H, dh = sa.num_heads, sa.head_dim
    w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])
    b = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])
    q, k, v = F.linear(x, w, b).view(B, L, 3, H, dh).permute(2, 0, 3, 1, 4).unbind(0)
    q, k, v = qkv_layout(q, k, v)
    a = attend(q, k, v, pattern, 1.0 / math.sqrt(dh)).transpose(1, 2).reshape(B, L, D)
    if gidx is not None:
        a = global_rows(sa, x, a, gidx, gval, valid)
    a = a * valid[..., None].to(a.dtype)  # HF zeroes the attention probabilities of padded queries
    a = layer.self_attn.output(a)
    x = as_residual(layer.self_attn_layer_norm(x + F.dropout(a, p_drop, training)), res_dtype)
    h = F.dropout(layer.activation_fn(layer.fc1(x)), p_act, training)
    h = F.dropout(layer.fc2(h), p_drop, training)
    return as_residual(layer.final_layer_norm(x + h), res_dtype)


def led_encode(enc, input_ids, attention_mask, global_attention_mask, layer_fn=led_layer, n_glob=None, res_dtype=None):
    """-> (hidden [B, L0, D], valid [B, L0]) as LEDEncoder's last_hidden_state and the key mask.
    n_glob: slots for global tokens, at least the most any row has (None: counted here, a host sync); extra slots
    are inert, so a caller can fix it ahead (a CUDA graph needs its shapes before the data).
    res_dtype: the residual stream's dtype under autocast (numerics.py; None: autocast's fp32)."""
    cfg = enc.config
    B, L0 = input_ids.shape
    valid, glob = merge_masks(attention_mask, global_attention_mask, (B, L0), input_ids.device)
    x = enc.embed_tokens(input_ids) + enc.embed_positions.weight[:L0]
    res_dtype = residual_dtype(res_dtype, x)
    x = as_residual(enc.layernorm_embedding(x), res_dtype)
    x = F.dropout(x, cfg.dropout, enc.training)
    windows = cfg.attention_window if isinstance(cfg.attention_window, (list, tuple)) else [cfg.attention_window] * len(enc.layers)
    pad = (-L0) % max(windows)  # as HF: then the layers' dropout masks have HF's shapes and draws
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        valid, glob = F.pad(valid, (0, pad)), F.pad(glob, (0, pad))
    if n_glob is None:
        n_glob = int(glob.sum(1).max())  # one host sync per forward, as HF's is_global_attn.item()
    n_glob = min(n_glob, glob.shape[1])
    gidx = gval = None
    if n_glob:
        gidx = torch.argsort(glob.to(torch.int8), dim=1, descending=True, stable=True)[:, :n_glob]
        gval = glob.gather(1, gidx)
    kind = valid.to(torch.int8) + glob.to(torch.int8)
    patterns = {}
    for layer, window in zip(enc.layers, windows):
        if window not in patterns:
            patterns[window] = led_pattern(kind, window // 2)
        x = layer_fn(layer, x, patterns[window], gidx, gval, valid, enc.training, cfg.dropout, cfg.activation_dropout,
                     res_dtype=res_dtype)
    return x[:, :L0], valid[:, :L0]


class LEDFastPath(FastPath):
    encoder_layer = staticmethod(led_layer)
    takes_global_mask = True
    plan_floors = ("n_glob",)  # global slots beyond the rows' counts are inert (led_encode)

    def base(self, model):
        return model.led

    def output_cls(self):
        from transformers.models.led.modeling_led import LEDSeq2SeqLMOutput

        return LEDSeq2SeqLMOutput

    def encode(self, model, fast, input_ids, attention_mask, global_attention_mask, layer_fn, n_glob=None):
        return led_encode(model.led.encoder, input_ids, attention_mask, global_attention_mask, layer_fn, n_glob,
                          fast.residual_dtype)

    def static_plan(self, input_ids, attention_mask, global_attention_mask):
        from .step_graph import pow2

        glob = merge_masks(attention_mask, global_attention_mask, input_ids.shape, input_ids.device)[1]
        n = int(glob.sum(1).max())  # one host sync, as the eager path's (and HF's)
        return {"n_glob": pow2(n) if n else 0}


LED_FAST = LEDFastPath()
