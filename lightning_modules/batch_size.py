"""Training batch size: a number, the paper's (`paper`: Table 5's total over the strategy's devices x accumulation),
or the largest that fits one device (`auto`), optionally within a memory cap (`batch_size_memory_gib`) that the run
is then held to; auto's answers are kept for the next run of the same configuration (PROBE_CACHE)."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import torch

from lightning_modules.fast import release_train_graphs
from study.errors import StudyError

log = logging.getLogger(__name__)
# The probe's one step is leaner than a real run's (seen on the H200, 2026-12-01: led_base fp32 at 4096 tokens,
# batch 24 passed the probe and ran out of memory in training, 12.8 GiB of the card reserved but unallocated):
# a batch is taken only if its probe leaves this share of the budget (the card, or the cap) free. The probe counts
# the memory the allocator reserved, not what tensors held: a hold (and an out-of-memory error) binds on the former,
# and a captured step's pool reserves more than its tensors ever hold at once (H200, 2026-12-02: led_base at 1024
# tokens, batch 192 peaked at 42.95 GiB allocated, and its run, held to 48 GiB, ran out at the first update with
# 45.7 GiB in the capture's pool).
HEADROOM = 0.10
EXTRAPOLATIONS = 4  # guesses along a line through two measured batches, each probed
PROBE_CACHE = "batch_size_auto.json"  # under paths.cache_dir: answers of earlier probes, by what they depend on


class PaperBatch(NamedTuple):
    per_device: int
    total: int  # the paper's total batch (per device x devices x accumulation) for this model, task and length
    note: str | None  # why the run's total is not the paper's, or what the paper's A6000 could not hold


def paper_batch_size(table: dict, task: str, model_name: str, seq_len: int, devices: int = 1, accumulate: int = 1,
                     strategy: str | None = None) -> PaperBatch:
    """Per-device batch from the paper's total: total / (devices x accumulation), for the smallest tabulated
    length >= seq_len. Table 5 (`table: table5`) gives the total per task and model; Table 2 (`table: table2`,
    led_base only) per hardware set-up, named by the strategy. When the total does not divide, the per-device batch
    is rounded down (at least 1) and the note says what total the run gets instead."""
    which = table.get("table", "table5")
    if which == "table2":
        rows = table.get("table2", {}).get(strategy or "")
        if model_name != "led_base" or not rows:
            raise StudyError(
                f"batch_size=paper with paper_batch_sizes.table=table2 covers model=led_base on strategy="
                f"{', '.join(table.get('table2', {}))}, not model={model_name} on strategy={strategy}"
            )
        setup = (devices, accumulate)  # Table 2's set-ups are the strategies themselves
    elif which == "table5":
        rows = table.get(task, {}).get(model_name)
        if not rows:
            raise StudyError(f"batch_size=paper has no Table 5 entry for model={model_name} on a {task} task; give batch_size=<n> or auto")
        setup = tuple(table["paper_setup"][task][k] for k in ("devices", "accumulate_grad_batches"))
    else:
        raise StudyError(f"paper_batch_sizes.table={which} is not one of: table5, table2")
    lengths = sorted(int(k) for k in rows)
    fitting = [n for n in lengths if n >= seq_len]
    if not fitting:
        raise StudyError(f"batch_size=paper tabulates model={model_name} up to seq_len={lengths[-1]}, not {seq_len}; give batch_size=<n> or auto")
    total = int(rows[fitting[0]])
    share = int(devices) * int(accumulate)
    per_device = max(1, total // share)
    notes = []
    if per_device * share != total:
        notes.append(f"the paper's total batch {total} cannot be met with {devices} device(s) x accumulation {accumulate}: "
                     f"per-device {per_device} gives {per_device * share}")
    fit = max(1, total // (int(setup[0]) * int(setup[1])))  # what one 48 GB A6000 held in the paper's set-up
    if per_device > fit:
        notes.append(f"per-device {per_device} is more than the {fit} that fit the paper's 48 GB A6000 "
                     f"({setup[0]} device(s) x accumulation {setup[1]}); raise devices or accumulate_grad_batches to keep its memory")
    note = "; ".join(notes) or None
    if note:
        log.warning("batch_size=paper: %s", note)
    return PaperBatch(per_device, total, note)


class Validation(NamedTuple):
    """What a run's validation generates, between its training steps and on top of their memory (the captured step's
    pool, the weights, AdamW's state): its batch (data.eval_batch_size) and budget (module.generation). H200,
    2026-12-02: LED-large at 4096 tokens, batch 14 within 48 GiB, trained and ran out of memory in its first
    validation, whose cross-attention keys and values (3 GiB) the probe had not counted."""
    batch_size: int
    max_new_tokens: int
    num_beams: int = 1
    fast: bool = False  # the module decodes with the fast path's greedy decoder (module.attn_impl=fast)


class StepPeak(NamedTuple):
    backward: float  # GiB reserved at the peak of forward and backward: weights, gradients, activations (linear in the batch)
    step: float      # GiB reserved at the peak of the whole step, AdamW's update included (its state and temporaries)
    weights: float = 0.0  # GiB of the model's own tensors on the device (its gradients take as much again)
    other: float = 0.0    # GiB the process had reserved besides the model before the step (e.g. cuBLAS workspaces)


def _inputs(model, batch_size: int, seq_len: int, target_len: int, device, global_first: bool) -> dict:
    vocab = model.config.vocab_size
    if model.config.is_encoder_decoder:
        ids = torch.randint(5, min(vocab, 1000), (batch_size, seq_len), device=device)
        labels = torch.randint(5, min(vocab, 1000), (batch_size, target_len), device=device)
    else:  # a decoder-only LM reads prompt and answer as one sequence (data/causal.py)
        ids = torch.randint(5, min(vocab, 1000), (batch_size, seq_len + target_len), device=device)
        labels = ids
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    if global_first:
        g = torch.zeros_like(ids)
        g[:, 0] = 1
        kwargs["global_attention_mask"] = g
    return kwargs


def _validate(model, validation: Validation, seq_len: int, device, precision: str, global_first: bool) -> None:
    """One validation batch generated as the run generates it (seq2seq.generate_ids), full length."""
    from lightning_modules.seq2seq import generate_ids

    kwargs = _inputs(model, validation.batch_size, seq_len, 1, device, global_first)
    kwargs.pop("labels")
    generation = {"max_new_tokens": validation.max_new_tokens, "num_beams": validation.num_beams}
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            generate_ids(model, kwargs, generation, validation.fast)
    finally:
        model.train()


def _step_peak_gib(model, batch_size: int, seq_len: int, target_len: int, device, precision: str, global_first: bool,
                   validation: Validation | None = None) -> StepPeak | None:
    """One forward, backward and AdamW step at full length: the memory a training step really needs; with
    validation, then a validation batch and a second step, as a run validates between steps (what its generation
    keeps, e.g. the fast decoder's captured graph and buffers, stays through the next update).
    Returns its peaks in GiB, or None when the step ran out of memory. Counted as this model's own weights plus what
    the allocator reserved for the step on top of what was already there: memory another job of the same process left behind (a
    multirun) is not this model's. The backward's peak is kept apart because at small batches the update's (all
    of AdamW's state and temporaries, independent of the batch) is the larger: seen on the H200, 2026-12-02, where
    batches 1 and 2 peaked alike and the prediction from them overshot."""
    opt = None
    try:
        gc.collect()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved(device)  # what is left is held by live tensors: this model's, or another's
        own = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()) if t.device == device)
        torch.cuda.reset_peak_memory_stats(device)
        kwargs = _inputs(model, batch_size, seq_len, target_len, device, global_first)
        opt = torch.optim.AdamW(model.parameters(), lr=0.0)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
                loss = model(**kwargs).loss
            loss.backward()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_reserved(device)
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(device)
            return peak

        backward = step()
        if validation is not None:
            _validate(model, validation, seq_len, device, precision, global_first)
            step()
        reserved = torch.cuda.max_memory_reserved(device)
        return StepPeak((backward - before + own) / 2**30, (reserved - before + own) / 2**30, own / 2**30,
                        max(before - own, 0) / 2**30)
    except torch.OutOfMemoryError as e:
        # the allocator's own account (what it tried, allocated, reserved but unusable): why a batch held to a cap
        # failed where its probe on the whole card fitted is in these numbers
        log.info("batch_size=auto: batch %d out of memory: %s", batch_size, " ".join(str(e).split())[:400])
        return None
    finally:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        opt = None  # its state goes with it
        model.zero_grad(set_to_none=True)
        # a captured step (model.cuda_graph) keeps its memory pool: left alive, every probed size's pool stayed
        # reserved into the run (H200, 2026-12-02: 57 GiB of private pools when the run moved its model back);
        # the fast decoder's graph and buffers likewise (the next probe, or the run, would find them already there)
        release_train_graphs(model)
        if getattr(model, "_fast", None) is not None:
            model._fast.gen_graph = None
        gc.collect()
        torch.cuda.empty_cache()


def check_memory_cap(memory_gib) -> float | None:
    """batch_size_memory_gib: null (the whole card) or a positive number of GiB."""
    if memory_gib is None:
        return None
    try:
        cap = float(memory_gib)
    except (TypeError, ValueError):
        cap = 0.0
    if not cap > 0:
        raise StudyError(f"batch_size_memory_gib={memory_gib} must be a positive number of GiB (48 emulates the paper's A6000) or null (the whole card)")
    return cap


def find_max_batch_size(model, seq_len: int, target_len: int, precision: str, global_first: bool, limit: int = 1024,
                        memory_gib: float | None = None, validation: Validation | None = None) -> int:
    """Largest batch whose full-length training step (and, given validation, a validation batch between two steps)
    fits on the current GPU, and within memory_gib when given (a smaller card emulated on a larger one: the paper's
    48 GB A6000 on an 80 or 141 GB card): batch 2, then guesses along a line (first through the memory every batch
    holds, then through two measured batches), each probed; bisection after an out-of-memory guess. Within a cap,
    the answer is then run once more held to it, as the run will be, and stepped down until it trains there."""
    if not torch.cuda.is_available():
        raise StudyError("batch_size=auto searches GPU memory and no GPU is visible; give batch_size=<n>")
    device = torch.device("cuda", torch.cuda.current_device())
    cap = check_memory_cap(memory_gib)
    card = torch.cuda.get_device_properties(device).total_memory / 2**30
    if cap is not None and cap >= card:
        log.warning("batch_size_memory_gib=%g is not below this GPU's %.1f GiB: the cap changes nothing", cap, card)
    hold_to_memory_cap(None)  # the probe measures on the whole card: a multirun's earlier job may have held it
    model.to(device).train()

    budget = (card if cap is None else min(cap, card)) * (1 - HEADROOM)
    peaks: dict[int, StepPeak] = {}  # every probed size that did not run out of memory
    probes = {"n": 0}

    def need(peak: StepPeak) -> float:
        # held to a cap the process's other reserved memory counts against it as the step does (the hold binds on
        # everything the allocator reserved); on the whole card it is not this model's (another job's, say)
        return peak.step + (peak.other if cap is not None else 0.0)

    def fits(size: int) -> bool:
        probes["n"] += 1
        peak = _step_peak_gib(model, size, seq_len, target_len, device, precision, global_first, validation)
        log.info("batch_size=auto probe: batch %d %s", size, "out of memory" if peak is None else
                 f"reserves {peak.backward:.2f} GiB at the backward's peak, {peak.step:.2f} GiB at the step's"
                 + (f" + {peak.other:.2f} GiB the process held besides" if cap is not None else "") + f" (budget {budget:.1f})")
        if peak is not None:
            peaks[size] = peak
        return peak is not None and need(peak) <= budget

    # A step's memory at its backward is the weights and their gradients (twice the model's own bytes) plus
    # activations that grow with the batch, and the update adds a fixed amount. Each line's slope is the backward's
    # (the activations), and it is aimed at the budget from the step's peak (what the budget is checked against; a
    # captured step's pool keeps its memory through the update, 1.94 GiB for led_base: aimed with the backward's, the
    # H200's searches of calls 13-14 overshot every time and took 5-11 probes). The first guess is the line
    # through that fixed part and batch 2 (not through batch 1: on the H200 batches 1 and 2 peaked 0.14 GiB a sample
    # apart where 0.22 held beyond, led_base at 1024 tokens), each later one the line through the largest batch that
    # fitted and the nearest other measured one (above it when there is one); every guess is probed, and bisection
    # runs only after an out-of-memory guess or when the guesses stop. On the compiled fast path each probed size is
    # a compile (~16-21 s on the H200), so the batch above the answer is not probed where the line through two
    # measured batches puts it more than a quarter of a sample past the budget (on the H200 the batch above every
    # answer was past it, by 0.01-0.46 GiB: 193, 97 and 49 under 43.2 GiB, 166, 60 and 42 under 37.2).
    inferred = False
    if limit < 2 or not fits(2):
        good, bad = (1, 2 if limit >= 2 else None) if fits(1) else (0, None)
    else:
        good, bad = 2, None
        for i in range(EXTRAPOLATIONS):
            if i == 0:
                slope = (peaks[2].backward - 2 * peaks[2].weights) / 2
                slope = slope if slope > 0 else peaks[2].backward / 2  # weights not where expected: a steeper line
            else:
                other = bad if bad is not None else max(n for n in peaks if n < good)
                if other not in peaks:
                    break  # the last guess ran out of memory: no line through it
                slope = (peaks[other].backward - peaks[good].backward) / (other - good)
            guess = limit if slope <= 0 else good + int((budget - need(peaks[good])) / slope)
            guess = min(guess, limit, bad - 1 if bad is not None else limit)
            if guess <= good:  # the line says good + 1 does not fit
                if bad is not None and bad > good + 1:
                    if i > 0 and slope > 0 and need(peaks[good]) + 1.25 * slope > budget:
                        bad, inferred = good + 1, True  # by the line through two measurements, not probed
                    else:
                        good, bad = (good + 1, bad) if fits(good + 1) else (good, good + 1)
                break
            if fits(guess):
                good = guess
            else:
                bad = guess
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    confirmed = ""
    if cap is not None and good > 0:
        good, confirmed = _held_to(cap, good, model, seq_len, target_len, device, precision, global_first, validation)
    if good == 0:
        within = f" within batch_size_memory_gib={cap:g}" if cap is not None else ""
        raise StudyError(f"batch_size=auto: not even one sample of seq_len={seq_len} fits on this GPU{within}")
    model.to("cpu")
    torch.cuda.empty_cache()
    step = f"its step reserved {need(peaks[good]):.1f} GiB of the {budget:.1f} allowed" if good in peaks else "below the probed sizes"
    log.info("batch_size=auto: %d fits at seq_len=%d%s (%s; %d probes%s%s)", good, seq_len,
             f" within {cap:g} GiB" if cap is not None else "", step, probes["n"],
             f"; {good + 1} not probed: the line puts it past the budget" if inferred else "", confirmed)
    return good


HELD_TRIES = 3  # a batch that fails held to the cap is stepped down by 1/32 (at least 1) this many times at most


def _held_to(cap: float, size: int, model, seq_len, target_len, device, precision, global_first, validation) -> tuple[int, str]:
    """The probe measures on the whole card, where the allocator never has to give memory back; held to a cap it
    must, and what it cannot (blocks split between live tensors) counts against the cap. On the H200 a batch whose
    probe reserved under 2.7 GiB (3 less 10%) ran out of memory held to 3 GiB with 0.38 GiB reserved and unusable. So the answer is run
    once more held to the cap, the run's own condition, and stepped down while it runs out of memory there.
    Returns (the batch, what the log should say about it)."""
    for attempt in range(HELD_TRIES + 1):
        hold_to_memory_cap(cap)
        try:
            fits = _step_peak_gib(model, size, seq_len, target_len, device, precision, global_first, validation) is not None
        finally:
            hold_to_memory_cap(None)
        if fits:
            return size, f"; trained held to {cap:g} GiB" + (f" after {attempt} step(s) down" if attempt else "")
        log.info("batch_size=auto: batch %d ran out of memory held to %g GiB", size, cap)
        if attempt == HELD_TRIES or size == 1:
            break
        size = max(1, size - max(1, size // 32))
    raise StudyError(f"batch_size=auto: no batch of seq_len={seq_len} trains held to batch_size_memory_gib={cap:g} (the last tried: {size}); "
                     f"its probes fitted on the whole card, so the cap is too tight for this allocator: give batch_size=<n> or a larger cap")


def hold_to_memory_cap(memory_gib) -> float | None:
    """Hold this process to memory_gib on its GPU, as a card of that size would (torch.cuda.set_per_process_memory_fraction:
    the caching allocator frees its cache and then raises out-of-memory past it; the CUDA context is outside it), or
    release it to the whole card with None (a multirun's earlier job may have held it). Returns the fraction held."""
    if not torch.cuda.is_available():
        return None
    device = torch.cuda.current_device()
    cap = check_memory_cap(memory_gib)
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = 1.0 if cap is None else min(1.0, cap * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    if cap is not None:
        log.info("memory: held to %g GiB of this GPU's %.1f (batch_size_memory_gib)", cap, total / 2**30)
    return fraction


# ---- the probe's answers, kept: a seed or a rerun of the same configuration need not probe again ----------------
CODE = Path(__file__).resolve().parent  # lightning_modules/: the model code, the fast path and this probe


@functools.lru_cache(maxsize=None)
def code_digest(root: Path = CODE) -> str | None:
    """A hash of the code a training step runs (every .py under lightning_modules/), read from the files, so an
    answer carries over between commits that did not touch them (a docs or report change), holds for a tree with
    uncommitted changes, and does not outlive a change to the model code. None if a file cannot be read."""
    digest = hashlib.sha256()
    try:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()[:20]


def probe_key(model, seq_len: int, target_len: int, precision: str, global_first: bool, memory_gib, limit: int = 1024,
              validation: Validation | None = None) -> str | None:
    """Everything the probe's answer depends on (the code, the libraries, the allocator's settings, the GPU, the
    architecture and its implementation, the input and the budget), hashed; None where the code cannot be read."""
    import transformers

    code = code_digest()
    if code is None:
        return None
    device = torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    fast = getattr(model, "_fast", None)
    what = {
        "code": code, "torch": torch.__version__, "transformers": transformers.__version__,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), "gpu": props.name, "gpu_memory": props.total_memory,
        "config": {k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"},  # not where the weights came from
        "gradient_checkpointing": bool(getattr(model, "is_gradient_checkpointing", False)),
        "fast": None if fast is None else {k: str(getattr(fast, k, None)) for k in ("compile", "cuda_graph", "residual_dtype", "fused_loss")},
        "seq_len": seq_len, "target_len": target_len, "precision": precision, "global_first": global_first,
        "memory_gib": memory_gib, "headroom": HEADROOM, "limit": limit,
        "validation": None if validation is None else validation._asdict(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # none yet, or unreadable (e.g. a crash mid-write elsewhere): probe again
        return {}


def cached_max_batch_size(model, seq_len: int, target_len: int, precision: str, global_first: bool, memory_gib=None,
                          cache_file: Path | None = None, validation: Validation | None = None) -> tuple[int, str]:
    """(find_max_batch_size's answer, how it was had: `probed` or `cached (<file>)`). The answer is kept in
    cache_file under probe_key; each probed size costs a compile on the fast path (~16 s on the H200), five or so a
    run, which is more than a 100-step run trains."""
    key = probe_key(model, seq_len, target_len, precision, global_first, memory_gib, validation=validation) if cache_file is not None else None
    if key is not None:
        hit = _read_cache(cache_file).get(key)
        if isinstance(hit, dict) and isinstance(hit.get("batch_size"), int) and hit["batch_size"] > 0:
            log.info("batch_size=auto: %d at seq_len=%d, as probed before with this model code, GPU and configuration (%s)", hit["batch_size"],
                     seq_len, cache_file)
            return hit["batch_size"], f"cached ({cache_file})"
    n = find_max_batch_size(model, seq_len, target_len, precision, global_first, memory_gib=memory_gib, validation=validation)
    if key is not None:
        data = _read_cache(cache_file)
        data[key] = {"batch_size": n, "seq_len": seq_len, "memory_gib": memory_gib}
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        try:  # written whole, then renamed: a reader never sees half a file; a full disk only costs the next probe
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, cache_file)
        except OSError as e:
            log.warning("batch_size=auto: could not keep the probe's answer in %s (%s)", cache_file, e)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return n, "probed"


def resolve_batch_size(value, table: dict, task: str, spec, seq_len: int, model=None, target_len: int = 128, precision: str = "32-true",
                       devices: int = 1, accumulate: int = 1, strategy: str | None = None, memory_gib=None,
                       probe_cache: Path | None = None, validation: Validation | None = None) -> tuple[int, str, dict]:
    """(per-device batch size, how it was chosen, what to record beside it).

    devices: data-parallel devices over all nodes; accumulate: gradient accumulation steps (batch_size=paper divides
    the paper's total by their product). memory_gib: batch_size=auto's memory cap; probe_cache: where auto keeps
    its answers (None: always probe); validation: what the run's validation generates (auto counts its memory)."""
    cap = check_memory_cap(memory_gib)
    if value == "paper":
        paper = paper_batch_size(table, task, spec.name, seq_len, devices, accumulate, strategy)
        return paper.per_device, "paper", {"paper_total_batch_size": paper.total, "paper_batch_note": paper.note}
    if value == "auto":
        n, how = cached_max_batch_size(model, seq_len, target_len, precision, spec.global_attention_on_first_token, cap, probe_cache,
                                       validation)
        return n, "auto", {"batch_size_memory_gib": cap, "batch_size_probe": how}
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0 or str(n) != str(value).strip():
        raise StudyError(f"batch_size={value} must be a positive whole number, paper or auto")
    return n, "given", {}
