"""A bare PyTorch training loop: the yardstick for train.py's measured training samples/s.

Same model (built as train.py builds it), same batches (the same datamodule, seq_len, batch size), the same
optimizer, schedule and gradient clipping, but no Lightning, no callbacks, no validation. Prints samples/s over
all steps (as train.py counts them, first step included) and over the steps after a warm-up.

    python benchmarks/bare_loop.py model=led_base model.pretrained=false seq_len=1024 batch_size=paper steps=100
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import study.env  # noqa: F401,E402

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from lightning_modules.batch_size import resolve_batch_size  # noqa: E402
from lightning_modules.seq2seq import first_token_global  # noqa: E402
from study.run import CONF_DIR, build, register_resolvers  # noqa: E402
from train import data_parallel_devices  # noqa: E402


def split_args(argv: list[str], defaults: dict) -> tuple[dict, list[str]]:
    """name=value pairs this script reads itself (e.g. steps=40), and the Hydra overrides for the rest."""
    own = {k: type(v)(next((a.split("=", 1)[1] for a in argv if a.startswith(f"{k}=")), v)) for k, v in defaults.items()}
    return own, [a for a in argv if a.split("=", 1)[0] not in defaults]


def prepare(overrides: list[str]) -> SimpleNamespace:
    """train.py's model, tokenizer and batches for these overrides, built on the run's device."""
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.strategy.accelerator != "cpu" else "cpu")
    spec = build(cfg.model)
    model, tokenizer = spec.load(seed=cfg.seed, device=device)
    spec.prepare_for_length(model, cfg.seq_len)
    batch_size, _, _ = resolve_batch_size(  # train.py's per-device batch for the same strategy
        cfg.batch_size, cfg.paper_batch_sizes, cfg.data.task, spec, cfg.seq_len,
        devices=data_parallel_devices(cfg), accumulate=int(cfg.trainer.accumulate_grad_batches), strategy=cfg.strategy.name,
    )
    data = build(cfg.data, tokenizer=tokenizer, seq_len=cfg.seq_len, batch_size=batch_size, seed=cfg.seed,
                 pad_to_seq_len=cfg.data.pad_to_seq_len or spec.needs_full_length_inputs)
    data.setup("fit")
    return SimpleNamespace(cfg=cfg, device=device, spec=spec, model=model, tokenizer=tokenizer, data=data, batch_size=batch_size)


def run_steps(s: SimpleNamespace, steps: int) -> tuple[float, list[float]]:
    """`steps` optimizer steps (AdamW with train.py's settings, clipping at 1.0, linear warm-up), each ended
    with the GPU synchronised; returns the start time and each step's end time."""
    cfg, device, model = s.cfg, s.device, s.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.module.lr, betas=tuple(cfg.module.betas), eps=cfg.module.eps,
                            weight_decay=cfg.module.weight_decay, fused=bool(cfg.module.fused_optimizer) or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(1, int(0.1 * steps))))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=str(cfg.trainer.precision).startswith("bf16"))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    sync()
    start = time.perf_counter()
    while len(times) < steps:
        for batch in s.data.train_dataloader():
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if s.spec.global_attention_on_first_token:
                batch["global_attention_mask"] = first_token_global(batch["input_ids"])
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            sync()
            times.append(time.perf_counter())
            if len(times) == steps:
                break
    return start, times


def main(argv: list[str]) -> dict:
    own, overrides = split_args(argv, {"steps": 100, "warmup": 5})
    steps, warmup = own["steps"], own["warmup"]
    s = prepare(overrides)
    start, times = run_steps(s, steps)
    out = {
        "model": s.spec.name, "seq_len": s.cfg.seq_len, "batch_size": s.batch_size, "steps": steps, "attn_impl": s.spec.attn_impl,
        "precision": str(s.cfg.trainer.precision), "device": torch.cuda.get_device_name() if s.device.type == "cuda" else "cpu",
        "samples_per_s_all_steps": steps * s.batch_size / (times[-1] - start),
        "samples_per_s_after_warmup": (steps - warmup) * s.batch_size / (times[-1] - times[warmup - 1]),
        "first_step_s": times[0] - start,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
