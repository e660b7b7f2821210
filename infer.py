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
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from data.scrolls import group_references, load_rows, parse_jsonl
from lightning_modules.metrics import TASK_METRIC, score
from lightning_modules.models import checkpoint_path, count_parameters, load_trained
from lightning_modules.trainer import strategy as lightning_strategy
from study import checks, ddp, record
from study.fingerprint import changed, fingerprint
from study.outcome import RecordOutcome
from study.errors import StudyError
from study.run import build, exit_unless_multirun, finished, guarded, register_resolvers, run_job


log = logging.getLogger("study")


# ---- scoring a predictions file ------------------------------------------------------------------------------
def score_predictions(cfg: DictConfig, out_dir: Path) -> None:
    """As strict as the official SCROLLS scorer: one string prediction for every id that has references, no other ids."""
    path = Path(cfg.predictions).expanduser()
    if not path.exists():
        raise StudyError(f"predictions={cfg.predictions} does not exist")
    with open(path, "rb") as f:  # bytes: a line that is not UTF-8 is named
        rows = parse_jsonl(f, str(path), required=("id", "prediction"), strings=("prediction",))
    if not rows:
        raise StudyError(f"predictions={cfg.predictions} is empty; it needs one {{id, prediction}} row per validation id")
    predictions = {}
    for r in rows:
        if str(r["id"]) in predictions:
            raise StudyError(f"predictions={cfg.predictions} names id '{r['id']}' more than once")
        predictions[str(r["id"])] = r["prediction"]
    references = {
        i: e["references"]
        for i, e in group_references(
            load_rows(cfg.data.source, cfg.data.name, cfg.data.task, "validation", cfg.data.path, cfg.data.hub_url, cfg.data.synthetic, cfg.data.cache_dir)
        ).items()
        if e["references"]
    }
    missing, unknown = sorted(set(references) - set(predictions)), sorted(set(predictions) - set(references))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of its {len(references)} reference ids have no prediction ({_some(missing)})")
        if unknown:
            problems.append(f"{len(unknown)} predicted ids have no reference ({_some(unknown)})")
        raise StudyError(
            f"predictions={cfg.predictions} does not match the validation split of data={cfg.data.name}: {' and '.join(problems)}"
        )
    scores = score(cfg.data.task, predictions, references)
    record.update(
        out_dir, kind="score", data=cfg.data.name, task=cfg.data.task, metric=TASK_METRIC[cfg.data.task],
        predictions_file=str(path.resolve()), n_scored=len(references), **scores,
    )
    print(json.dumps({k: round(v, 4) for k, v in scores.items()}))


def _some(ids: list[str], n: int = 3) -> str:
    return "e.g. " + ", ".join(f"'{i}'" for i in ids[:n]) + (", ..." if len(ids) > n else "")


