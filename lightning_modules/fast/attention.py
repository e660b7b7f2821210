"""Sparse self-attention core: one token-level pattern, executed by flex_attention on GPU or densely on CPU.

A `Pattern` is a flex-style `mask_mod(b, h, q, kv) -> bool` over q_len queries and kv_len keys, plus
tile-level `partial`/`full` maps that say which TILE x TILE blocks can be skipped. The same mask_mod is
evaluated densely (broadcast index tensors) for the CPU path, so both executions compute one function. The
tensors the mask reads are padded to whole tiles (never the activations: dropout must see HF's shapes).
Rows of padded queries are the caller's business: it multiplies them by zero, as HF does.
"""

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

TILE = 128  # flex's default sparse block: every kernel config works with it on H100, fp32 and bf16, fwd and bwd

# "auto": flex on CUDA, dense elsewhere (flex has no CPU backward). Tests set "flex" to run eager flex on CPU.
BACKEND = "auto"

# Forward tiles of the flex kernel on CUDA. Its default on the H100 (torch 2.11: 128 x 128) runs these masked
# patterns at 24 TFLOP/s (LED, 4096 tokens) and 3 TFLOP/s (BigBird); 64 x 64 runs the same forward 8.9x and 13x
# faster (benchmarks/flex_probe.py, BENCHMARKS.md). The fwd_ prefix keeps them out of the backward kernel, which
# keeps flex's defaults: unprefixed, they also reached the backward and slowed BigBird's by 35% (flex_probe --bwd;
# no backward tiles tried beat the defaults).
FWD_KERNEL_OPTIONS = {"fwd_BLOCK_M": 64, "fwd_BLOCK_N": 64}

# Sparse blocks of a forward-only call (no autograd: generation's encoder, validation), for patterns that give
# maps at this granularity (BigBird's 64-token blocks). At 128, half of each partial BigBird tile is skipped work;
# at 64 every listed tile is full, and flex's forward over the BigBird-large pattern took 0.13-0.14 ms instead of
# 0.50 (H200, benchmarks/flex_probe.py --sparse64). Not for training: flex's backward has no kernel for 64-token
# sparse blocks (torch 2.11: NoValidChoicesError for every tile tried). None: one granularity (TILE) for all.
INFER_TILE = 64

_compiled_flex = None


def compiled_flex():
    # flex_attention is only a fused kernel when compiled; eager flex materialises every score.
    global _compiled_flex
    if _compiled_flex is None:
        # one graph per (shape, dtype, grad mode): more than dynamo's default 8 in a benchmark or a
        # train+validate loop, and past the limit dynamo falls back to eager flex (all scores in memory)
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def _backend(t):
    return BACKEND if BACKEND != "auto" else ("flex" if t.is_cuda else "dense")


