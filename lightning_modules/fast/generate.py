"""Greedy decoding with a static KV cache; on CUDA each decode step is one replayed CUDA graph.

Output format is HF generate(num_beams=1, do_sample=False)'s: [B, 1 + n] starting with decoder_start_token_id,
pad_token_id after a sequence's EOS, n = the step at which every sequence has finished (or max_new_tokens).
Logits processors reproduced: min_length, min_new_tokens, forced_bos_token_id, forced_eos_token_id; any other
active processor in the generation config raises ValueError (use HF generate for those).

Precision: the encoder runs as in training (under the caller's autocast, if any). The decode step computes
matmuls in the autocast dtype (weights cast once per call, not once per step as autocast would), and keeps the
residual stream, LayerNorms, softmax and logits in fp32, which is what autocast does. Without autocast, fp32.
Generation always runs in eval mode (no dropout; BigBird's eval-mode blocks), as a validation loop does.
"""

import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .attention import TILE, compiled_flex
from .streams import warmup_stream


# Processors that HF greedy search would apply and this decoder does not: (generation_config attribute, inert value)
_UNSUPPORTED = [
    ("repetition_penalty", 1.0), ("encoder_repetition_penalty", 1.0), ("no_repeat_ngram_size", 0),
    ("encoder_no_repeat_ngram_size", 0), ("bad_words_ids", None), ("suppress_tokens", None),
    ("begin_suppress_tokens", None), ("sequence_bias", None), ("exponential_decay_length_penalty", None),
    ("forced_decoder_ids", None), ("renormalize_logits", False),
]
CHECK_EVERY = 16  # decode steps between host checks for "all sequences finished"

# How a decode step attends to the encoder output (q length 1 against S cached keys per layer), the step's
# largest memory read. "sdpa": SDPA with the key mask; "flash": SDPA without a mask when no key is padded (the
# flash kernel), else as "sdpa"; "flex": flex_attention's decoding kernel (padding by a mask_mod); "bmm": two
# batched matmuls around a masked softmax. "auto": CUDA_DECODE_ATTN on CUDA, "sdpa" elsewhere. On the H200 the
# step is 2.3-2.9x its memory floor whichever is chosen: the rest of the step, a chain of small kernels, is the gap.
# benchmarks/decode_probe.py measures them; benchmarks/NOTES_fast_path.md (v5) has the numbers behind the choice.
DECODE_ATTNS = ("sdpa", "flash", "flex", "bmm")
CUDA_DECODE_ATTN = "flash"  # H200: flash 3.9 TB/s alone, masked SDPA 3.2, bmm 1.0-2.2, flex decoding 1.0 (v5)


def generation_settings(model):
    gc, c = model.generation_config, model.config

    def pick(name):
        v = getattr(gc, name, None)
        return v if v is not None else getattr(c, name, None)

    active = {n: getattr(gc, n, None) for n, inert in _UNSUPPORTED if getattr(gc, n, None) not in (None, inert)}
    if active:
        raise ValueError(f"greedy_generate does not implement these generation settings: {active}; use model.generate")
    eos = pick("eos_token_id")
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    pad = pick("pad_token_id")
    pad = eos[0] if pad is None and eos else pad
    start = pick("decoder_start_token_id")
    if start is None or pad is None:
        raise ValueError("decoder_start_token_id and pad_token_id (or eos_token_id) must be set")
    return dict(start=start, pad=pad, eos=tuple(eos), min_length=getattr(gc, "min_length", None) or 0,
                forced_bos=getattr(gc, "forced_bos_token_id", None), forced_eos=getattr(gc, "forced_eos_token_id", None))


class DecoderWeights:
    """The decoder's matmul weights in the compute dtype (cast once per call); fp32 params are used as they are."""

    def __init__(self, model, path, dtype):
        dec = path.base(model).decoder
        self.dec, self.dtype, self.lm_head, self.bias = dec, dtype, model.lm_head, model.final_logits_bias
        self.pre_ln = path.pre_ln
        self.H = dec.layers[0].self_attn.num_heads
        self.buffers = None
        self.refresh()

    def _sources(self):
        out = {}
        for i, layer in enumerate(self.dec.layers):
            sa, ca = layer.self_attn, layer.encoder_attn
            out[f"{i}.qkv"] = torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight])
            if sa.q_proj.bias is not None:
                out[f"{i}.qkv_b"] = torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias])
            for name, lin in (("o", sa.out_proj), ("cq", ca.q_proj), ("co", ca.out_proj), ("fc1", layer.fc1), ("fc2", layer.fc2)):
                out[f"{i}.{name}"] = lin.weight
                if lin.bias is not None:
                    out[f"{i}.{name}_b"] = lin.bias
        layers = self.dec.layers
        out["ckv"] = torch.cat([t for layer in layers for t in (layer.encoder_attn.k_proj.weight, layer.encoder_attn.v_proj.weight)])
        if layers[0].encoder_attn.k_proj.bias is not None:
            out["ckv_b"] = torch.cat([t for layer in layers for t in (layer.encoder_attn.k_proj.bias, layer.encoder_attn.v_proj.bias)])
        out["lm_head"] = self.lm_head.weight
        return out

    def refresh(self):
        """Copy current parameter values into the static buffers a captured graph reads."""
        with torch.no_grad():
            src = self._sources()
            if self.buffers is None:
                self.buffers = {k: v.to(self.dtype).clone() for k, v in src.items()}
            else:
                for k, v in src.items():
                    self.buffers[k].copy_(v)

    def get(self, key):
        return self.buffers.get(key)


