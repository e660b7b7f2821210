#!/usr/bin/env python
"""Stock HF (fp32, bf16 autocast) vs the fast path, side by side in one process: training steps and generation.

Standalone: needs torch, transformers, pyyaml (and nvidia-ml-py for energy). Models are random-init from
conf/model/<name>.yaml's `arch`. Inputs are full length (no padding), LED with the first token global.

  training:   fwd + bwd + AdamW step (paper hyper-parameters, fused AdamW on CUDA for every impl), target length
              --target-len; at the paper's Table-5 batch sizes ("paper") and at the largest batch found ("max":
              extrapolated from the paper-batch peak memory, then run, stepping down on OOM).
  generation: batch --gen-batch, --gen-tokens new tokens, greedy, fixed length (min_new_tokens = max_new_tokens).
  impls:      stock32 = HF eager fp32 (the paper's setting), stock16 = HF under bf16 autocast,
              fast = apply_fast_path(compile=False) under bf16 autocast (flex_attention is always compiled),
              fastc = apply_fast_path(compile=True): its encoder and decoder layers torch.compile'd too,
              fastg = apply_fast_path(compile="reduce-overhead"): compiled layers replayed as CUDA graphs,
              fastcg = apply_fast_path(compile=True, cuda_graph=True): each training step's forward and backward
                       replayed as two CUDA graphs (generation as fastc), fasteg = the same with eager layers.
  levers:     a fast impl's suffixes switch one lever each on (+) or off (-): +bf16 the residual stream in bf16,
              +copy q/k/v copied into contiguous buffers for flex, -fl the stock head and loss in the captured
              step, -t64 forward-only attention at 128-token sparse blocks (VARIANTS); e.g. fastcg+copy-fl-t64
              is the fast path as it was before issue 18's v6 levers.

Reported per cell: samples/s, model TFLOP/s (lightning_modules/fast/flops.py), J/sample from the NVML
total-energy counter over the timed steps, peak memory, warm-up (compile) time and energy separately.
--check first runs the same-function checks on the GPU (fp32 logits/grads vs stock, bf16, greedy tokens).
--plan orders the cells (mode:batch:impl), run for each length in --lengths; --budget-s stops starting cells.
Every finished cell is appended to <out>/results.jsonl at once, so a run cut short keeps what it measured.
"""

import argparse
import copy
import csv
import datetime
import gc
import json
import math
import platform
import re
import sys
import time
import traceback
import types
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_modules import families  # noqa: E402
from lightning_modules.fast import apply_fast_path, attention, greedy_generate, release_train_graphs  # noqa: E402
from lightning_modules.fast.flops import generate_flops, train_flops  # noqa: E402
from lightning_modules.fast.model import fast_forward  # noqa: E402

PAPER_BATCH = {  # Ang et al. 2022, Table 5 (summarization, one 48 GB GPU)
    "led_base": {1024: 24, 2048: 12, 3072: 8, 4096: 6},
    "led_large": {1024: 8, 2048: 4, 3072: 3, 4096: 2},
    "bigbird_large": {1024: 7, 2048: 4, 3072: 2, 4096: 2},
}
def paper_batch(name, S):
    """Table 5's batch; past 4096 tokens (not in the paper) the 4096 batch scaled down with the length, at least 1:
    the same memory budget per batch, so that stock and fast compare at equal batch there too."""
    table = PAPER_BATCH[name]
    return table[S] if S in table else max(1, table[4096] * 4096 // S)


TINY = dict(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128)


# ----------------------------------------------------------------------------------------------- setup
def load_arch(name, tiny=False):
    spec = yaml.safe_load(open(ROOT / "conf" / "model" / f"{name}.yaml"))
    family = spec["family"]  # the one spelling (lightning_modules/families)
    arch = dict(spec["arch"])
    if tiny:  # CPU dry runs of this script: a sliding window (LED) or sparse blocks (BigBird) scaled down
        arch.update(TINY)
        arch.update(attention_window=64) if "attention_window" in arch else arch.update(block_size=16, num_random_blocks=2)
    return family, arch


def build(family, arch, device):
    cfg_cls, cls = families.get(family).classes()
    with torch.device(device):
        return cls(cfg_cls(**arch))


def use_stock(model):
    model.__dict__.pop("forward", None)  # the class's forward again; the fast state stays attached


def use_fast(model, compile, cuda_graph=False):
    fast = getattr(model, "_fast", None)
    if fast is None or fast.compile != compile or fast.cuda_graph != cuda_graph:
        apply_fast_path(model, compile=compile, cuda_graph=cuda_graph)
    model.forward = types.MethodType(fast_forward, model)


def make_batch(family, arch, B, S, T, device, seed=0, pad_tail=0, n_global=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, arch["vocab_size"], (B, S), generator=g)
    am = torch.ones(B, S, dtype=torch.long)
    if pad_tail:
        am[-1, S - pad_tail:] = 0
    kw = dict(input_ids=ids, attention_mask=am)
    if "global_attention_mask" in families.get(family).global_inputs(ids):  # LED: n_global tokens, not just the first
        gm = torch.zeros(B, S, dtype=torch.long)
        gm[:, :n_global] = 1
        kw["global_attention_mask"] = gm
    if T:
        kw["labels"] = torch.randint(4, arch["vocab_size"], (B, T), generator=g)
    return {k: v.to(device) for k, v in kw.items()}


class Energy:
    """NVML total-energy counter (mJ since driver load); None where NVML is unavailable."""

    def __init__(self, device):
        self.h = None
        if device.type != "cuda":
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self.h = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self.nvml = pynvml
            self.read()
        except Exception as e:  # energy is reported as missing, timings still count
            print(f"[energy] NVML unavailable: {e}")
            self.h = None

    def read(self):
        return None if self.h is None else self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.h) / 1000.0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, n, device, energy):
    sync(device)
    e0, t0 = energy.read(), time.perf_counter()
    for _ in range(n):
        out = fn()
    sync(device)
    t, e1 = time.perf_counter() - t0, energy.read()
    return t, (None if e0 is None else e1 - e0), out