def _ordered(blocks):
    """Dense [B,H,n,m] bool -> (counts int32 [B,H,n], indices int32 [B,H,n,m]), listed blocks first.
    Contiguous: flex's Triton kernels index these with row-major offsets, whatever their strides say (argsort
    of a transposed map keeps the transposed strides: that silently scrambled the backward's q-tile lists)."""
    counts = blocks.sum(-1, dtype=torch.int32).contiguous()
    indices = torch.argsort(blocks.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
    return counts, indices.contiguous()


class Pattern:
    def __init__(self, mask_mod, q_valid, partial, full, q_len, kv_len, n_heads=1, fine=None):
        self.mask_mod = mask_mod  # flex signature; must already exclude padded keys
        self.q_valid = q_valid[:, :q_len]  # bool [B, q_len]
        self.partial = partial  # bool [B, H|1, nq, nk]: the tile may hold an allowed pair
        self.full = full  # bool [B, H|1, nq, nk]: every pair in the tile is allowed (subset of partial)
        self.q_len, self.kv_len = q_len, kv_len
        self.n_heads = n_heads  # 1 when the pattern is the same for every head
        # (tile, partial, full) at a finer granularity for forward-only calls (INFER_TILE), or None
        self.fine = fine
        self._block_masks = {}
        if _backend(q_valid) == "flex":  # build eagerly: never inside a compiled region
            self.block_mask()
            if fine is not None:
                self.block_mask(fine[0])

    def maps(self, tile=None):
        """(tile, partial, full) at TILE (None) or at the finer tile this pattern was given."""
        if tile is None or tile == TILE:
            return TILE, self.partial, self.full
        if self.fine is None or self.fine[0] != tile:
            raise ValueError(f"this pattern has no {tile}-token tile maps")
        return self.fine

    def block_mask(self, tile=None):
        tile, partial, full = self.maps(tile)
        if tile not in self._block_masks:
            # both orderings from the dense tile maps: BlockMask.from_kv_blocks would transpose through
            # vmap, milliseconds of host time per mask
            partial_only = partial & ~full
            kv_num, kv_idx = _ordered(partial_only)
            full_kv_num, full_kv_idx = _ordered(full)
            q_num, q_idx = _ordered(partial_only.transpose(-1, -2))
            full_q_num, full_q_idx = _ordered(full.transpose(-1, -2))
            try:
                bm = BlockMask(
                    seq_lengths=(self.q_len, self.kv_len), kv_num_blocks=kv_num, kv_indices=kv_idx,
                    full_kv_num_blocks=full_kv_num, full_kv_indices=full_kv_idx, q_num_blocks=q_num, q_indices=q_idx,
                    full_q_num_blocks=full_q_num, full_q_indices=full_q_idx, BLOCK_SIZE=(tile, tile),
                    mask_mod=self.mask_mod,
                )
            except TypeError:  # a torch whose constructor differs: let it transpose
                bm = BlockMask.from_kv_blocks(
                    kv_num, kv_idx, full_kv_num, full_kv_idx, BLOCK_SIZE=(tile, tile), mask_mod=self.mask_mod,
                    seq_lengths=(self.q_len, self.kv_len))
            self._block_masks[tile] = bm
        return self._block_masks[tile]

    def dense_allowed(self):
        """bool [B, H|1, q_len, kv_len]; a padded query row also gets its diagonal so that no row is empty."""
        B = self.q_valid.shape[0]
        dev = self.q_valid.device
        b = torch.arange(B, device=dev).view(B, 1, 1, 1)
        h = torch.arange(self.n_heads, device=dev).view(1, -1, 1, 1)
        q = torch.arange(self.q_len, device=dev).view(1, 1, -1, 1)
        kv = torch.arange(self.kv_len, device=dev).view(1, 1, 1, -1)
        allowed = self.mask_mod(b, h, q, kv)
        return allowed | (~self.q_valid.view(B, 1, -1, 1) & (q == kv))


def attend(q, k, v, pattern, scale):
    """q: [B, H, q_len, dh], k, v: [B, H, kv_len, dh] -> [B, H, q_len, dh] under `pattern`."""
    if _backend(q) == "flex":
        if q.is_cuda and not torch.compiler.is_compiling():
            fn = compiled_flex()
        else:
            fn = flex_attention  # inside an outer torch.compile, or eager CPU for tests
        opts = dict(kernel_options=FWD_KERNEL_OPTIONS) if q.is_cuda and FWD_KERNEL_OPTIONS else {}
        backward = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        tile = pattern.fine[0] if pattern.fine is not None and not backward else None
        return fn(q, k, v, block_mask=pattern.block_mask(tile), scale=scale, **opts)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=pattern.dense_allowed(), scale=scale)


# Whether q, k and v are copied into [B, H, L, dh] buffers before flex (True) or handed over as strided views of
# the fused projection's output (False: flex's kernels read the strides as they are, which saves three copies of
# the activations per layer and their backward: +1.2-1.4% samples/s on the H200 for all three models, one run
# each, benchmarks/NOTES_fast_path.md v6). bench_fast.py's `+copy` measures the copies.
QKV_COPY = False


def qkv_layout(q, k, v):
    """Views [B, H, L, dh] of the projection -> what attend() is given (QKV_COPY)."""
    if QKV_COPY:
        return q.contiguous(), k.contiguous(), v.contiguous()
    return q, k, v


def pad_to_tile(x):
    """[B, L] -> [B, ceil(L / TILE) * TILE], padded with zeros (= padded / not allowed)."""
    return F.pad(x, (0, (-x.shape[1]) % TILE))


def tile_any_all(x, tile):
    """Reduce the last two dims of bool x [..., n, m] (multiples of tile) to tile level: (any, all)."""
    *lead, n, m = x.shape
    y = x.reshape(*lead, n // tile, tile, m // tile, tile)
    return y.any(-1).any(-2), y.all(-1).all(-2)


def tiles_1d(x, tile):
    """bool [B, L] (L a multiple of tile) -> (any, all) per tile, [B, L // tile]."""
    y = x.reshape(x.shape[0], -1, tile)
    return y.any(-1), y.all(-1)
