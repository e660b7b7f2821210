"""What measuring costs, and what Lightning costs: the same model, batches and optimizer, timed three ways in one
process — a bare PyTorch loop, train.py's Lightning Trainer without the measuring callbacks, and with them.

    python benchmarks/bench_callbacks.py experiment=smoke steps=30                 # CPU
    python benchmarks/bench_callbacks.py model=led_base model.pretrained=false strategy=single_gpu seq_len=1024 steps=40

Prints a table of median step time and samples/s; each step's time is taken at the end of the step with the GPU
synchronised, in all three variants.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import study.env  # noqa: F401,E402

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402
from pytorch_lightning import Callback  # noqa: E402

from callbacks import EnergyCallback, SpeedCallback, UtilizationCallback  # noqa: E402
from lightning_modules.batch_size import resolve_batch_size  # noqa: E402
from lightning_modules.seq2seq import first_token_global  # noqa: E402
from lightning_modules.trainer import build_trainer  # noqa: E402
from study.run import CONF_DIR, build, register_resolvers  # noqa: E402

MEASURING = (EnergyCallback, SpeedCallback, UtilizationCallback)


class StepTimer(Callback):
    def __init__(self):
        self.times = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.times.append(time.perf_counter())


def steady(times: list[float], warmup: int) -> list[float]:
    return [b - a for a, b in zip(times[warmup - 1 :], times[warmup:])]


def main(argv: list[str]) -> None:
    steps = int(next((a.split("=", 1)[1] for a in argv if a.startswith("steps=")), 30))
    warmup = int(next((a.split("=", 1)[1] for a in argv if a.startswith("warmup=")), 5))
    overrides = [a for a in argv if not a.startswith(("steps=", "warmup="))]
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    # no Hydra run here: the callbacks' ${hydra:runtime.output_dir} becomes a scratch directory
    OmegaConf.register_new_resolver("hydra", lambda key: tempfile.mkdtemp(prefix="bench_"), replace=True)
    with open_dict(cfg):
        cfg.trainer.max_steps = steps
        cfg.data.val_every_steps = 10 * steps  # no validation: step time only
        cfg.callbacks.best_checkpoint = cfg.callbacks.last_checkpoint = cfg.callbacks.early_stopping = None
    device = torch.device("cuda" if cfg.strategy.accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    spec = build(cfg.model)
    model, tok = spec.load(seed=cfg.seed, device=device)
    spec.prepare_for_length(model, cfg.seq_len)
    bs, _ = resolve_batch_size(cfg.batch_size, cfg.paper_batch_sizes, cfg.data.task, spec, cfg.seq_len)
    data = build(cfg.data, tokenizer=tok, seq_len=cfg.seq_len, batch_size=bs, seed=cfg.seed,
                 pad_to_seq_len=cfg.data.pad_to_seq_len or spec.needs_full_length_inputs)
    data.setup("fit")
    rows = []

    # 1. bare loop: the same optimizer groups, schedule and clipping as the Lightning module
    module = build(cfg.module, model=model, tokenizer=tok, task=data.task, global_attention_on_first_token=spec.global_attention_on_first_token)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.module.lr, betas=tuple(cfg.module.betas), eps=cfg.module.eps, fused=bool(cfg.module.fused_optimizer) or None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=str(cfg.trainer.precision).startswith("bf16"))
    model.train()
    times, it = [], iter(data.train_dataloader())
    for _ in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(data.train_dataloader())
            batch = next(it)
        batch = {k: v.to(device) for k, v in batch.items()}
        if spec.global_attention_on_first_token:
            batch["global_attention_mask"] = first_token_global(batch["input_ids"])
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    rows.append(("bare PyTorch loop", steady(times, warmup)))
    del opt

    # 2./3. train.py's Trainer, without and with the measuring callbacks
    for label, keep in (("Lightning, no measuring callbacks", False), ("Lightning + energy/speed/utilization", True)):
        with tempfile.TemporaryDirectory() as run_dir:
            timer = StepTimer()
            trainer = build_trainer(cfg, Path(run_dir), extra_callbacks=[timer])
            if not keep:
                trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, MEASURING)]
            trainer.fit(module, datamodule=data)
            rows.append((label, steady(timer.times, warmup)))

    base = statistics.median(rows[0][1])
    nocb = statistics.median(rows[1][1])
    print(f"\n{spec.name} seq_len={cfg.seq_len} batch={bs} precision={cfg.trainer.precision} device={torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; median over steps {warmup + 1}..{steps}")
    print(f"{'variant':40s} {'median step s':>14s} {'samples/s':>10s} {'vs bare':>8s} {'vs no callbacks':>16s}")
    out = []
    for label, dts in rows:
        med = statistics.median(dts)
        print(f"{label:40s} {med:14.4f} {bs / med:10.2f} {100 * (med / base - 1):+7.1f}% {100 * (med / nocb - 1):+15.1f}%")
        out.append({"variant": label, "median_step_s": med, "samples_per_s": bs / med, "steps": len(dts)})
    print(json.dumps({"model": spec.name, "seq_len": cfg.seq_len, "batch_size": bs, "rows": out}))


if __name__ == "__main__":
    main(sys.argv[1:])