def graphs_compiled():
    """Graphs torch.compile has built in this process: a count that grows during timed steps means recompiles."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:
        return None


def cleanup(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def autocast_ctx(impl, device):
    return nullcontext() if impl == "stock32" else torch.autocast(device.type, dtype=torch.bfloat16)


FAST_IMPLS = {  # impl -> (compile, cuda_graph)
    "fast": (False, False), "fastc": (True, False), "fastg": ("reduce-overhead", False), "fastcg": (True, True),
    "fasteg": (False, True),
}


# variants of a fast impl, as suffixes (e.g. fastcg+bf16-copy): each is one lever of issue 18, measured on and off
VARIANTS = {
    "bf16": "the residual stream in bf16 (model.residual_dtype=bfloat16; changes the numerics)",
    "copy": "q, k, v copied into [B, H, L, dh] buffers before flex (attention.QKV_COPY; default off)",
    "fl": "the captured step's loss without fp32 logits (loss.py; default on)",
    "t64": "forward-only attention at 64-token sparse blocks where a pattern has them (attention.INFER_TILE; default on)",
}
DEFAULT_ON = {"fl", "t64"}


def parse_impl(impl):
    """'fastcg+bf16-copy' -> ('fastcg', {'bf16', 'fl'}): the base impl and the levers on."""
    m = re.fullmatch(r"([a-z0-9]+)((?:[+-][a-z0-9]+)*)", impl)
    if m is None:
        raise ValueError(f"impl {impl!r}: expected <base>[+lever|-lever ...]")
    base, on = m.group(1), set(DEFAULT_ON)
    for sign, lever in re.findall(r"([+-])([a-z0-9]+)", m.group(2)):
        if lever not in VARIANTS or base.startswith("stock"):
            raise ValueError(f"impl {impl!r}: lever {lever!r} is not one of {', '.join(VARIANTS)} (fast impls only)")
        (on.add if sign == "+" else on.discard)(lever)
    if base not in FAST_IMPLS and base not in ("stock32", "stock16"):
        raise ValueError(f"impl {impl!r}: {base!r} is not one of stock32, stock16, {', '.join(FAST_IMPLS)}")
    return base, on


def set_impl(model, impl):
    base, on = parse_impl(impl)
    if base.startswith("stock"):
        return use_stock(model)
    use_fast(model, *FAST_IMPLS[base])
    model._fast.residual_dtype = torch.bfloat16 if "bf16" in on else None
    model._fast.fused_loss = "fl" in on
    attention.QKV_COPY = "copy" in on
    tile = 64 if "t64" in on else None
    if attention.INFER_TILE != tile:
        attention.INFER_TILE = tile
        model._fast.enc_cache.clear()  # BigBird's cached block tables carry (or lack) the 64-token maps


# ----------------------------------------------------------------------------------------------- cells
def n_timed(t_one, steps, min_time):
    """Enough repetitions for min_time seconds: the NVML energy counter is coarse over short windows."""
    return max(steps, math.ceil(min_time / max(t_one, 1e-6)))


def training_step(model, data, ctx, opt):
    """One forward, backward and optimizer step on fixed data, as a callable (timed and profiled alike)."""

    def step():
        with ctx:
            loss = model(**data).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def train_cell(model, family, arch, impl, B, S, T, steps, warmup, device, energy, min_time=0.0):
    set_impl(model, impl)
    model.train()
    data = make_batch(family, arch, B, S, T, device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001,
                            fused=device.type == "cuda")
    ctx = autocast_ctx(impl, device)

    step = training_step(model, data, ctx, opt)

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        # losses as floats at once: a replayed step's loss keeps its graph (and that graph's memory pool) alive
        # through its autograd node, which would leave this cell's pool reserved into the next cell's peak
        tw, ew, _ = timed(step, warmup, device, energy)
        _ = None
        n = n_timed(timed(step, 1, device, energy)[0], steps, min_time)
        g0 = graphs_compiled()
        t, e, loss = timed(step, n, device, energy)
        loss = float(loss)
        g1 = graphs_compiled()
        rec = dict(status="ok", time_s=t, energy_j=e, warmup_s=tw, warmup_j=ew, steps=n, loss=float(loss),
                   graphs_total=g1, recompiles_timed=(g1 - g0) if g0 is not None else None)
        if FAST_IMPLS.get(parse_impl(impl)[0], (None, False))[1]:
            rec["step_graphs"] = len(model._fast.train_graphs)
        if device.type == "cuda":
            # a replayed graph's activations live in its private pool, which allocated-bytes does not follow:
            # reserved bytes (pools included) are recorded for every cell
            rec.update(peak_bytes=torch.cuda.max_memory_allocated(device),
                       static_bytes=torch.cuda.memory_allocated(device),
                       peak_reserved_bytes=torch.cuda.max_memory_reserved(device))
        return rec
    finally:
        opt.zero_grad(set_to_none=True)
        del opt
        model.zero_grad(set_to_none=True)
        release_train_graphs(model)
        cleanup(device)


def gen_cell(model, family, arch, impl, B, S, new, reps, device, energy, min_time=0.0, eos_id=None):
    """Fixed length (every sequence decodes `new` tokens), or with eos_id: stop when every sequence has emitted
    it (HF's stopping; the fast path checks every generate.CHECK_EVERY steps)."""
    set_impl(model, impl)
    model.eval()
    data = make_batch(family, arch, B, S, 0, device)
    ctx = autocast_ctx(impl, device)
    min_new = new if eos_id is None else 0
    if impl.startswith("stock"):
        def fn():
            return model.generate(**data, max_new_tokens=new, min_new_tokens=min_new, num_beams=1, do_sample=False,
                                  **({} if eos_id is None else dict(eos_token_id=eos_id)))
    else:
        def fn():
            return greedy_generate(model, data["input_ids"], data["attention_mask"], data.get("global_attention_mask"),
                                   max_new_tokens=new, min_new_tokens=min_new, fixed_length=eos_id is None)
    gc_eos = model.generation_config.eos_token_id
    if eos_id is not None:
        model.generation_config.eos_token_id = eos_id  # greedy_generate reads it from there, as HF does
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad(), ctx:
            tw, ew, _ = timed(fn, 1, device, energy)
            n = n_timed(timed(fn, 1, device, energy)[0], reps, min_time)
            g0 = graphs_compiled()
            t, e, out = timed(fn, n, device, energy)
            g1 = graphs_compiled()
        if eos_id is None and tuple(out.shape) != (B, 1 + new):
            return dict(status=f"bad output shape {tuple(out.shape)}")
        rec = dict(status="ok", time_s=t, energy_j=e, warmup_s=tw, warmup_j=ew, steps=n, graphs_total=g1,
                   recompiles_timed=(g1 - g0) if g0 is not None else None, decoded_steps=out.shape[1] - 1)
        if eos_id is not None:
            is_eos = out[:, 1:] == eos_id
            first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], new, dtype=torch.long))
            rec.update(eos_id=eos_id, mean_tokens_to_eos=float(first.float().mean()), rows_finished=int(is_eos.any(1).sum()))
        fast = getattr(model, "_fast", None)
        if not impl.startswith("stock") and fast is not None:
            rec["decode_graphed"] = fast.gen_graphed
        if device.type == "cuda":
            rec.update(peak_bytes=torch.cuda.max_memory_allocated(device))
        return rec
    finally:
        model.generation_config.eos_token_id = gc_eos
        cleanup(device)


