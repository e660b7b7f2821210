#!/usr/bin/env python
"""Stock against the best implementation, per model family, at long inputs: training steps and generation.

    python benchmarks/bench_families.py --models led_base,longt5_base --lengths 4096,16384 --out benchmarks/results/<dir>
    python benchmarks/bench_families.py --tiny --device cpu --lengths 256 --out /tmp/b      (a CPU dry run)

Models are random-init from conf/model/<name>.yaml through their family module (lightning_modules/families), with
the project's tokenizer's ids; --tiny swaps each for its family's conf/model/*_tiny.yaml. Inputs are full length
(no padding), with the family's global attention (LED: the first token). Impls (bench_fast.py's names):
  stock32  HF modules in fp32 (the paper's setting)     stock16  HF modules under bf16 autocast
  best     the family's best: its fast path compiled with the training step as CUDA graphs (fastcg; generation
           fastc) where the family has one, else stock16 (LongT5: transformers runs its attention eagerly only)
Per cell: samples/s, model TFLOP/s from the family's analytic FLOP count (the same for every impl), J/sample from
the NVML energy counter over the timed steps (null without NVML), peak memory, and warm-up (compile, capture) time
and energy apart from the steady rate. Each finished cell is appended to <out>/results.jsonl at once.
"""

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_fast import (  # noqa: E402
    Energy, autocast_ctx, cleanup, guarded, n_timed, set_impl, sync, timed, training_step,
)
from lightning_modules.fast import greedy_generate, release_train_graphs  # noqa: E402


def load_spec(name, tiny=False):
    """The model's ModelSpec (random weights, stock modules); --tiny: its family's tiny config instead."""
    from omegaconf import OmegaConf

    from study.run import build

    if tiny:
        family = yaml.safe_load(open(ROOT / "conf" / "model" / f"{name}.yaml"))["family"]
        tinies = [p for p in sorted((ROOT / "conf" / "model").glob("*_tiny.yaml")) if yaml.safe_load(open(p))["family"] == family]
        if not tinies:
            raise SystemExit(f"--tiny: family {family} has no conf/model/*_tiny.yaml")
        name = tinies[0].stem
    cfg = OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml")
    cfg.pretrained, cfg.attn_impl, cfg.compile, cfg.cuda_graph = False, "hf", False, False
    return build(cfg)


def resolve_impl(fam, impl, mode, best=("fastcg", "fastc")):
    """bench_fast's impl name for this family and mode; None where the family lacks it."""
    if impl == "best":
        if fam.fast_path() is None:
            return "stock16"
        return best[0] if mode == "train" else best[1]
    if not impl.startswith("stock") and fam.fast_path() is None:
        return None
    return impl


def make_batch(fam, vocab, B, S, T, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    if T and fam.kind == "causal":  # a decoder-only LM trains on S input then T answer tokens as one sequence
        ids = torch.randint(4, vocab, (B, S + T), generator=g)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids.clone())
        kw["labels"][:, :S] = -100  # the loss on the answer only (data/causal.py)
        return {k: v.to(device) for k, v in kw.items()}
    ids = torch.randint(4, vocab, (B, S), generator=g)
    kw = dict(input_ids=ids, attention_mask=torch.ones(B, S, dtype=torch.long), **fam.global_inputs(ids))
    if T:
        kw["labels"] = torch.randint(4, vocab, (B, T), generator=g)
    return {k: v.to(device) for k, v in kw.items()}


def cell(model, fam, vocab, mode, impl, B, S, args, device, energy):
    data = make_batch(fam, vocab, B, S, args.target_len if mode == "train" else 0, device)
    set_impl(model, impl)
    ctx = autocast_ctx(impl, device)
    opt = None
    if mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001,
                                fused=device.type == "cuda")
        fn, reps, grad = training_step(model, data, ctx, opt), args.steps, torch.enable_grad()
    else:
        model.eval()
        new = args.gen_tokens
        if impl.startswith("stock"):
            fn = lambda: model.generate(**data, max_new_tokens=new, min_new_tokens=new, num_beams=1, do_sample=False)  # noqa: E731
        else:
            fn = lambda: greedy_generate(model, data["input_ids"], data["attention_mask"], data.get("global_attention_mask"),  # noqa: E731
                                         max_new_tokens=new, min_new_tokens=new, fixed_length=True)
        reps, grad = args.gen_reps, torch.no_grad()
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with grad, (ctx if mode == "gen" else nullcontext()):  # a training step applies its autocast itself
            tw, ew, _ = timed(fn, args.warmup, device, energy)  # compile, capture, lazy inits: a one-time cost
            n = n_timed(timed(fn, 1, device, energy)[0], reps, args.min_time)
            t, e, _ = timed(fn, n, device, energy)
        rec = dict(status="ok", time_s=t, energy_j=e, warmup_s=tw, warmup_j=ew, steps=n)
        if device.type == "cuda":
            rec.update(peak_bytes=torch.cuda.max_memory_allocated(device), peak_reserved_bytes=torch.cuda.max_memory_reserved(device))
        return rec
    finally:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        release_train_graphs(model)
        sync(device)
        cleanup(device)


