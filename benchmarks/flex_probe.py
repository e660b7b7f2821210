#!/usr/bin/env python
"""Where the fast path's attention time goes: flex_attention forward and forward+backward alone, timed with CUDA
events, for the LED and BigBird patterns at 4096 tokens (the paper batch), against dense SDPA (flash) and against
the same pattern with flex's own mask builder (create_block_mask) and other kernel tile sizes.

The training profile (bench_fast.py profile cells) showed the flex forward kernel taking ~3x its backward,
where a backward does ~2.5x the forward's arithmetic; this isolates the kernels to see which one is off.
Prints one line per variant: ms per call and TFLOP/s over the attended (useful) pairs.
  python benchmarks/flex_probe.py [--reps 10] [--out results.jsonl]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.fast import attention as A  # noqa: E402
from lightning_modules.fast.bigbird import bigbird_pattern, layer_blocks  # noqa: E402
from lightning_modules.fast.led import led_pattern  # noqa: E402


def cuda_ms(fn, reps, warm=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / reps


def probe(name, q, k, v, attend_fn, pairs, reps, out):
    """attend_fn(q, k, v) -> o; times forward alone (no grad) and forward+backward."""
    rec = dict(variant=name, B=q.shape[0], H=q.shape[1], S=q.shape[2], dh=q.shape[3], pairs_per_head=pairs)
    flop_f = 4 * q.shape[0] * q.shape[1] * pairs * q.shape[3]  # QK^T and PV over the attended pairs
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            rec["fwd_ms"] = cuda_ms(lambda: attend_fn(q, k, v), reps)
        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
        go = torch.randn_like(q)

        def fb():
            attend_fn(qg, kg, vg).backward(go)

        rec["fwd_bwd_ms"] = cuda_ms(fb, reps)
        rec["bwd_ms"] = rec["fwd_bwd_ms"] - rec["fwd_ms"]
        rec["fwd_tflops"] = flop_f / rec["fwd_ms"] / 1e9
        rec["bwd_tflops"] = 2.5 * flop_f / rec["bwd_ms"] / 1e9  # dQ, dK, dV, and the recomputed scores
        rec["wall_incl_compile_s"] = time.perf_counter() - t0
    except Exception as e:  # a variant that does not compile is a result too
        rec["error"] = repr(e)[:200]
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()}), flush=True)
    out.write(json.dumps(rec) + "\n")
    out.flush()


def led_case(dev, bf):
    """LED-base at 4096 tokens, paper batch 6: window 1024 (512 each side), first token global ->
    (q, k, v, pattern, attended pairs per head)."""
    B, H, S, dh, w = 6, 12, 4096, 64, 512
    q, k, v = (torch.randn(B, H, S, dh, **bf) for _ in range(3))
    kind = torch.ones(B, S, dtype=torch.int8, device=dev)
    kind[:, 0] = 2
    qi = torch.arange(S, device=dev)
    pairs = int((((qi[:, None] - qi[None]).abs() <= w) | (qi[None] == 0)).sum())
    return q, k, v, led_pattern(kind, w), pairs


def bigbird_case(dev, bf):
    """BigBird-Pegasus-large at 4096 tokens, paper batch 2, training-mode random blocks ->
    (q, k, v with the copies of repeated key blocks, pattern, attended pairs per head, HF's block tables)."""
    from transformers import BigBirdPegasusConfig
    from transformers.models.bigbird_pegasus.modeling_bigbird_pegasus import BigBirdPegasusBlockSparseAttention

    cfg = BigBirdPegasusConfig(d_model=1024, encoder_attention_heads=16, block_size=64, num_random_blocks=3,
                               max_position_embeddings=4096, attention_type="block_sparse")
    B, H, S, dh = 2, 16, 4096, 64
    blocks = layer_blocks(BigBirdPegasusBlockSparseAttention(cfg, seed=0).train(), S, dev)
    pat = bigbird_pattern(blocks, torch.ones(B, S, dtype=torch.bool, device=dev), 64)
    q = torch.randn(B, H, S, dh, **bf)
    k, v = (torch.randn(B, H, blocks["kv_len"], dh, **bf) for _ in range(2))
    pairs = int(blocks["allow"].sum().item()) * 64 * 64 // H
    return q, k, v, pat, pairs, blocks


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--out", default="flex_probe.jsonl")
    ap.add_argument("--only", default="led,bigbird")
    ap.add_argument("--bwd", action="store_true", help="backward tile variants only (forward tiles as attention.py)")
    ap.add_argument("--sparse64", action="store_true",
                    help="the patterns' block masks at 64-token granularity (attention.TILE=64) against 128, fwd+bwd")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cuda")
    torch._dynamo.config.cache_size_limit = 64
    flex = torch.compile(flex_attention, dynamic=False)
    out = open(args.out, "a")
    bf = dict(device=dev, dtype=torch.bfloat16)

    if args.bwd:
        return bwd_tiles(args, flex, out, bf, dev)
    if args.sparse64:
        return sparse64(args, flex, out, bf, dev)

    if "led" in args.only:
        q, k, v, pat, pairs = led_case(dev, bf)
        B, S = q.shape[0], q.shape[2]
        bm = pat.block_mask()
        probe("led sdpa dense (flash)", q, k, v, lambda q, k, v: F.scaled_dot_product_attention(q, k, v), S * S, args.reps, out)
        probe("led flex ours", q, k, v, lambda q, k, v: flex(q, k, v, block_mask=bm), pairs, args.reps, out)
        bm_flex = create_block_mask(pat.mask_mod, B, None, S, S, device=dev, BLOCK_SIZE=A.TILE)
        probe("led flex create_block_mask", q, k, v, lambda q, k, v: flex(q, k, v, block_mask=bm_flex), pairs, args.reps, out)
        print("ours vs create_block_mask: kv_num", bm.kv_num_blocks.sum().item(), bm_flex.kv_num_blocks.sum().item(),
              "full_kv_num", bm.full_kv_num_blocks.sum().item(), bm_flex.full_kv_num_blocks.sum().item(),
              "q_num", bm.q_num_blocks.sum().item(), bm_flex.q_num_blocks.sum().item(), flush=True)
        for ko in (dict(BLOCK_M=64, BLOCK_N=64), dict(BLOCK_M=128, BLOCK_N=128), dict(BLOCK_M=128, BLOCK_N=64, num_warps=8)):
            name = "led flex ours " + ",".join(f"{a}={b}" for a, b in ko.items())
            probe(name, q, k, v, lambda q, k, v, ko=ko: flex(q, k, v, block_mask=bm, kernel_options=ko), pairs, args.reps, out)
        dense = create_block_mask(lambda b, h, q, kv: q >= 0, None, None, S, S, device=dev, BLOCK_SIZE=A.TILE)
        probe("led flex dense (no mask)", q, k, v, lambda q, k, v: flex(q, k, v, block_mask=dense), S * S, args.reps, out)

    if "bigbird" in args.only:
        q, k, v, pat, pairs, blocks = bigbird_case(dev, bf)
        B, H, S = q.shape[:3]
        bm = pat.block_mask()
        probe("bigbird sdpa dense (flash)", q, q, q, lambda q, k, v: F.scaled_dot_product_attention(q, k, v), S * S, args.reps, out)
        probe("bigbird flex ours", q, k, v, lambda q, k, v: flex(q, k, v, block_mask=bm), pairs, args.reps, out)
        bm_flex = create_block_mask(pat.mask_mod, B, H, S, blocks["kv_len"], device=dev, BLOCK_SIZE=A.TILE)
        probe("bigbird flex create_block_mask", q, k, v, lambda q, k, v: flex(q, k, v, block_mask=bm_flex), pairs, args.reps, out)
        for ko in (dict(BLOCK_M=64, BLOCK_N=64), dict(BLOCK_M=128, BLOCK_N=128)):
            name = "bigbird flex ours " + ",".join(f"{a}={b}" for a, b in ko.items())
            probe(name, q, k, v, lambda q, k, v, ko=ko: flex(q, k, v, block_mask=bm, kernel_options=ko), pairs, args.reps, out)


# backward tiles: flex's kernel_options with a bwd_ prefix reach only the backward kernel (fwd_ only the forward)
BWD_VARIANTS = [
    # attention.py's options before the fwd_ prefix (named "as attention.py" in the 2026-11-24 results)
    ("unprefixed 64x64, both kernels", dict(BLOCK_M=64, BLOCK_N=64)),
    ("fwd 64x64 only", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64)),  # attention.FWD_KERNEL_OPTIONS now
    ("bwd 32/64/64/32", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=32, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64, bwd_BLOCK_N2=32)),
    ("bwd 64/64/64/64", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=64, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64, bwd_BLOCK_N2=64)),
    ("bwd 64/128/128/64", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=64, bwd_BLOCK_N1=128, bwd_BLOCK_M2=128, bwd_BLOCK_N2=64)),
    ("bwd 64/128/128/64 w8", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=64, bwd_BLOCK_N1=128, bwd_BLOCK_M2=128,
                                  bwd_BLOCK_N2=64, bwd_num_warps=8)),
    ("bwd 32/128/128/32", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=32, bwd_BLOCK_N1=128, bwd_BLOCK_M2=128, bwd_BLOCK_N2=32)),
]