def choose_eos(model, family, arch, B, S, new, device):
    """An EOS id for the stopping cells of a random-init model, which has no EOS habits of its own: the token of
    its fast greedy output (pad and start tokens aside) that the most rows emit, among those the one whose median
    first emission is nearest new / 2, so that rows finish at different steps as a real model's do; rows that
    never emit it run to max_new_tokens, as a real model's unfinished rows do. The cells record what happened."""
    set_impl(model, "fastcg" if device.type == "cuda" else "fast")
    model.eval()
    data = make_batch(family, arch, B, S, 0, device)
    gc_eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None  # the model's unconstrained greedy tokens (its own EOS id included)
    try:
        with torch.no_grad(), autocast_ctx("fast", device):
            out = greedy_generate(model, data["input_ids"], data["attention_mask"], data.get("global_attention_mask"),
                                  max_new_tokens=new, fixed_length=True)[:, 1:].cpu()
    finally:
        model.generation_config.eos_token_id = gc_eos
    best = None
    skip = {model.generation_config.pad_token_id, model.generation_config.decoder_start_token_id}
    for tok in set(out.flatten().tolist()) - skip:
        hit = out == tok
        rows = int(hit.any(1).sum())
        first = torch.where(hit.any(1), hit.int().argmax(1) + 1, new).float()
        score = (-rows, abs(float(first.median()) - new / 2))  # most rows finishing, then a median mid-way
        if best is None or score < best[0]:
            best = (score, tok)
    return None if best is None else best[1]