# ---- generating and scoring ----------------------------------------------------------------------------------
def evaluate(cfg: DictConfig, out_dir: Path, spec, model, tokenizer, seq_len: int, data_cfg, generation, identity: dict,
             global_attention: str = "first_token") -> None:
    data = build(
        data_cfg, tokenizer=tokenizer, seq_len=seq_len, batch_size=1, eval_batch_size=cfg.eval_batch_size, seed=cfg.seed,
        pad_to_seq_len=data_cfg.pad_to_seq_len or spec.needs_full_length_inputs, **spec.fam.data_kwargs(),
    )
    data.setup("validate")  # tokenizing is not inference: keep it out of the timed pass
    encoder_attention = spec.prepare_for_length(model, seq_len)
    module = get_class(spec.fam.lightning_module)(  # the family's kind of module (Seq2SeqModule for seq2seq)
        model, tokenizer, data.task, attn_impl=spec.attn_impl, family=spec.family, global_attention=global_attention,
        generation=OmegaConf.to_container(generation, resolve=True),
    )
    identity = dict(
        identity, kind="infer", seq_len=seq_len, data=data_cfg.name, task=data.task, encoder_attention=encoder_attention,
        eval_batch_size=cfg.eval_batch_size, strategy=cfg.strategy.name,
    )
    measure = [build(c, output_dir=str(out_dir)) if "output_dir" in c else build(c) for c in cfg.callbacks.values() if c is not None]
    trainer = build(  # the shared Trainer group (conf/trainer/); its training keys do not act in validate()
        cfg.trainer, strategy=lightning_strategy(cfg), logger=False, enable_checkpointing=False,
        callbacks=[*measure, RecordOutcome(out_dir, identity)],
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
        for key in ("accelerator", "devices", "num_nodes"):
            if not _given(f"trainer.{key}"):
                cfg.trainer[key] = train_cfg.trainer[key]
    if _given("impl"):  # the implementation asked for: attention, compile and CUDA graphs with its precision
        train_cfg.model = OmegaConf.merge(train_cfg.model, {k: cfg.model[k] for k in ("attn_impl", "compile", "cuda_graph", "residual_dtype")
                                                          if k in cfg.model})
    elif not _given("trainer.precision"):  # the run's own precision (trainer.precision, its one key)
        cfg.trainer.precision = train_cfg.trainer.precision
    spec = build(train_cfg.model)
    scored = fingerprint(checkpoint_path(run, cfg.checkpoint))  # before loading: a file rewritten meanwhile reads as changed
    model, tokenizer = load_trained(spec, run, scored["checkpoint_file"])
    identity = dict(
        model=spec.name, family=spec.family, parameters=count_parameters(model), attn_impl=spec.attn_impl,
        pretrained=spec.pretrained, train_run=str(run.resolve()), checkpoint=cfg.checkpoint, **scored,
    )
    evaluate(cfg, out_dir, spec, model, tokenizer, int(train_cfg.seq_len), train_cfg.data, train_cfg.module.generation, identity,
             train_cfg.module.get("global_attention", "first_token"))


def train_runs(directory: Path, allow_unfinished: bool = False) -> list[Path]:
    """The train runs at or under a directory that finished (status ok), or every train run with allow_unfinished."""
    if (directory / record.FILENAME).exists():
        return [directory]
    runs, unfinished = [], 0
    for path in sorted(directory.rglob(record.FILENAME)):
        try:
            rec = record.read(path.parent)
        except (OSError, ValueError):
            continue
        if rec["kind"] == "train" and (rec["status"] == "ok" or allow_unfinished):
            runs.append(path.parent)
        elif rec["kind"] == "train":
            unfinished += 1
    if unfinished:
        log.info("skip: %d train runs under %s are not ok (allow_unfinished=true evaluates them)", unfinished, directory)
    return runs


def check_run_dir(run_dir: str, allow_unfinished: bool) -> Path:
    """An existing directory; a single train run in it must have finished (status ok) unless allow_unfinished."""
    directory = Path(run_dir).expanduser()
    if not directory.is_dir():
        raise StudyError(f"run_dir={run_dir} is not a directory")
    if (directory / record.FILENAME).exists() and not allow_unfinished:
        try:
            rec = record.read(directory)
        except (OSError, ValueError) as e:
            raise StudyError(f"run_dir={run_dir}: its {record.FILENAME} cannot be read ({e})") from None
        if rec["status"] != "ok":
            raise StudyError(
                f"run_dir={run_dir} is a run with status '{rec['status']}', not ok; allow_unfinished=true evaluates its checkpoint anyway"
            )
    return directory


def preflight(argv: list[str]) -> None:
    """The run_dir checks, before Hydra runs: Hydra creates <run_dir>/infer (and .hydra/ in it) before infer() is
    called, so a run_dir that does not exist would be created, and a refused run would get an infer/ directory."""
    if "-m" in argv or "--multirun" in argv:
        return  # a multirun writes into its own sweep directory
    given = dict(a.lstrip("+").split("=", 1) for a in argv if "=" in a and not a.startswith(("~", "-")))
    value = given.get("run_dir", "").strip("'\"")
    if value in ("", "null"):
        return
    try:
        check_run_dir(value, given.get("allow_unfinished", "false").lower() == "true")
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def infer(cfg: DictConfig, out_dir: Path) -> None:
    checks.check(cfg)  # every bad value is one line naming its key, before anything is built
    if cfg.predictions:
        return score_predictions(cfg, out_dir)
    if cfg.run_dir:
        directory = check_run_dir(cfg.run_dir, cfg.allow_unfinished)
        runs = train_runs(directory, cfg.allow_unfinished)
        if not runs:
            raise StudyError(f"run_dir={cfg.run_dir} holds no finished train run (allow_unfinished=true takes unfinished ones too)")
        if runs == [directory]:
            return evaluate_run(cfg, directory, out_dir)
        failures = 0
        for run in runs:  # a multirun directory: each run evaluated into its own <run>/infer, failures contained
            target = run / "infer"
            if not finished(run) and not _checkpoint(run, cfg.checkpoint):
                log.info("skip: %s is not ok and has no %s checkpoint", run, cfg.checkpoint)
                continue
            if finished(target):
                stale = _stale(target, run, cfg.checkpoint)
                if not cfg.overwrite and not stale:  # never put a finished evaluation at risk by accident
                    log.info("skip: %s already holds a finished evaluation (overwrite=true re-evaluates)", target)
                    continue
                if stale:
                    log.info("re-evaluate: %s scored another checkpoint than %s's %s checkpoint now", target, run, cfg.checkpoint)
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


def _checkpoint(run: Path, checkpoint: str) -> Path | None:
    try:
        return checkpoint_path(run, checkpoint)
    except StudyError:
        return None


def _stale(evaluation: Path, run: Path, checkpoint: str) -> bool:
    """A finished evaluation that scored another checkpoint file than the run's current one. One whose checkpoint
    has since gone stays true of what it scored, and cannot be redone anyway."""
    ckpt = _checkpoint(run, checkpoint)
    return ckpt is not None and changed(record.read(evaluation), ckpt)


@hydra.main(config_path="conf", config_name="infer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sweep = cfg.run_dir and not (Path(cfg.run_dir) / record.FILENAME).exists() and not cfg.predictions
    with ddp.job_scope():
        code = run_job(cfg, "infer", infer, own_record=not sweep)
    exit_unless_multirun(code)


if __name__ == "__main__":
    from study.run import main_guard

    main_guard(sys.argv[1:])
    preflight(sys.argv[1:])
    register_resolvers()
    main()
