"""Evaluate a model on the validation split by generating (batch 16, as in the paper), score it with the SCROLLS
metric, and record accuracy and inference speed; or score an existing predictions file without any model.

    python infer.py run_dir=outputs/runs/adhoc/<run>          # a train run's best checkpoint
    python infer.py run_dir=outputs/sweeps/<name>             # every finished train run of a multirun
    python infer.py data=qasper data.path=<folder> predictions=preds.jsonl
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import study.env  # noqa: F401  (process settings before torch is imported)

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from data.scrolls import group_references, load_rows, parse_jsonl
from lightning_modules.metrics import TASK_METRIC, score
from lightning_modules.models import count_parameters, load_trained
from lightning_modules.seq2seq import Seq2SeqModule
from lightning_modules.trainer import strategy as lightning_strategy
from study import ddp, record
from study.outcome import RecordOutcome
from study.errors import StudyError
from study.run import build, exit_unless_multirun, finished, guarded, register_resolvers, run_job


log = logging.getLogger("study")


# ---- scoring a predictions file ------------------------------------------------------------------------------
def score_predictions(cfg: DictConfig, out_dir: Path) -> None:
    path = Path(cfg.predictions).expanduser()
    if not path.exists():
        raise StudyError(f"predictions={cfg.predictions} does not exist")
    with open(path, encoding="utf-8") as f:
        rows = parse_jsonl(f, str(path), required=("id", "prediction"))
    predictions = {str(r["id"]): str(r["prediction"]) for r in rows}
    references = {
        i: e["references"]
        for i, e in group_references(
            load_rows(cfg.data.source, cfg.data.name, cfg.data.task, "validation", cfg.data.path, cfg.data.hub_url, cfg.data.synthetic, cfg.data.cache_dir)
        ).items()
    }
    unknown = sorted(set(predictions) - set(references))
    if unknown:
        raise StudyError(f"predictions={cfg.predictions} has {len(unknown)} ids not in the validation split, e.g. '{unknown[0]}'")
    scores = score(cfg.data.task, predictions, references)
    record.update(
        out_dir, kind="score", data=cfg.data.name, task=cfg.data.task, metric=TASK_METRIC[cfg.data.task],
        predictions_file=str(path.resolve()), n_scored=len(references), n_missing=len(set(references) - set(predictions)), **scores,
    )
    print(json.dumps({k: round(v, 4) for k, v in scores.items()}))


# ---- generating and scoring ----------------------------------------------------------------------------------
def evaluate(cfg: DictConfig, out_dir: Path, spec, model, tokenizer, seq_len: int, data_cfg, generation, identity: dict) -> None:
    data = build(
        data_cfg, tokenizer=tokenizer, seq_len=seq_len, batch_size=1, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed,
        pad_to_seq_len=data_cfg.pad_to_seq_len or spec.needs_full_length_inputs,
    )
    data.setup("validate")  # tokenizing is not inference: keep it out of the timed pass
    encoder_attention = spec.prepare_for_length(model, seq_len)
    module = Seq2SeqModule(
        model, tokenizer, data.task, spec.global_attention_on_first_token, spec.attn_impl,
        generation=OmegaConf.to_container(generation, resolve=True), pegasus_newlines=spec.pegasus_newlines,
    )
    identity = dict(
        identity, kind="infer", seq_len=seq_len, data=data_cfg.name, task=data.task, encoder_attention=encoder_attention,
        eval_batch_size=cfg.eval_batch_size, strategy=cfg.strategy.name,
    )
    measure = [build(c, output_dir=str(out_dir)) if "output_dir" in c else build(c) for c in cfg.callbacks.values() if c is not None]
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        precision=cfg.trainer.precision, strategy=lightning_strategy(cfg), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[*measure, RecordOutcome(out_dir, identity)],
    )
    # generation, scoring, predictions.jsonl and metrics.json: RecordOutcome writes them from inside the run
    trainer.validate(module, datamodule=data, verbose=False)


def _given(key: str) -> bool:
    """Whether the command line set this key (the run's own setting applies otherwise)."""
    from hydra.core.hydra_config import HydraConfig

    return any(o.split("=", 1)[0].lstrip("+~") == key for o in HydraConfig.get().overrides.task)


def evaluate_run(cfg: DictConfig, run: Path, out_dir: Path) -> None:
    """A train run's checkpoint, with the run's own model, data, seq_len and precision."""
    train_cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    train_cfg.paths = cfg.paths
    if not _given("strategy"):  # evaluate where and how the run trained, unless told otherwise
        cfg = OmegaConf.merge(cfg, {"strategy": train_cfg.strategy})
        for key in ("accelerator", "devices", "num_nodes", "precision"):
            if not _given(f"trainer.{key}"):
                cfg.trainer[key] = train_cfg.trainer[key]
    spec = build(train_cfg.model)
    model, tokenizer = load_trained(spec, run, cfg.checkpoint)
    identity = dict(
        model=spec.name, family=spec.family, parameters=count_parameters(model), attn_impl=spec.attn_impl,
        pretrained=spec.pretrained, train_run=str(run.resolve()), checkpoint=cfg.checkpoint,
    )
    evaluate(cfg, out_dir, spec, model, tokenizer, int(train_cfg.seq_len), train_cfg.data, train_cfg.module.generation, identity)


def train_runs(directory: Path) -> list[Path]:
    """The train runs at or under a directory that finished (status ok)."""
    if (directory / record.FILENAME).exists():
        return [directory]
    runs = []
    for path in sorted(directory.rglob(record.FILENAME)):
        try:
            rec = record.read(path.parent)
        except (OSError, ValueError):
            continue
        if rec["kind"] == "train" and rec["status"] == "ok":
            runs.append(path.parent)
    return runs


def infer(cfg: DictConfig, out_dir: Path) -> None:
    if cfg.predictions:
        return score_predictions(cfg, out_dir)
    if cfg.run_dir:
        directory = Path(cfg.run_dir).expanduser()
        if not directory.is_dir():
            raise StudyError(f"run_dir={cfg.run_dir} is not a directory")
        runs = train_runs(directory)
        if not runs:
            raise StudyError(f"run_dir={cfg.run_dir} holds no finished train run")
        if runs == [directory]:
            return evaluate_run(cfg, directory, out_dir)
        failures = 0
        for run in runs:  # a multirun directory: each run evaluated into its own <run>/infer, failures contained
            target = run / "infer"
            if finished(target):
                if not cfg.overwrite:  # never put a finished evaluation at risk by accident
                    log.info("skip: %s already holds a finished evaluation (overwrite=true re-evaluates)", target)
                    continue
                (target / record.FILENAME).unlink()  # asked to redo: no stale figures under the new status
            target.mkdir(exist_ok=True)
            failures += guarded(target, "infer", lambda d, run=run: evaluate_run(cfg, run, d)) != 0
        if failures:
            raise StudyError(f"{failures} of {len(runs)} runs under {cfg.run_dir} failed to evaluate; see their infer/metrics.json")
        return None
    spec = build(cfg.model)
    seq_len = spec.check_seq_len(cfg.seq_len)
    pl.seed_everything(cfg.seed, verbose=False)
    model, tokenizer = spec.load(seed=cfg.seed)
    identity = dict(model=spec.name, family=spec.family, parameters=count_parameters(model), attn_impl=spec.attn_impl, pretrained=spec.pretrained)
    evaluate(cfg, out_dir, spec, model, tokenizer, seq_len, cfg.data, cfg.generation, identity)


@hydra.main(config_path="conf", config_name="infer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sweep = cfg.run_dir and not (Path(cfg.run_dir) / record.FILENAME).exists() and not cfg.predictions
    with ddp.job_scope():
        code = run_job(cfg, "infer", infer, own_record=not sweep)
    exit_unless_multirun(code)


if __name__ == "__main__":
    from study.run import main_guard

    main_guard(sys.argv[1:])
    register_resolvers()
    main()