def guarded(fn, device):
    try:
        return fn()
    except torch.OutOfMemoryError:
        cleanup(device)
        return dict(status="OOM")
    except Exception as e:  # e.g. stock BigBird under autocast; a compile failure is a result too
        traceback.print_exc()
        cleanup(device)
        msg = str(e).strip().splitlines()[0][:160]
        return dict(status=f"crash: {msg}")


def max_batch(paper_rec, B_paper, param_bytes, device, cap=None):
    """Largest batch the paper-batch run's memory extrapolates to (activations linear in batch)."""
    cap = cap or torch.cuda.get_device_properties(device).total_memory
    if paper_rec.get("step_graphs"):
        # a replay's activations live in the graph's pool, invisible to allocated bytes; the allocated peak is the
        # eager warm-up before the capture (params, grads, activations; no AdamW moments yet). Reserved bytes
        # (pools and cached blocks) overstate it 2x: from them the largest batch came out at half what fits.
        peak, fixed = paper_rec["peak_bytes"] + 2 * param_bytes, 4 * param_bytes
    else:
        peak, fixed = paper_rec["peak_bytes"], paper_rec["static_bytes"] + param_bytes  # + grads at the peak
    per_sample = max(1, (peak - fixed) / B_paper)
    # 0.85: on the H100 the extrapolation from 0.92 overshot (led_base fast 61 and led_large fast 24 ran out)
    return max(1, min(int((0.85 * cap - fixed) / per_sample), 64 * B_paper))


# ----------------------------------------------------------------------------------------------- checks
def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def check_model(name, family, arch, S, device, gen_tokens=24):
    """Same-function checks of the fast path against stock on this device (fp32, no TF32)."""
    res = []
    torch.manual_seed(0)
    stock = build(family, arch, device)
    fast = apply_fast_path(copy.deepcopy(stock))
    kw = make_batch(family, arch, 2, S, 64, device, seed=1, pad_tail=S // 3, n_global=3)
    kw["labels"][0, -10:] = -100
    modes = ["train", "eval"]
    for mode in modes:
        outs = []
        for m in (stock, fast):
            m.train(mode == "train")
            m.zero_grad(set_to_none=True)
            torch.manual_seed(7)  # same dropout masks: both draw them in the same order and shapes
            o = m(**kw)
            o.loss.backward()
            grads = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}
            outs.append((o.loss.detach(), o.logits.detach(), grads))
            m.zero_grad(set_to_none=True)
        (l0, z0, g0), (l1, z1, g1) = outs
        big = max(float(g.norm()) for g in g0.values())
        per = {n: rel(g1[n], g0[n]) for n in g0 if float(g0[n].norm()) > 1e-3 * big}
        worst = max(per, key=per.get)
        flat0 = torch.cat([g.flatten() for g in g0.values()])
        flat1 = torch.cat([g1[n].flatten() for n in g0])
        r = dict(model=name, check=f"fp32_{mode}", S=S, loss_stock=float(l0), loss_fast=float(l1),
                 logits_rel=rel(z1, z0), grads_rel=rel(flat1, flat0), worst_param_rel=per[worst], worst_param=worst,
                 same_param_set=set(g0) == set(g1))
        r["pass"] = bool(r["logits_rel"] <= 1e-4 and r["grads_rel"] <= 1e-4 and r["worst_param_rel"] <= 1e-4
                         and r["same_param_set"])
        res.append(r)
        del outs
    # bf16: fast under autocast vs stock fp32 logits; stock under autocast for scale (BigBird's crashes)
    stock.eval(), fast.eval()
    with torch.no_grad():
        ref = stock(**kw).logits
        with torch.autocast(device.type, dtype=torch.bfloat16):
            zf = fast(**kw).logits
            try:
                zs = rel(stock(**kw).logits, ref)
            except RuntimeError as e:
                zs = f"crash: {str(e).splitlines()[0][:100]}"
    r = dict(model=name, check="bf16_eval", S=S, fast_bf16_vs_stock_fp32=rel(zf, ref), stock_bf16_vs_stock_fp32=zs)
    r["pass"] = bool(r["fast_bf16_vs_stock_fp32"] <= 2e-2)
    res.append(r)
    # greedy tokens, fp32
    g = {k: v for k, v in kw.items() if k != "labels"}
    with torch.no_grad():
        a = stock.generate(**g, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens, num_beams=1, do_sample=False)
    b = greedy_generate(fast, g["input_ids"], g["attention_mask"], g.get("global_attention_mask"),
                        max_new_tokens=gen_tokens, min_new_tokens=gen_tokens)
    same = a.shape == b.shape and bool(torch.equal(a, b))
    r = dict(model=name, check="greedy_fp32", S=S, tokens=gen_tokens, identical=same,
             token_agreement=float((a == b).float().mean()) if a.shape == b.shape else 0.0, pass_=same)
    r["pass"] = r.pop("pass_")
    res.append(r)
    del stock, fast
    cleanup(device)
    if device.type == "cuda":
        res += check_step_graph(name, family, arch, S, device)
    return res


