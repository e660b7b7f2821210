"""Writing a run's outcome into metrics.json from inside the run, on global rank zero.

Written from a callback rather than after `trainer.fit` returns, because under `ddp_spawn` the model, its scores
and the measuring callbacks live in the worker processes, not in the process that called fit. Runs after the
measuring callbacks (which finish in the same hooks), so their figures are complete.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pytorch_lightning import Callback

from callbacks import collect_costs
from study import provenance, record

log = logging.getLogger("study")
SCORES = ("rouge1", "rouge2", "rougeL", "rgm", "f1")


def _best_checkpoint(trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if cb.monitor is not None and cb.best_model_path:
            return cb.best_model_path
    return None


def _stopped_early(trainer) -> bool:
    es = trainer.early_stopping_callback
    return bool(es is not None and es.wait_count >= es.patience)


class RecordOutcome(Callback):
    def __init__(self, run_dir: str | Path, identity: dict | None = None):
        self.run_dir = Path(run_dir)
        self.identity = identity or {}

    def on_fit_end(self, trainer, pl_module):
        costs, extra = collect_costs(trainer)
        if not trainer.is_global_zero:
            return
        best = pl_module.best or {}
        samples = pl_module.samples_seen * trainer.world_size  # equal shards per rank (DistributedSampler)
        n_train = len(trainer.datamodule.train_examples) if trainer.datamodule is not None else None
        record.update(
            self.run_dir, costs=costs, **extra,
            **{k: best[k] for k in SCORES if k in best},
            best_step=best.get("step"), n_scored=best.get("n_scored"),
            global_step=trainer.global_step, samples_seen=samples,
            epochs=round(samples / n_train, 3) if n_train else None,
            stopped_early=_stopped_early(trainer), best_checkpoint=_best_checkpoint(trainer),
        )
        value = best.get(pl_module.metric)
        log.info(
            "%s: best %s=%s at step %s -> %s", self.identity.get("model", "model"), pl_module.metric,
            "n/a" if value is None else f"{value:.2f}", best.get("step"), self.run_dir,
        )

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" or trainer.sanity_checking:
            return
        costs, extra = collect_costs(trainer)  # the generation pass's energy, speed and utilisation
        if not trainer.is_global_zero:
            return
        with open(self.run_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
            for doc_id, text in pl_module.last_predictions.items():
                f.write(json.dumps({"id": doc_id, "prediction": text}) + "\n")
        scores = {k: v for k, v in pl_module.last_scores.items() if k != "step"}
        record.update(
            self.run_dir, **self.identity, metric=pl_module.metric, world_size=trainer.world_size,
            precision=str(trainer.precision), **scores, costs=costs, **extra,
            provenance=provenance.for_trainer(trainer),
        )
        log.info("%s: %s", self.identity.get("model", "model"), json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}))