def bwd_tiles(args, flex, out, bf, dev):
    cases = []
    if "led" in args.only:
        q, k, v, pat, pairs = led_case(dev, bf)
        cases.append(("led", q, k, v, pat.block_mask(), pairs))
    if "bigbird" in args.only:
        q, k, v, pat, pairs, _ = bigbird_case(dev, bf)
        cases.append(("bigbird", q, k, v, pat.block_mask(), pairs))
    for model, q, k, v, bm, pairs in cases:
        for name, ko in BWD_VARIANTS:
            probe(f"{model} {name}", q, k, v, lambda q, k, v, ko=ko, bm=bm: flex(q, k, v, block_mask=bm, kernel_options=ko),
                  pairs, args.reps, out)


# 64-token sparse blocks: LED's band edges and BigBird's 64-token blocks waste less of each tile than at 128 (v1:
# half of BigBird's partial tiles); a kernel tile must fit inside a sparse block, so the backward's tiles are <= 64
SPARSE64_VARIANTS = [
    ("bwd 64/64/64/64", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=64, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64, bwd_BLOCK_N2=64)),
    ("bwd 32/64/64/32", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=32, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64, bwd_BLOCK_N2=32)),
    ("bwd 64/64/64/64 w8", dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=64, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64,
                                bwd_BLOCK_N2=64, bwd_num_warps=8)),
]


def sparse64(args, flex, out, bf, dev):
    from lightning_modules.fast import bigbird as BB
    from lightning_modules.fast import led as LED

    def set_tile(t):
        A.TILE = LED.TILE = BB.TILE = t

    for model in [m for m in ("led", "bigbird") if m in args.only]:
        for tile in (128, 64):
            set_tile(tile)
            torch.manual_seed(0)
            case = led_case(dev, bf) if model == "led" else bigbird_case(dev, bf)[:5]
            q, k, v, pat, pairs = case
            bm = pat.block_mask()
            if tile == 128:  # the fast path as it runs (attention.FWD_KERNEL_OPTIONS, flex's backward defaults)
                probe(f"{model} sparse 128 (as attention.py)", q, k, v,
                      lambda q, k, v, bm=bm: flex(q, k, v, block_mask=bm, kernel_options=A.FWD_KERNEL_OPTIONS), pairs, args.reps, out)
                continue
            for name, ko in SPARSE64_VARIANTS:
                probe(f"{model} sparse 64 {name}", q, k, v, lambda q, k, v, ko=ko, bm=bm: flex(q, k, v, block_mask=bm, kernel_options=ko),
                      pairs, args.reps, out)
    set_tile(128)


if __name__ == "__main__":
    main()
