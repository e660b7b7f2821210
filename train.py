"""Fine-tune one model on one SCROLLS task with inputs truncated to seq_len tokens (the paper's Section 3.4),
and record its accuracy and cost in the run directory's metrics.json.

    python train.py model=led_base data=gov_report seq_len=2048
    python train.py -m model=led_base,led_large seq_len=1024,2048,3072,4096
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import study.env  # noqa: F401  (process settings before torch is imported)

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from lightning_modules.batch_size import PROBE_CACHE, Validation, hold_to_memory_cap, resolve_batch_size
from lightning_modules.models import count_parameters, save_architecture
from lightning_modules.trainer import build_trainer
from study import checks, ddp, provenance, record, signals
from study.outcome import RecordOutcome
from study.run import build, exit_unless_multirun, is_rank_zero, register_resolvers, run_job


def train(cfg: DictConfig, run_dir) -> str:
    checks.check(cfg)  # every bad value is one line naming its key, before anything is built
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    # the model, at the input length under study
    spec = build(cfg.model)
    seq_len = spec.check_seq_len(cfg.seq_len)
    model, tokenizer = spec.load(seed=cfg.seed, device=build_device(cfg))
    encoder_attention = spec.prepare_for_length(model, seq_len)
    batch_size, batch_source, batch_record = resolve_batch_size(
        cfg.batch_size, cfg.paper_batch_sizes, cfg.data.task, spec, seq_len, model, cfg.data.max_target_len, cfg.trainer.precision,
        devices=data_parallel_devices(cfg), accumulate=int(cfg.trainer.accumulate_grad_batches), strategy=cfg.strategy.name,
        memory_gib=cfg.get("batch_size_memory_gib"), probe_cache=Path(cfg.paths.cache_dir) / PROBE_CACHE,
        validation=Validation(int(cfg.data.eval_batch_size), int(cfg.module.generation.max_new_tokens),
                              int(cfg.module.generation.get("num_beams", 1)), spec.attn_impl == "fast"),
    )
    # a batch sized to the paper's 48 GB card trains as on one: the process may not allocate past the cap
    held = hold_to_memory_cap(cfg.get("batch_size_memory_gib") if batch_source == "auto" else None)

    # the data, truncated to seq_len; BigBird always sees full-length inputs
    data = build(
        cfg.data,
        tokenizer=tokenizer,
        seq_len=seq_len,
        batch_size=batch_size,
        seed=cfg.seed,
        pad_to_seq_len=cfg.data.pad_to_seq_len or spec.needs_full_length_inputs,
        **spec.fam.data_kwargs(),
    )
    module = build(cfg.module, _target_=spec.fam.lightning_module, model=model, tokenizer=tokenizer, task=data.task, family=spec.family)
    identity = dict(
        model=spec.name, family=spec.family, parameters=count_parameters(model), pretrained=spec.pretrained, weights=spec.weights,
        attn_impl=spec.attn_impl, data=cfg.data.name, task=data.task, metric=module.metric,
        seq_len=seq_len, encoder_attention=encoder_attention, batch_size=batch_size, batch_size_source=batch_source,
        strategy=cfg.strategy.name, seed=cfg.seed, memory_held=None if held is None else held < 1.0, **batch_record,
    )
    trainer = build_trainer(cfg, run_dir, extra_callbacks=[RecordOutcome(run_dir, identity)])
    if is_rank_zero():
        save_architecture(model, tokenizer, run_dir)  # infer.py rebuilds the model from it, no hub needed
        record.update(
            run_dir, **identity, devices=trainer.num_devices, num_nodes=trainer.num_nodes, world_size=trainer.world_size,
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            effective_batch_size=batch_size * trainer.accumulate_grad_batches * trainer.world_size,
            precision=str(trainer.precision), provenance=provenance.for_trainer(trainer),
        )

    # fine-tune with validation by generation, early stopping and best-checkpoint saving;
    # the outcome (scores, costs) is written by RecordOutcome from inside the run
    # a signal saves the training state and ends the run `interrupted` (study/signals.py)
    signals.fit(trainer, module, datamodule=data, ckpt_path=cfg.ckpt_path)
    return "ok"


def data_parallel_devices(cfg) -> int:
    """Devices over all nodes that each take a share of the batch (`devices` may be a list of ids)."""
    devices = cfg.trainer.devices
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        n = len(devices)
    elif str(devices) in ("auto", "-1"):
        n = torch.cuda.device_count() if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else 1
    else:
        n = int(devices)
    return max(1, n) * int(cfg.trainer.num_nodes)


def build_device(cfg) -> str:
    """Random weights are drawn where they will train: this rank's GPU, if the run uses GPUs
    (ddp_spawn pickles the model to its workers, so it starts on the CPU)."""
    if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available() and cfg.strategy.backend != "ddp_spawn":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> tuple[float, float] | None:
    with ddp.job_scope():
        code = run_job(cfg, "train", train)
    exit_unless_multirun(code)
    # (metric, training kWh) for a sweeper such as Optuna's (experiment=search_budget); None if the run failed
    from study.run import run_dir

    return record.objectives(run_dir()) if code == 0 else None


if __name__ == "__main__":
    from study.run import main_guard, sweep_exit_code

    main_guard(sys.argv[1:])
    register_resolvers()
    main()
    sys.exit(sweep_exit_code())  # a multirun in which some job failed exits 1