def derive(rec, fam, arch, args):
    if rec["status"] != "ok":
        return rec
    B, S, n = rec["batch"], rec["S"], rec["steps"]
    flops = (fam.train_flops(arch, S, args.target_len) if rec["mode"] == "train" else fam.generate_flops(arch, S, args.gen_tokens))
    rec.update(samples_per_s=B * n / rec["time_s"], model_flops_per_sample=flops,
               tflops=flops * B * n / rec["time_s"] / 1e12, flops_source=f"lightning_modules/families/{fam.name}.py (analytic)",
               j_per_sample=None if rec["energy_j"] is None else rec["energy_j"] / (B * n),
               energy_source="nvml total energy counter" if rec["energy_j"] is not None else None)
    if "peak_bytes" in rec:
        rec["peak_gib"] = rec["peak_bytes"] / 2**30
    return rec


def table(records):
    cols = ["model", "family", "mode", "S", "batch", "impl", "ran_as", "status", "samples_per_s", "tflops", "j_per_sample", "peak_gib", "warmup_s"]
    fmt = lambda v: "null" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in records]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="led_base,longt5_base")
    ap.add_argument("--lengths", default="4096,16384")
    ap.add_argument("--plan", default="train:stock32,train:best,gen:stock32,gen:best", help="mode:impl,...")
    ap.add_argument("--batch", type=int, default=1, help="training batch (per length: --batch-at 16384=1)")
    ap.add_argument("--batch-at", default="", help="S=B,... overrides of --batch")
    ap.add_argument("--gen-batch", type=int, default=4)
    ap.add_argument("--target-len", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gen-reps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=10.0, help="timed seconds at least (NVML's counter is coarse)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="each family's tiny config (CPU dry runs)")
    ap.add_argument("--best", default="fastcg,fastc", help="what `best` runs for a family with a fast path: train,gen "
                    "(CPU dry runs: fasteg,fast; torch.compile on a CPU takes minutes)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    energy = Energy(device)
    batch_at = {int(k): int(v) for k, v in (kv.split("=") for kv in args.batch_at.split(",") if kv)}
    plan = [tuple(p.split(":")) for p in args.plan.split(",")]
    records = []
    for name in args.models.split(","):
        spec = load_spec(name, args.tiny)
        fam = spec.fam
        torch.manual_seed(0)
        model, _ = spec.load(seed=0, device=device)
        arch = dict(spec.arch, vocab_size=model.config.vocab_size)
        for S in map(int, args.lengths.split(",")):
            spec.check_seq_len(S)
            spec.prepare_for_length(model, S)
            for mode, impl in plan:
                ran_as = resolve_impl(fam, impl, mode, tuple(args.best.split(",")))
                B = batch_at.get(S, args.batch) if mode == "train" else args.gen_batch
                rec = dict(model=name, config=spec.name, family=fam.name, mode=mode, S=S, batch=B, impl=impl, ran_as=ran_as,
                           device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
                if ran_as is None:
                    rec["status"] = f"n/a: family {fam.name} has no fast path"
                else:
                    rec.update(guarded(lambda model=model: cell(model, fam, arch["vocab_size"], mode, ran_as, B, S, args, device, energy), device))
                rec = derive(rec, fam, arch, args)
                records.append(rec)
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps({k: rec.get(k) for k in ("model", "mode", "S", "impl", "ran_as", "status", "samples_per_s", "tflops")}), flush=True)
        del model
        cleanup(device)
    (out / "table.md").write_text(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
