#!/usr/bin/env python
"""Where greedy generation's time goes, against its memory floor: the encoder pass, one captured decode step per
cross-attention implementation (generate.DECODE_ATTNS, eager or torch.compile'd step), and the cross-attention
kernel alone, for LED-base, LED-large and BigBird-large at batch 16, 4096 input tokens, 128 new tokens, bf16.

The floor of a decode step is the bytes it must read (lightning_modules/fast/flops.decode_step_bytes: every
layer's cross keys/values, the decoder weights, the LM head) over the read bandwidth measured here first.
Prints one line per variant and a table; every record goes to --out as JSON lines. Standalone (torch,
transformers, pyyaml), random-init models as in bench_fast.py.
  python benchmarks/decode_probe.py [--models led_base,led_large,bigbird_large] [--compiled flex,bmm]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fast import build, load_arch, make_batch  # noqa: E402
from flex_probe import cuda_ms  # noqa: E402

from lightning_modules.fast import apply_fast_path  # noqa: E402
from lightning_modules.fast import generate as G  # noqa: E402
from lightning_modules.fast.flops import decode_step_bytes  # noqa: E402


def events_ms(fn, reps, warm=2):
    if torch.cuda.is_available():
        return cuda_ms(fn, reps, warm)
    for _ in range(warm):  # CPU dry run of this script (--tiny)
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) * 1e3 / reps


def ceilings():
    """Read bandwidth (a sum over 4 GiB of bf16), copy bandwidth (read + write) and a bf16 matmul, on this card."""
    if not torch.cuda.is_available():
        return dict(read_gbs=1.0, copy_gbs=1.0, bf16_tflops=1.0)  # placeholders of the CPU dry run
    def bandwidths():
        x = torch.randn(2**31, dtype=torch.bfloat16, device="cuda")
        y = torch.empty_like(x)
        return (2**32 / events_ms(lambda: x.sum(dtype=torch.float32), 10) / 1e6,
                2 * 2**32 / events_ms(lambda: y.copy_(x), 10) / 1e6)

    read, copy = bandwidths()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    mm = 2 * 8192**3 / events_ms(lambda: a @ b, 10) / 1e9
    return dict(read_gbs=read, copy_gbs=copy, bf16_tflops=mm)


def decode_ms(model, enc, valid, attn, compile_step, B, S, new):
    """ms per decode step: 128 replays of the captured step from a fresh state (what greedy_generate replays)."""
    fast = model._fast
    s = G.generation_settings(model)
    cuda = enc.is_cuda
    with torch.no_grad():
        t0 = time.perf_counter()
        out = G._decode(model, fast, s, enc, valid, DTYPE, new, new, True, cuda, attn, compile_step)
        if cuda:
            torch.cuda.synchronize()
        first_s = time.perf_counter() - t0  # capture (and compile) included
        g = fast.gen_graph
        if cuda and (g is None or not fast.gen_graphed):
            return dict(status="not graphed", first_call_s=first_s)
        if not cuda:  # the dry run: eager steps on a state of our own
            W = G.DecoderWeights(model, fast.path, DTYPE)
            g = type("Eager", (), dict(W=W, st=G._new_state(W, B, S, new, s["eos"], enc.device)))()
            s = dict(s, max_new=new, min_new=new, attn=attn)
            g.graph = type("Step", (), dict(replay=staticmethod(lambda: G.decode_step(g.W, g.st, s))))()
            fast.gen_graph = g

        def run():
            G._load(g.W, g.st, enc, valid, s["start"])
            for _ in range(new):
                g.graph.replay()

        load = events_ms(lambda: G._load(g.W, g.st, enc, valid, s["start"]), 5)
        total = events_ms(run, 3, warm=1)
    return dict(status="ok", step_ms=(total - load) / new, load_ms=load, first_call_s=first_s, tokens=out[:, 1:9].tolist())


def attn_alone_ms(st, attn, B, H, S, dh, reps=50):
    """The cross-attention of one layer alone (eager call, no graph) on the state's first layer."""
    q = torch.randn(B, H, 1, dh, device=st.ckv.device, dtype=st.ckv.dtype)
    k, v = st.ckv[0, 0], st.ckv[0, 1]
    with torch.no_grad():
        ms = events_ms(lambda: G.cross_attention(q, k, v, st, attn, dh ** -0.5), reps)
    return ms, 2 * B * H * S * dh * 2 / (ms * 1e-3) / 1e9  # GB/s over K and V


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="led_base,led_large,bigbird_large")
    ap.add_argument("--attns", default="sdpa,flash,flex,bmm")
    ap.add_argument("--compiled", default="flex,bmm", help="attention variants also timed with compile_step=True")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/decode_probe.jsonl")
    ap.add_argument("--tiny", action="store_true", help="tiny architectures on the CPU (a dry run of this script)")
    args = ap.parse_args()
    global DTYPE
    dev = torch.device("cpu" if args.tiny else "cuda")
    DTYPE = torch.float32 if args.tiny else torch.bfloat16
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out = open(args.out, "a")

    def emit(rec):
        print(json.dumps(rec), flush=True)
        out.write(json.dumps(rec) + "\n")
        out.flush()

    ceil = ceilings()
    emit(dict(kind="ceilings", device=torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
              torch=torch.__version__, **ceil))
    B, S, new = args.batch, args.length, args.new
    rows = []
    for name in args.models.split(","):
        family, arch = load_arch(name, args.tiny)
        torch.manual_seed(0)
        model = build(family, arch, dev).eval()
        apply_fast_path(model, compile=False)
        fast = model._fast
        floor_bytes = decode_step_bytes(arch, B, S, new)
        floor_ms = floor_bytes / (ceil["read_gbs"] * 1e6)
        for padded in (False, True):
            data = make_batch(family, arch, B, S, 0, dev, pad_tail=S // 2 if padded else 0)
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=not args.tiny):
                def encode():
                    return fast.path.encode(model, fast, data["input_ids"], data["attention_mask"],
                                            data.get("global_attention_mask"), fast.enc_layer)
                enc_ms = events_ms(encode, 3)
                enc, valid = encode()
            enc = enc.float()
            emit(dict(kind="encoder", model=name, padded=padded, B=B, S=S, encoder_ms=enc_ms))
            variants = [(a, False) for a in args.attns.split(",")]
            if not padded:
                variants += [(a, True) for a in args.compiled.split(",") if a]
            for attn, comp in variants:
                rec = dict(kind="decode", model=name, padded=padded, attn=attn, compile_step=comp, B=B, S=S, new=new,
                           floor_bytes_per_step=floor_bytes, floor_ms_per_step=floor_ms, encoder_ms=enc_ms)
                try:
                    rec.update(decode_ms(model, enc, valid, attn, comp, B, S, new))
                    if rec["status"] == "ok":
                        rec["pct_of_floor"] = 100 * floor_ms / rec["step_ms"]
                        rec["gen_samples_per_s"] = B / ((enc_ms + rec["load_ms"] + new * rec["step_ms"]) / 1e3)
                        st, H = fast.gen_graph.st, fast.gen_graph.W.H
                        rec["attn_alone_ms"], rec["attn_alone_gbs"] = attn_alone_ms(st, G.resolve_decode_attn(attn, dev, valid), B, H, S,
                                                                                   arch["d_model"] // H)
                except Exception as e:  # a variant that fails is a result too
                    rec.update(status=f"crash: {str(e).strip().splitlines()[0][:200]}")
                emit(rec)
                rows.append(rec)
                fast.gen_graph = None
                torch.cuda.empty_cache() if dev.type == "cuda" else None
        model = fast = None  # free the model before the next one is built
        torch.cuda.empty_cache() if dev.type == "cuda" else None
    print()
    print(f"ceilings: read {ceil['read_gbs']:.0f} GB/s, copy {ceil['copy_gbs']:.0f} GB/s (read + write), "
          f"bf16 matmul {ceil['bf16_tflops']:.0f} TFLOP/s")
    print("| model | padded | attn | step compiled | ms/step | floor ms/step | % of floor | attn alone ms (GB/s) | "
          "encoder ms | samples/s | first call s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("status") != "ok":
            print(f"| {r['model']} | {r['padded']} | {r['attn']} | {r['compile_step']} | {r['status']} |")
            continue
        print(f"| {r['model']} | {r['padded']} | {r['attn']} | {r['compile_step']} | {r['step_ms']:.3f} | "
              f"{r['floor_ms_per_step']:.3f} | {r['pct_of_floor']:.0f}% | {r['attn_alone_ms']:.3f} "
              f"({r['attn_alone_gbs']:.0f}) | {r['encoder_ms']:.1f} | {r['gen_samples_per_s']:.1f} | "
              f"{r['first_call_s']:.1f} |")


DTYPE = torch.bfloat16


if __name__ == "__main__":
    main()