def _lin(x, w, b):
    return F.linear(x.to(w.dtype), w, b)


def _ln(x, ln):
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


@dataclass
class DecodeState:
    tok: torch.Tensor  # [B] next input token
    pos: torch.Tensor  # [] position of `tok`
    unfinished: torch.Tensor  # [B] bool
    out: torch.Tensor  # [B, 1 + max_new]
    cache: torch.Tensor  # [n_layers, 2, B, H, max_new, dh] self-attention keys/values
    ckv: torch.Tensor  # [n_layers, 2, B, H, S, dh] cross-attention keys/values
    cross_mask: torch.Tensor  # [B, 1, 1, S] bool: encoder key not padded
    arange: torch.Tensor  # [max_new]
    eos: torch.Tensor | None  # [n_eos] EOS ids; a captured graph reads every tensor of the step from here or W
    cross_block: object = None  # "flex": the BlockMask over cross_mask (every tile listed, the mask_mod cuts)


def decode_step(W, st, s):
    """One greedy step in place: reads st.tok at st.pos, writes the next token. Graph-capturable (no syncs)."""
    dec, dt = W.dec, W.dtype
    B = st.tok.shape[0]
    D = dec.config.d_model
    H = W.H
    dh = D // H
    scale = 1.0 / math.sqrt(dh)
    pos = st.pos.view(1)
    self_mask = (st.arange <= st.pos).view(1, 1, 1, -1)  # cache slots written so far
    x = dec.embed_tokens(st.tok[:, None]).float() + dec.embed_positions.weight.index_select(0, pos).float()
    if not W.pre_ln:
        x = _ln(x, dec.layernorm_embedding)
    for i, layer in enumerate(dec.layers):
        def g(k):
            return W.get(f"{i}.{k}")
        h = _ln(x, layer.self_attn_layer_norm) if W.pre_ln else x
        qkv = _lin(h, g("qkv"), g("qkv_b")).view(B, 3, H, dh)
        # keys and values into the cache in one write (the step is a chain of small kernels: each one costs)
        st.cache[i].index_copy_(3, pos, qkv[:, 1:].transpose(0, 1)[:, :, :, None].to(st.cache.dtype))
        q = qkv[:, 0]
        kc, vc = st.cache[i, 0], st.cache[i, 1]
        o = F.scaled_dot_product_attention(q[:, :, None].to(dt), kc, vc, attn_mask=self_mask, scale=scale)
        o = _lin(o.reshape(B, 1, D), g("o"), g("o_b")).float()
        x = x + o if W.pre_ln else _ln(x + o, layer.self_attn_layer_norm)
        h = _ln(x, layer.encoder_attn_layer_norm) if W.pre_ln else x
        q = _lin(h, g("cq"), g("cq_b")).view(B, H, 1, dh)
        o = cross_attention(q.to(dt), st.ckv[i, 0], st.ckv[i, 1], st, s["attn"], scale)
        o = _lin(o.transpose(1, 2).reshape(B, 1, D), g("co"), g("co_b")).float()
        x = x + o if W.pre_ln else _ln(x + o, layer.encoder_attn_layer_norm)
        h = _ln(x, layer.final_layer_norm) if W.pre_ln else x
        h = _lin(layer.activation_fn(_lin(h, g("fc1"), g("fc1_b"))), g("fc2"), g("fc2_b")).float()
        x = x + h if W.pre_ln else _ln(x + h, layer.final_layer_norm)
    if W.pre_ln:
        x = _ln(x, dec.layernorm_embedding)
    logits = _lin(x, W.get("lm_head"), None).float()[:, 0] + W.bias.float()
    neg = float("-inf")
    if st.eos is not None and (s["min_new"] > 0 or s["min_length"] > 0):
        blocked = (st.pos < s["min_new"]) | (st.pos + 1 < s["min_length"])
        logits[:, st.eos] = torch.where(blocked, neg, logits[:, st.eos])
    cols = torch.arange(logits.shape[1], device=logits.device)
    if s["forced_bos"] is not None:
        logits = torch.where(st.pos == 0, torch.where(cols == s["forced_bos"], 0.0, neg), logits)
    if s["forced_eos"] is not None:
        logits = torch.where(st.pos == s["max_new"] - 1, torch.where(cols == s["forced_eos"], 0.0, neg), logits)
    nxt = logits.argmax(-1)
    nxt = torch.where(st.unfinished, nxt, s["pad"])
    if st.eos is not None:
        st.unfinished &= ~(nxt[:, None] == st.eos).any(-1)
    st.out.index_copy_(1, pos + 1, nxt[:, None])
    st.tok.copy_(nxt)
    st.pos.add_(1)