def check_step_graph(name, family, arch, S, device):
    """cuda_graph=True (compiled layers, as benchmarked) vs stock fp32 in training mode with dropout 0 (a replay's
    dropout draws differ from eager's): the capture step, a replay on other data, and two accumulated steps."""
    arch0 = dict(arch, dropout=0.0)
    torch.manual_seed(0)
    stock = build(family, arch0, device).train()
    graphed = apply_fast_path(copy.deepcopy(stock), compile=True, cuda_graph=True).train()
    batches = []
    for seed in (1, 2):
        kw = make_batch(family, arch0, 2, S, 64, device, seed=seed, pad_tail=S // 3 * seed, n_global=2 + seed)
        kw["labels"][0, -10:] = -100
        batches.append(kw)

    def grads(m, *kws):
        m.zero_grad(set_to_none=True)
        losses = []
        for kw in kws:
            loss = m(**kw).loss
            loss.backward()
            losses.append(float(loss))
        g = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}
        m.zero_grad(set_to_none=True)
        return losses, g

    res = []
    for what, kws in (("capture", batches[:1]), ("replay_new_data", batches[1:]), ("accumulate_2", batches)):
        l0, g0 = grads(stock, *kws)
        l1, g1 = grads(graphed, *kws)
        flat0 = torch.cat([g.flatten() for g in g0.values()])
        flat1 = torch.cat([g1[n].flatten() for n in g0]) if set(g0) <= set(g1) else flat0 * float("nan")
        r = dict(model=name, check=f"step_graph_fp32_{what}", S=S, loss_stock=l0, loss_fast=l1,
                 loss_rel=max(abs(a - b) / abs(b) for a, b in zip(l1, l0)), grads_rel=rel(flat1, flat0),
                 same_param_set=set(g0) == set(g1), graphs=len(graphed._fast.train_graphs))
        r["pass"] = bool(r["loss_rel"] <= 1e-4 and r["grads_rel"] <= 1e-4 and r["same_param_set"])
        res.append(r)
    del stock, graphed
    cleanup(device)
    return res


