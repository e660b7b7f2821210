"""Fine-tune one model on one SCROLLS task with inputs truncated to seq_len tokens (the paper's Section 3.4),
and record its accuracy and cost in the run directory's metrics.json.

    python train.py model=led_base data=gov_report seq_len=2048
    python train.py -m model=led_base,led_large seq_len=1024,2048,3072,4096
"""

from __future__ import annotations

import logging
import sys

import study.env  # noqa: F401  (process settings before torch is imported)

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from callbacks import collect_costs
from lightning_modules.batch_size import resolve_batch_size
from lightning_modules.models import count_parameters, save_architecture
from lightning_modules.trainer import best_checkpoint_callback, build_trainer
from study import ddp, record
from study.run import build, exit_unless_multirun, is_rank_zero, register_resolvers, run_job

log = logging.getLogger("train")


def train(cfg: DictConfig, run_dir) -> str:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    # the model, at the input length under study
    spec = build(cfg.model)
    seq_len = spec.check_seq_len(cfg.seq_len)
    model, tokenizer = spec.load(seed=cfg.seed)
    encoder_attention = spec.prepare_for_length(model, seq_len)
    batch_size, batch_source = resolve_batch_size(
        cfg.batch_size, cfg.paper_batch_sizes, cfg.data.task, spec, seq_len, model, cfg.data.max_target_len, cfg.trainer.precision
    )

    # the data, truncated to seq_len; BigBird always sees full-length inputs
    data = build(
        cfg.data,
        tokenizer=tokenizer,
        seq_len=seq_len,
        batch_size=batch_size,
        seed=cfg.seed,
        pad_to_seq_len=cfg.data.pad_to_seq_len or spec.needs_full_length_inputs,
    )
    module = build(
        cfg.module, model=model, tokenizer=tokenizer, task=data.task,
        global_attention_on_first_token=spec.global_attention_on_first_token,
    )
    trainer = build_trainer(cfg, run_dir)
    world = trainer.world_size
    if is_rank_zero():
        save_architecture(model, tokenizer, run_dir)  # infer.py rebuilds the model from it, no hub needed
    note(
        run_dir,
        model=spec.name, family=spec.family, parameters=count_parameters(model), pretrained=spec.pretrained,
        attn_impl=spec.attn_impl, data=cfg.data.name, task=data.task, metric=module.metric,
        seq_len=seq_len, encoder_attention=encoder_attention,
        batch_size=batch_size, batch_size_source=batch_source,
        accumulate_grad_batches=trainer.accumulate_grad_batches, world_size=world,
        effective_batch_size=batch_size * trainer.accumulate_grad_batches * world,
        strategy=cfg.strategy.name, devices=trainer.num_devices, num_nodes=trainer.num_nodes,
        precision=str(trainer.precision), seed=cfg.seed,
    )

    # fine-tune with validation by generation, early stopping and best-checkpoint saving
    trainer.fit(module, datamodule=data, ckpt_path=cfg.ckpt_path)

    best = module.best or {}
    checkpoint = best_checkpoint_callback(trainer)
    costs, extra = collect_costs(trainer)  # energy, speed, utilisation: every rank takes part, rank 0 writes
    note(
        run_dir, costs=costs, **extra,
        **{k: best.get(k) for k in ("rouge1", "rouge2", "rougeL", "rgm", "f1") if k in best},
        best_step=best.get("step"), n_scored=best.get("n_scored"),
        global_step=trainer.global_step, samples_seen=module.samples_seen * world,
        epochs=round(module.samples_seen * world / len(data.train_examples), 3),
        stopped_early=stopped_early(trainer),
        best_checkpoint=checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None,
    )
    log.info("%s: %s=%s at step %s -> %s", spec.name, module.metric, _fmt(best.get(module.metric)), best.get("step"), run_dir)
    return "interrupted" if trainer.interrupted else "ok"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def stopped_early(trainer) -> bool:
    es = trainer.early_stopping_callback
    return bool(es is not None and es.wait_count >= es.patience)


def note(run_dir, **fields) -> None:
    """Only global rank zero writes the run's record."""
    if is_rank_zero():
        record.update(run_dir, **fields)


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with ddp.job_scope():
        code = run_job(cfg, "train", train)
    exit_unless_multirun(code)


if __name__ == "__main__":
    from study.run import main_guard

    main_guard(sys.argv[1:])
    register_resolvers()
    main()