def cross_attention(q, k, v, st, attn, scale):
    """q [B, H, 1, dh] against the cached encoder keys/values k, v [B, H, S, dh] -> [B, H, 1, dh]."""
    if attn == "flex":
        fn = flex_attention if torch.compiler.is_compiling() or not q.is_cuda else compiled_flex()
        return fn(q, k, v, block_mask=st.cross_block, scale=scale)
    if attn == "bmm":  # scores in the compute dtype, as stock attention under autocast; softmax in fp32
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
        p = torch.softmax(scores.masked_fill(~st.cross_mask, float("-inf")), dim=-1)
        return torch.matmul(p.to(v.dtype), v)
    mask = None if attn == "flash_unpadded" else st.cross_mask
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def resolve_decode_attn(attn, device, valid):
    """The cross-attention a decode step runs for this call: "auto" by device; "flash" takes no mask, so it runs
    only for a batch without padded keys (one host sync per call), masked SDPA otherwise."""
    if attn == "auto":
        attn = CUDA_DECODE_ATTN if device.type == "cuda" else "sdpa"
    if attn == "flash":
        attn = "flash_unpadded" if bool(valid.all()) else "sdpa"
    return attn


def _cross_block(cross_mask, S, B, device):
    """Flex BlockMask for one query against S keys, padded keys (cross_mask False) masked. Every key tile is
    listed (partial), so the mask's tensors never change between calls: a captured graph keeps reading the same
    ones, and only cross_mask is rewritten."""
    nk = -(-S // TILE)
    kv_num = torch.full((B, 1, 1), nk, dtype=torch.int32, device=device)
    kv_idx = torch.arange(nk, dtype=torch.int32, device=device).expand(B, 1, 1, nk).contiguous()

    def mask_mod(b, h, q, kv):
        return cross_mask[b, 0, 0, kv]

    return BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=(TILE, TILE), mask_mod=mask_mod, seq_lengths=(1, S),
                                    compute_q_blocks=False)


