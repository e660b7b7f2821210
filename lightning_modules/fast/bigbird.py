"""BigBird-Pegasus encoder (block-sparse attention) on the sparse-attention core; same function as HF's.

HF's bigbird_block_sparse_attention (transformers/models/bigbird_pegasus) gives query block i the key blocks
{0, last} (global), {i-1, i, i+1} (window) and `num_random_blocks` random blocks; query blocks 0 and last
attend to everything. Each listed key block enters the softmax once per listing, so a block listed twice
counts twice. That happens: in eval mode this transformers version sets every random block to block 0
(`_bigbird_block_rand_mask*` return zeros when not training), and in training at 1024 tokens a random block
can be the last (global) block. We append one copy of such a key block's keys and values per extra listing,
and let each query block see as many copies as HF lists it: the same softmax, with no score bias (a gathered
per-element bias made flex's kernel exceed shared memory on the H100). The random blocks come from HF's own
helpers with HF's seed (the layer index), so train-mode patterns are HF's exactly; they are fixed per layer
and length, and cached. Padded keys are excluded (HF adds -10000, which underflows to the same zero), padded
queries output zero.
Deviation: HF re-seeds numpy's global RNG on every training forward; we restore numpy's state afterwards.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers.utils import logging

from . import attention as A
from .attention import TILE, Pattern, attend, pad_to_tile, qkv_layout, tile_any_all, tiles_1d
from .numerics import as_residual, residual_dtype
from .path import FastPath

logger = logging.get_logger(__name__)


def hf_rand_attn(sa, seq_len):
    """The random key blocks HF draws for this layer: int [H, seq_len // block - 2, r] (the lines of
    BigBirdPegasusBlockSparseAttention.bigbird_block_sparse_attention that build `rand_attn`)."""
    bs, r, H = sa.block_size, sa.num_random_blocks, sa.num_attention_heads
    state = np.random.get_state()
    try:
        if sa.training:
            np.random.seed(sa.seed)
        if seq_len in [1024, 3072, 4096]:
            rand = [
                sa._bigbird_block_rand_mask(sa.max_seqlen, sa.max_seqlen, bs, bs, r, last_idx=1024)[: (seq_len // bs - 2)]
                for _ in range(H)
            ]
        else:
            plan_len, plan_r = sa._get_rand_attn_plan(seq_len, bs, r)
            rand = sa._bigbird_block_rand_mask_with_head(
                from_seq_length=seq_len, to_seq_length=seq_len, from_block_size=bs, to_block_size=bs,
                num_heads=H, plan_from_length=plan_len, plan_num_rand_blocks=plan_r,
            )
    finally:
        np.random.set_state(state)
    return np.stack(rand, axis=0)


def block_multiplicity(rand, nb):
    """How often key block k is listed for query block q, per head: int [H, nb, nb]."""
    H = rand.shape[0]
    M = np.zeros((H, nb, nb), dtype=np.int64)
    M[:, 0, :] = 1
    M[:, nb - 1, :] = 1
    for qb in range(1, nb - 1):
        if qb == 1:
            fixed = [0, 1, 2, nb - 1]
        elif qb == nb - 2:
            fixed = [0, nb - 3, nb - 2, nb - 1]
        else:
            fixed = [0, qb - 1, qb, qb + 1, nb - 1]
        M[:, qb, fixed] += 1
        for h in range(H):
            np.add.at(M[h, qb], rand[h, qb - 1], 1)
    return M


def layer_blocks(sa, seq_len, device):
    """Static per-layer tables: which (query block, key block) pairs are listed, with extra key slots for
    repeated listings; the token indices those slots copy; and the tile-level any/all of the table."""
    bs = sa.block_size
    nb = seq_len // bs
    M = block_multiplicity(hf_rand_attn(sa, seq_len), nb)
    extra = (M - 1).clip(min=0).max(axis=(0, 1))  # copies each key block needs beyond its own
    slots = [(k, j) for k in range(nb) for j in range(extra[k])]
    kv_len = seq_len + len(slots) * bs
    q_pad, kv_pad = seq_len + (-seq_len) % TILE, kv_len + (-kv_len) % TILE
    allow = np.zeros((M.shape[0], -(-q_pad // bs), -(-kv_pad // bs)), dtype=bool)  # padded blocks: never
    allow[:, :nb, :nb] = M > 0
    for s, (k, j) in enumerate(slots):
        allow[:, :nb, nb + s] = M[:, :, k] - 1 > j
    copy_idx = None
    if slots:
        copy_idx = torch.tensor([t for k, _ in slots for t in range(k * bs, (k + 1) * bs)], device=device)
    allow = torch.from_numpy(allow).to(device)

    def tile_maps(tile):
        g = math.gcd(bs, tile)
        fine = allow.repeat_interleave(bs // g, 1).repeat_interleave(bs // g, 2)[:, : q_pad // g, : kv_pad // g]
        return tile_any_all(fine, tile // g)

    m_any, m_all = tile_maps(TILE)
    out = dict(allow=allow, copy_idx=copy_idx, kv_len=kv_pad if slots else seq_len, m_any=m_any, m_all=m_all)
    t = A.INFER_TILE
    if t and t < TILE and TILE % t == 0:  # the forward-only maps (attention.INFER_TILE)
        out["fine"] = (t, *tile_maps(t))
    return out


def bigbird_pattern(blocks, valid, bs):
    allow, copy_idx = blocks["allow"], blocks["copy_idx"]
    L = valid.shape[1]
    keys = valid if copy_idx is None else torch.cat([valid, valid[:, copy_idx]], 1)
    keys, valid = pad_to_tile(keys), pad_to_tile(valid)

    def mask_mod(b, h, q, kv):
        return allow[h, q // bs, kv // bs] & keys[b, kv]

    def tile_maps(tile, m_any, m_all):
        k_any, k_all = tiles_1d(keys, tile)
        q_any = tiles_1d(valid, tile)[0][:, None, :, None]
        return m_any[None] & k_any[:, None, None, :] & q_any, m_all[None] & k_all[:, None, None, :] & q_any

    partial, full = tile_maps(TILE, blocks["m_any"], blocks["m_all"])
    fine = None
    if "fine" in blocks:
        t, m_any, m_all = blocks["fine"]
        fine = (t, *tile_maps(t, m_any, m_all))
    return Pattern(mask_mod, valid, partial, full, L, blocks["kv_len"], n_heads=allow.shape[0], fine=fine)


def bigbird_layer(layer, x, pattern, copy_idx, valid, training, p_drop, p_act, res_dtype=None):
    # pre-LN: the residual stream keeps the dtype of the embeddings it starts from (bigbird_encode casts them)
    sa = layer.self_attn.self
    B, L, D = x.shape
    H = sa.num_attention_heads
    dh = sa.attention_head_size
    h = layer.self_attn_layer_norm(x)
    w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])
    b = None if sa.query.bias is None else torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])
    q, k, v = F.linear(h, w, b).view(B, L, 3, H, dh).permute(2, 0, 3, 1, 4).unbind(0)
    q, k, v = qkv_layout(q, k, v)
    if pattern is not None:
        if copy_idx is not None:  # repeated listings: extra copies of those key blocks, then masked keys to a tile
            pad = (0, 0, 0, pattern.kv_len - L - copy_idx.numel())
            k = F.pad(torch.cat([k, k.index_select(2, copy_idx)], 2), pad)
            v = F.pad(torch.cat([v, v.index_select(2, copy_idx)], 2), pad)
        a = attend(q, k, v, pattern, 1.0 / math.sqrt(dh)).transpose(1, 2).reshape(B, L, D)
        a = a * valid[..., None].to(a.dtype)  # HF multiplies the context by from_mask
    else:  # original_full: plain attention over non-padded keys, padded queries not zeroed (as HF)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :], scale=1.0 / math.sqrt(dh))
        a = a.transpose(1, 2).reshape(B, L, D)
    x = x + F.dropout(layer.self_attn.output(a), p_drop, training)
    h = F.dropout(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))), p_act, training)
    return x + F.dropout(layer.fc2(h), p_drop, training)


def bigbird_encode(enc, input_ids, attention_mask, cache, layer_fn=bigbird_layer, all_valid=None, res_dtype=None):
    """-> (hidden [B, L0, D], valid [B, L0]) as BigBirdPegasusEncoder's last_hidden_state and the key mask.
    all_valid: whether no input token is padding (None: checked here, a host sync)."""
    cfg = enc.config
    B, L0 = input_ids.shape
    x = enc.embed_tokens(input_ids) + enc.embed_positions.weight[:L0]
    x = as_residual(x, residual_dtype(res_dtype, x))
    x = F.dropout(x, cfg.dropout, enc.training)
    valid = attention_mask.bool() if attention_mask is not None else torch.ones(B, L0, dtype=torch.bool, device=x.device)
    bs = cfg.block_size
    if enc.attention_type == "block_sparse" and L0 <= (5 + 2 * cfg.num_random_blocks) * bs:
        logger.warning(f"block_sparse needs more than {(5 + 2 * cfg.num_random_blocks) * bs} tokens, got {L0}: "
                       "switching to original_full, as HF does (and it stays so)")
        enc.set_attention_type("original_full")
    args = (enc.training, cfg.dropout, cfg.activation_dropout)
    if enc.attention_type == "original_full":
        for layer in enc.layers:
            x = layer_fn(layer, x, None, None, valid, *args)
        return enc.layernorm_embedding(x), valid
    Lb = L0 + (-L0) % bs  # as HF: its random plan depends on this length, its dropout on these shapes
    if Lb != L0:
        x = F.pad(x, (0, 0, 0, Lb - L0))
        valid = F.pad(valid, (0, Lb - L0))
    # unpadded batches (long documents cut to length) reuse their masks: 16 layers' masks cost ms of host time
    if all_valid is None:
        all_valid = bool(valid.all())
    patterns = []  # all layers' masks first: no mask building between layers' kernels
    for i, layer in enumerate(enc.layers):
        sa = layer.self_attn.self
        key = (i, Lb, sa.training, str(x.device))
        if key not in cache:
            cache[key] = layer_blocks(sa, Lb, x.device)
        if all_valid:
            if key + (B,) not in cache:
                cache[key + (B,)] = bigbird_pattern(cache[key], valid, bs)
            pattern = cache[key + (B,)]
        else:
            pattern = bigbird_pattern(cache[key], valid, bs)
        patterns.append((pattern, cache[key]["copy_idx"]))
    for layer, (pattern, copy_idx) in zip(enc.layers, patterns):
        x = layer_fn(layer, x, pattern, copy_idx, valid, *args)
    return enc.layernorm_embedding(x)[:, :L0], valid[:, :L0]


class BigBirdFastPath(FastPath):
    encoder_layer = staticmethod(bigbird_layer)
    pre_ln = True
    uses_cache = True

    def base(self, model):
        return model.model

    def output_cls(self):
        from transformers.modeling_outputs import Seq2SeqLMOutput

        return Seq2SeqLMOutput

    def encode(self, model, fast, input_ids, attention_mask, global_attention_mask, layer_fn, all_valid=None):
        return bigbird_encode(model.model.encoder, input_ids, attention_mask, fast.enc_cache, layer_fn, all_valid,
                              fast.residual_dtype)

    def static_plan(self, input_ids, attention_mask, global_attention_mask):
        return {"all_valid": attention_mask is None or bool(attention_mask.all())}


BIGBIRD_FAST = BigBirdFastPath()