def profile_step(model, family, arch, impl, B, S, T, device):
    """One training step under torch.profiler: where the device time goes, and how much of the step is idle."""
    set_impl(model, impl)
    model.train()
    data = make_batch(family, arch, B, S, T, device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    ctx = autocast_ctx(impl, device)

    step = training_step(model, data, ctx, opt)

    for _ in range(2):
        step()
    sync(device)
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        step()
        sync(device)
        wall = time.perf_counter() - t0
    del opt
    model.zero_grad(set_to_none=True)
    release_train_graphs(model)
    cleanup(device)
    # device-side events only: inductor launches each Triton kernel inside a CPU-side event of the same name,
    # and key_averages() merges the two, counting those kernels twice (busy time came out above wall time)
    kernels = {}
    for e in prof.events():
        # "Optimizer.step#AdamW.step"-style names are annotations spanning kernels, not kernels
        if e.device_type == torch.autograd.DeviceType.CUDA and e.name and not e.name.startswith("cuda") and "#" not in e.name:
            kernels[e.name] = kernels.get(e.name, 0) + e.time_range.elapsed_us() / 1e6
    total = sum(kernels.values())

    def kind(name):
        n = name.lower()
        if "flex" in n:
            return "flex attention " + ("bwd" if "backward" in n else "fwd")
        if any(k in n for k in ("gemm", "sm90", "cutlass", "nvjet", "cublas", "gemv", "xmma")):
            return "matmul"
        if "fmha" in n or "flash" in n or "attention" in n:
            return "sdpa (decoder)"
        if "adam" in n:
            return "optimizer"
        # inductor names a fused kernel after the ops it fused: the first match names the bucket
        for key, bucket in (("log_softmax", "loss (log-softmax, nll)"), ("nll", "loss (log-softmax, nll)"),
                            ("layer_norm", "layernorm (+ fused residual/dropout)"), ("rand", "dropout masks"),
                            ("gelu", "gelu"), ("reduce", "reductions"), ("copy", "copies/casts"), ("fill", "fills"),
                            ("cat", "concatenations"), ("index", "gather/scatter"), ("scatter", "gather/scatter")):
            if key in n:
                return bucket
        return "elementwise/other"

    by_kind = {}
    for k, t in kernels.items():
        by_kind[kind(k)] = by_kind.get(kind(k), 0) + t
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:25]
    return dict(kind="profile", impl=impl, S=S, batch=B, wall_s=wall, device_busy_s=total,
                by_kind={k: round(v, 5) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                top_kernels=[(k[:90], round(t, 5)) for k, t in top])


# ----------------------------------------------------------------------------------------------- report
def derive(rec, arch, family, T, gen_tokens):
    if rec.get("status") != "ok":
        return rec
    n = rec["batch"] * rec["steps"]
    rec["samples_per_s"] = n / rec["time_s"]
    fl = (train_flops(arch, family, rec["S"], T) if rec["mode"] == "train" else
          generate_flops(arch, family, rec["S"], gen_tokens))
    rec["tflops"] = fl * rec["samples_per_s"] / 1e12
    rec["j_per_sample"] = None if rec.get("energy_j") is None else rec["energy_j"] / n
    if rec.get("peak_bytes") is not None:
        rec["peak_gib"] = rec["peak_bytes"] / 2**30
    if rec.get("peak_reserved_bytes") is not None:
        rec["peak_reserved_gib"] = rec["peak_reserved_bytes"] / 2**30
    return rec


def fmt(v, p=1):
    return "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))


def per_sample(r):
    """Peak memory over the batch (training: the allocated peak; a graphed step's pool is not in it, so its
    reserved peak, an upper bound, is used there)."""
    gib = r.get("peak_reserved_gib") if r.get("step_graphs") else r.get("peak_gib")
    return gib / r["batch"] if gib and r.get("batch") else None


def table(records):
    ok = {(r["model"], r["mode"], r["S"], r["batch_kind"], r["impl"]): r for r in records if "impl" in r}
    lines = ["| model | mode | S | batch | impl | samples/s | TFLOP/s | J/sample | peak GiB alloc / reserved | GiB/sample | warm-up s | x stock32 | x stock16 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "impl" not in r:
            continue
        def base(impl):
            return ok.get((r["model"], r["mode"], r["S"], r["batch_kind"], impl), {}).get("samples_per_s")
        sps = r.get("samples_per_s")
        x32 = sps / base("stock32") if sps and base("stock32") and r["impl"] != "stock32" else None
        x16 = sps / base("stock16") if sps and base("stock16") and r["impl"].startswith("fast") else None
        status = r["status"] if r["status"] != "ok" else None
        lines.append(f"| {r['model']} | {r['mode']} | {r['S']} | {r['batch']} ({r['batch_kind']}) | {r['impl']} | "
                     f"{status or fmt(sps, 2)} | {fmt(r.get('tflops'))} | {fmt(r.get('j_per_sample'), 2)} | "
                     f"{fmt(r.get('peak_gib'))} / {fmt(r.get('peak_reserved_gib'))} | {fmt(per_sample(r), 2)} | "
                     f"{fmt(r.get('warmup_s'))} | {fmt(x32)} | {fmt(x16)} |")
    return "\n".join(lines)


TARGETS = [  # issue 18: (model, mode, batch kind, S, minimum speed-up of the best fast impl over stock fp32)
    ("led_base", "gen", "fixed", 4096, 12), ("led_large", "gen", "fixed", 4096, 12),
    ("bigbird_large", "gen", "fixed", 4096, 10), ("led_base", "gen", "eos", 4096, None),
    ("led_large", "gen", "eos", 4096, None), ("bigbird_large", "gen", "eos", 4096, None),
    ("led_base", "train", "paper", 4096, None), ("led_large", "train", "paper", 4096, None),
    ("led_base", "train", "max", 4096, 20), ("led_large", "train", "max", 4096, 20),
    ("bigbird_large", "train", "paper", 4096, 12),
    ("led_base", "train", "paper", 16384, 15), ("led_base", "train", "max", 16384, 15),
    ("led_large", "train", "paper", 16384, 15), ("led_large", "train", "max", 16384, 15),
]


def targets(records):
    """One line per target: best fast impl vs stock32 speed and energy per sample (None: measured, no target)."""
    lines = ["targets (best fast impl / stock fp32, same process):"]
    for model, mode, kind, S, need in TARGETS:
        cell = {r["impl"]: r for r in records if (r["model"], r["mode"], r["S"], r["batch_kind"]) == (model, mode, S, kind)
                and r.get("samples_per_s")}
        fast = max((r for i, r in cell.items() if i.startswith("fast")), key=lambda r: r["samples_per_s"], default=None)
        base = cell.get("stock32")
        if fast is None or base is None:
            if any((r["model"], r["mode"], r["S"]) == (model, mode, S) for r in records):
                lines.append(f"  {model} {mode} {kind} {S}: not measured")
            continue
        x = fast["samples_per_s"] / base["samples_per_s"]
        xj = (base["j_per_sample"] / fast["j_per_sample"]) if fast.get("j_per_sample") and base.get("j_per_sample") else None
        verdict = "measured" if need is None else f"target {need}x: {'met' if x >= need else 'MISSED'}"
        lines.append(f"  {model} {mode} {kind} {S} (B {base['batch']} vs {fast['batch']}, {fast['impl']}): {x:.1f}x "
                     f"speed ({verdict}), energy/sample {fmt(xj)}x lower")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main
EOS_CHOICE = {}  # (model, S) -> the EOS id the stopping cells share (choose_eos)


def run_cell(model, name, family, arch, mode, kind, impl, S, param_bytes, records, args, device, energy, t_start):
    rec = dict(model=name, family=family, mode=mode, S=S, batch_kind=kind, impl=impl, batch=None)
    if time.perf_counter() - t_start > args.budget_s:
        rec.update(status="skipped (budget)")
    elif mode == "gen":
        rec["batch"] = args.gen_batch
        eos_id = None
        if kind == "eos":
            key = (name, S)
            if key not in EOS_CHOICE:
                EOS_CHOICE[key] = guarded(lambda: choose_eos(model, family, arch, args.gen_batch, S, args.gen_tokens,
                                                             device), device)
            eos_id = EOS_CHOICE[key]
        if kind == "eos" and not isinstance(eos_id, int):
            rec.update(status=f"no EOS id found ({eos_id})")
        else:
            rec.update(guarded(lambda: gen_cell(model, family, arch, impl, args.gen_batch, S, args.gen_tokens,
                                                args.gen_reps, device, energy, args.min_time, eos_id), device))
    elif kind == "paper" or kind.isdigit():  # the paper's batch, or a given one (levers compared at one batch)
        rec["batch"] = (paper_batch(name, S) if not args.tiny else 4) if kind == "paper" else int(kind)
        rec.update(guarded(lambda: train_cell(model, family, arch, impl, rec["batch"], S, args.target_len, args.steps,
                                              args.warmup, device, energy, args.min_time), device))
    else:
        paper = next((r for r in records if (r["model"], r["mode"], r["S"], r["batch_kind"], r["impl"]) ==
                      (name, "train", S, "paper", impl)), None)
        if paper is None or paper.get("status") != "ok" or device.type != "cuda":
            rec.update(status="no paper-batch run to extrapolate from")
        else:
            B = max_batch(paper, paper["batch"], param_bytes, device)
            tries = []
            for _ in range(3):  # step down on OOM even past the budget: a max cell without a result is wasted
                r = guarded(lambda: train_cell(model, family, arch, impl, B, S, args.target_len, args.steps,
                                               args.warmup, device, energy, args.min_time), device)
                tries.append((B, r["status"]))
                if r["status"] != "OOM":
                    break
                B = max(1, int(B * 0.85))
            rec.update(r, batch=B, tries=tries)
    rec = derive(rec, arch, family, args.target_len, args.gen_tokens)
    rec["elapsed_s"] = time.perf_counter() - t_start
    return rec


def run_profile(model, name, family, arch, kind, impl, S, args, device, jsonl):
    """kind: "paper" (Table 5's batch) or a batch size."""
    B = paper_batch(name, S) if kind == "paper" else int(kind)
    try:
        prof = profile_step(model, family, arch, impl, B, S, args.target_len, device)
    except Exception as e:
        prof = dict(kind="profile", impl=impl, S=S, batch=B, error=repr(e)[:300])
    prof["model"] = name
    print("[profile]", json.dumps(prof), flush=True)
    jsonl.write(json.dumps(prof) + "\n")
    jsonl.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="led_base,led_large,bigbird_large")
    ap.add_argument("--lengths", default="1024,2048,3072,4096")
    ap.add_argument("--plan", default="train:paper:stock32,train:paper:stock16,train:paper:fast,gen:fixed:stock32,"
                    "gen:fixed:stock16,gen:fixed:fast,train:max:stock32,train:max:stock16,train:max:fast",
                    help="cells in order, mode:batch:impl; batch is paper, max or a number for train, fixed or eos for gen; "
                         "profile:paper:<impl> (or profile:<batch>:<impl>) profiles one training step there")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per cell")
    ap.add_argument("--warmup", type=int, default=1, help="untimed training steps (compile happens here)")
    ap.add_argument("--target-len", type=int, default=256)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--gen-reps", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.5, help="time each cell over at least this many seconds")
    ap.add_argument("--check", action="store_true", help="run the GPU same-function checks first")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--check-step-graph", action="store_true", help="only the cuda_graph=True checks, then the cells")
    ap.add_argument("--check-len", default="led=2048,bigbird_pegasus=1024", help="family=seq_len,...")
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no new cell after this many seconds")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny architectures (CPU dry run of this script)")
    ap.add_argument("--out", default="benchmarks/results/run")
    args = ap.parse_args()

    t_start = time.perf_counter()
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    energy = Energy(device)
    env = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), torch=torch.__version__,
               transformers=transformers.__version__, python=platform.python_version(), argv=sys.argv[1:],
               device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
               nvml_energy=energy.h is not None)
    with open(out / "env.jsonl", "a") as f:  # one line per process writing into this folder
        f.write(json.dumps(env) + "\n")
    print(json.dumps(env), flush=True)
    jsonl = open(out / "results.jsonl", "a")
    records, checks = [], []

    if args.check or args.check_only or args.check_step_graph:
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        lens = dict(kv.split("=") for kv in args.check_len.split(","))
        for name in args.models.split(","):
            family, arch = load_arch(name, args.tiny)
            S = int(lens[family])
            t0 = time.perf_counter()
            try:
                if args.check_step_graph:
                    res = check_step_graph(name, family, arch, S, device)
                else:
                    res = check_model(name, family, arch, S, device)
            except Exception as e:
                traceback.print_exc()
                res = [dict(model=name, check="error", S=S, error=repr(e)[:300], **{"pass": False})]
            for r in res:
                r["seconds"] = time.perf_counter() - t0
                print("[check]", json.dumps(r), flush=True)
                jsonl.write(json.dumps(dict(kind="check", **r)) + "\n")
                jsonl.flush()
            checks += res
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32  # the cells: torch's defaults
        if args.check_only:
            finish(out, records, checks, args)
            return

    plan = [tuple(c.split(":")) for c in args.plan.split(",") if c]
    try:
        for name in [m for m in args.models.split(",") if m and plan]:  # an empty plan: only rebuild the tables
            if time.perf_counter() - t_start > args.budget_s:
                break
            family, arch = load_arch(name, args.tiny)
            torch.manual_seed(0)
            model = build(family, arch, device)
            param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            for S in [int(s) for s in args.lengths.split(",")]:
                for mode, kind, impl in plan:
                    if mode == "profile":
                        if device.type == "cuda" and time.perf_counter() - t_start < args.budget_s:
                            run_profile(model, name, family, arch, kind, impl, S, args, device, jsonl)
                        continue
                    rec = run_cell(model, name, family, arch, mode, kind, impl, S, param_bytes, records, args, device,
                                   energy, t_start)
                    records.append(rec)
                    jsonl.write(json.dumps(rec) + "\n")
                    jsonl.flush()
                    print(f"[cell] {name} {mode} S={S} {kind} B={rec.get('batch')} {impl}: {rec['status']} "
                          f"{fmt(rec.get('samples_per_s'), 2)} samples/s, warm-up {fmt(rec.get('warmup_s'))} s "
                          f"(t={rec['elapsed_s']:.0f}s)", flush=True)
            del model
            cleanup(device)
    except KeyboardInterrupt:  # the recipe's hard timeout: report what was measured
        print("[interrupted]", flush=True)
    finish(out, records, checks, args)