def _new_state(W, B, S, max_new, eos, device):
    dec = W.dec
    n, H, D = len(dec.layers), W.H, dec.config.d_model
    def z(*shape, dtype=W.dtype):
        return torch.zeros(*shape, dtype=dtype, device=device)
    st = DecodeState(
        tok=z(B, dtype=torch.long), pos=z((), dtype=torch.long), unfinished=z(B, dtype=torch.bool),
        out=z(B, 1 + max_new, dtype=torch.long), cache=z(n, 2, B, H, max_new, D // H),
        ckv=z(n, 2, B, H, S, D // H), cross_mask=z(B, 1, 1, S, dtype=torch.bool),
        arange=torch.arange(max_new, device=device),
        eos=torch.tensor(eos, device=device) if eos else None,
    )
    st.cross_block = _cross_block(st.cross_mask, S, B, device)
    return st


def _load(W, st, enc, valid, start):
    """Per call: cross-attention keys/values of the new encoder output, masks, reset counters."""
    B, S, D = enc.shape
    n, H = len(W.dec.layers), W.H
    kv = _lin(enc, W.get("ckv"), W.get("ckv_b"))
    st.ckv.copy_(kv.view(B, S, n, 2, H, D // H).permute(2, 3, 0, 4, 1, 5))
    st.cross_mask.copy_(valid[:, None, None, :])
    st.tok.fill_(start)
    st.pos.zero_()
    st.unfinished.fill_(True)
    st.out.fill_(start)


class _Graph:
    def __init__(self, key, W, st, s, step):
        self.key, self.W, self.st = key, W, st
        stream = warmup_stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: compilation, lazy inits and workspaces happen outside the capture
                step(W, st, s)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step(W, st, s)


def greedy_generate(model, input_ids, attention_mask, global_attention_mask=None, max_new_tokens=128,
                    min_new_tokens=0, fixed_length=False, decode_attn="auto", compile_step=False):
    """decode_attn: one of DECODE_ATTNS or "auto" (above). compile_step: torch.compile the decode step (inductor
    fuses its element-wise work: fewer kernels per step), then capture it; its compile is a one-time cost."""
    fast = getattr(model, "_fast", None)
    if fast is None:
        raise ValueError("greedy_generate needs apply_fast_path(model) first")
    if global_attention_mask is not None and not fast.path.takes_global_mask:
        raise ValueError(f"global_attention_mask is not an input of {type(model).__name__}")
    s = generation_settings(model)
    if decode_attn != "auto" and decode_attn not in DECODE_ATTNS:
        raise ValueError(f"decode_attn={decode_attn!r}; allowed: auto, {', '.join(DECODE_ATTNS)}")
    dev = input_ids.device
    use_graph = dev.type == "cuda"
    autocast = torch.is_autocast_enabled(dev.type)
    dtype = torch.get_autocast_dtype(dev.type) if autocast else model.lm_head.weight.dtype
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            enc, valid = fast.path.encode(model, fast, input_ids, attention_mask, global_attention_mask, fast.enc_layer)
            # the step sets its own dtypes; autocast inside a graph capture would also need its cache disabled
            with torch.autocast(dev.type, enabled=False) if autocast else nullcontext():
                return _decode(model, fast, s, enc.float(), valid, dtype, max_new_tokens, min_new_tokens,
                               fixed_length, use_graph, decode_attn, compile_step)
    finally:
        model.train(was_training)


def _decode(model, fast, s, enc, valid, dtype, max_new, min_new, fixed_length, use_graph, attn, compile_step):
    B, S, _ = enc.shape
    dev = enc.device
    attn = resolve_decode_attn(attn, dev, valid)
    # s holds Python values only: a replayed graph reads tensors at their capture-time addresses, so every
    # tensor the step reads lives in W or st, which live as long as the graph (an EOS-id tensor made per call
    # here was freed after the first call and replays read whatever took its place: out-of-range indices)
    s = dict(s, max_new=max_new, min_new=min_new, attn=attn)
    key = (B, S, max_new, min_new, dtype, dev, model.lm_head.weight.data_ptr(), s["eos"], s["pad"], s["min_length"],
           s["forced_bos"], s["forced_eos"], attn, bool(compile_step))
    g = fast.gen_graph if use_graph else None
    if g is not None and g.key == key:
        W, st = g.W, g.st
        W.refresh()
    else:
        fast.gen_graph = g = None  # free the old graph's buffers first
        W = DecoderWeights(model, fast.path, dtype)
        st = _new_state(W, B, S, max_new, s["eos"], dev)
    # compile=True compiles the encoder layers; the step itself only with compile_step (decode_probe.py on the
    # H200: -10% on LED-base, +7-8% on LED-large and BigBird-large)
    step = decode_step
    if compile_step:
        if getattr(fast, "gen_step_compiled", None) is None:
            fast.gen_step_compiled = torch.compile(decode_step, dynamic=False)
        step = fast.gen_step_compiled
    _load(W, st, enc, valid, s["start"])
    if use_graph and g is None:
        try:
            g = fast.gen_graph = _Graph(key, W, st, s, step)
        except Exception as e:  # same function without the graph: slower, still right
            warnings.warn(f"greedy_generate: CUDA graph capture failed ({e!r:.200}); decoding eagerly")
            use_graph = False
        _load(W, st, enc, valid, s["start"])  # the capture's warm-up steps advanced the state
    fast.gen_graphed = use_graph  # what the last call did (benchmarks record it)
    done = 0
    while done < max_new:
        n = min(CHECK_EVERY if use_graph else 1, max_new - done)
        for _ in range(n):
            g.graph.replay() if use_graph else step(W, st, s)
        done += n
        if not fixed_length and st.eos is not None and not bool(st.unfinished.any()):
            break
    out = st.out[:, : 1 + done].clone()
    if fixed_length or st.eos is None:
        return out
    # HF stops at the step where the last sequence emitted EOS; we may have decoded a few pad steps past it
    is_eos = (out[:, 1:, None] == st.eos).any(-1)
    if bool(is_eos.any(1).all()):
        last = int(is_eos.int().argmax(1).max()) + 1
        out = out[:, : 1 + last]
    return out
