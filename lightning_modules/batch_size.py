"""Training batch size: a number, the paper's Table 5 (`paper`), or the largest that fits one device (`auto`)."""

from __future__ import annotations

import logging

import torch

from study.errors import StudyError

log = logging.getLogger(__name__)


def paper_batch_size(table: dict, task: str, model_name: str, seq_len: int) -> int:
    """Per-device batch from Table 5: the entry for the smallest tabulated length >= seq_len."""
    rows = table.get(task, {}).get(model_name)
    if not rows:
        raise StudyError(f"batch_size=paper has no Table 5 entry for model={model_name} on a {task} task; give batch_size=<n> or auto")
    lengths = sorted(int(k) for k in rows)
    fitting = [n for n in lengths if n >= seq_len]
    if not fitting:
        raise StudyError(f"batch_size=paper tabulates model={model_name} up to seq_len={lengths[-1]}, not {seq_len}; give batch_size=<n> or auto")
    total = int(rows[fitting[0]])
    return max(1, total // int(table["per_device_divisor"][task]))


def _fits(model, batch_size: int, seq_len: int, target_len: int, device, precision: str, global_first: bool) -> bool:
    """One forward, backward and AdamW step at full length: the memory a training step really needs."""
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
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            loss = model(**kwargs).loss
        loss.backward()
        opt.step()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        opt.zero_grad(set_to_none=True)
        del opt
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def find_max_batch_size(model, seq_len: int, target_len: int, precision: str, global_first: bool, limit: int = 1024) -> int:
    """Largest batch whose full-length training step fits on the current GPU: doubling, then bisection."""
    if not torch.cuda.is_available():
        raise StudyError("batch_size=auto searches GPU memory and no GPU is visible; give batch_size=<n>")
    device = torch.device("cuda", torch.cuda.current_device())
    model.to(device).train()
    good, bad = 0, None
    size = 1
    while size <= limit and _fits(model, size, seq_len, target_len, device, precision, global_first):
        good, size = size, size * 2
    bad = size if size <= limit else None
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if _fits(model, mid, seq_len, target_len, device, precision, global_first) else (good, mid)
    if good == 0:
        raise StudyError(f"batch_size=auto: not even one sample of seq_len={seq_len} fits on this GPU")
    model.to("cpu")
    torch.cuda.empty_cache()
    log.info("batch_size=auto: %d fits at seq_len=%d", good, seq_len)
    return good


def resolve_batch_size(value, table: dict, task: str, spec, seq_len: int, model=None, target_len: int = 128, precision: str = "32-true") -> tuple[int, str]:
    """(per-device batch size, how it was chosen)."""
    if value == "paper":
        return paper_batch_size(table, task, spec.name, seq_len), "paper"
    if value == "auto":
        return find_max_batch_size(model, seq_len, target_len, precision, spec.global_attention_on_first_token), "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0 or str(n) != str(value).strip():
        raise StudyError(f"batch_size={value} must be a positive whole number, paper or auto")
    return n, "given"