def finish(out, records, checks, args):
    # every process that wrote into this folder (one per model in scripts/gpu_bench_fast.sh) appended to
    # results.jsonl: report them all
    rows = [json.loads(line) for line in open(out / "results.jsonl") if line.strip()]
    checks = [r for r in rows if r.get("kind") == "check"]
    profiles = [r for r in rows if r.get("kind") == "profile"]
    records = [r for r in rows if r.get("kind") is None]
    (out / "results.json").write_text(json.dumps(dict(records=records, checks=checks, profiles=profiles), indent=1,
                                                 default=str))
    keys = ["model", "mode", "S", "batch_kind", "batch", "impl", "status", "samples_per_s", "tflops",
            "j_per_sample", "peak_gib", "peak_reserved_gib", "warmup_s", "warmup_j", "time_s", "energy_j", "steps"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    for c in checks:
        print("[check]", c.get("model"), c.get("check"), "PASS" if c.get("pass") else "FAIL",
              {k: (round(v, 8) if isinstance(v, float) else v) for k, v in c.items()
               if k in ("logits_rel", "loss_rel", "grads_rel", "worst_param_rel", "fast_bf16_vs_stock_fp32",
                        "stock_bf16_vs_stock_fp32", "identical", "token_agreement", "error")})
    for p in profiles:
        print("[profile]", p.get("model"), p.get("impl"), "S", p.get("S"), "B", p.get("batch"), "wall",
              fmt(p.get("wall_s"), 4), "s, device busy", fmt(p.get("device_busy_s"), 4), "s:", p.get("by_kind") or p.get("error"))
    summary = targets(records)
    print()
    print(summary)
    print()
    print(table(records))
    (out / "table.md").write_text(summary + "\n\n" + table(records) + "\n")


if __name__ == "__main__":
    main()
