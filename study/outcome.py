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
from pytorch_lightning.utilities.exceptions import SIGTERMException

from callbacks import EnergyCallback, SpeedCallback, collect_costs, train_gpu_energy
from callbacks.phases import PhaseCallback
from callbacks.speed import CLOCK
from study import ledger, provenance, record
from study.record import measurement

log = logging.getLogger("study")
SCORES = ("rouge1", "rouge2", "rougeL", "rgm", "f1")


def _best_checkpoint(trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", None) is not None and getattr(cb, "best_model_path", None):  # not TrainingState
            return cb.best_model_path
    return None


def _stopped_early(trainer) -> bool:
    es = trainer.early_stopping_callback
    return bool(es is not None and es.wait_count >= es.patience)


class RecordOutcome(Callback):
    def __init__(self, run_dir: str | Path, identity: dict | None = None):
        self.run_dir = Path(run_dir)
        self.identity = identity or {}

    # ---- the ledger: one segment per fit, from its (restored) first step to its end -------------------------
    def _effective_batch(self, trainer) -> int:
        return int(trainer.datamodule.batch_size) * trainer.accumulate_grad_batches * trainer.world_size

    def _write_segment(self, trainer, segment: dict, **fields) -> None:
        data = record.read(self.run_dir) if (self.run_dir / record.FILENAME).exists() else {}
        segments = list(data.get("segments") or [])
        if segments and segments[-1].get("start") == segment["start"]:
            segments[-1] = segment
        else:
            segments.append(segment)
        record.update(self.run_dir, segments=segments, costs=ledger.totals(segments), replace_costs=True, **fields)

    def on_train_start(self, trainer, pl_module):
        # after Lightning restored the training state: global_step is where this segment starts
        if not trainer.is_global_zero:
            return
        data = record.read(self.run_dir) if (self.run_dir / record.FILENAME).exists() else {}
        resumed = trainer.ckpt_path is not None
        segments = ledger.close_killed(list(data.get("segments") or []) if resumed else [], trainer.global_step)
        self.segment = ledger.open_segment(trainer.global_step)
        record.update(self.run_dir, segments=segments + [self.segment], costs=ledger.totals(segments), replace_costs=True)

    def _snapshot(self, trainer, ended: str, costs: dict | None = None, counts: dict | None = None,
                  energy: dict | None = None) -> dict:
        seg = dict(self.segment, end=ledger.now(), ended=ended, end_step=int(trainer.global_step))
        seg["steps"] = seg["end_step"] - seg["start_step"]
        seg["samples"] = seg["steps"] * self._effective_batch(trainer)  # optimizer steps x effective batch
        if costs is None:  # at a validation: the clock and the energy so far (`energy`: EnergyCallback.so_far)
            speed = next((cb for cb in trainer.callbacks if isinstance(cb, SpeedCallback)), None)
            costs = {}
            if speed is not None:
                s = speed.seconds
                costs = {
                    "train_time_s": measurement(s["train"] + s["validation"] + s["checkpoint"], "s", CLOCK),
                    "train_time_excl_validation_s": measurement(s["train"], "s", CLOCK + ", optimizer steps only"),
                    "validation_time_s": measurement(s["validation"], "s", CLOCK),
                    "checkpoint_time_s": measurement(s["checkpoint"], "s", CLOCK),
                }
                if speed.warm is not None:  # rank 0's warm-up (ranks step together), samples from every rank
                    costs["warmup_time_s"] = measurement(speed.warm[0], "s", CLOCK + ", the first warm-up optimizer steps")
            at = f"; up to the validation at step {seg['end_step']}"
            costs.update({k: dict(m, source=m["source"] + at) for k, m in (energy or {}).items()})
            counts = {"samples": seg["samples"],
                      "warmup_samples": speed.warm[1] * trainer.world_size if speed is not None and speed.warm else None}
        seg["costs"] = costs
        seg.update({k: v for k, v in (counts or {}).items() if v is not None})
        return seg

    def _finish_segment(self, trainer, pl_module, ended: str, costs: dict, counts: dict) -> None:
        best = pl_module.best or {}
        n_train = len(trainer.datamodule.train_examples) if trainer.datamodule is not None else None
        samples = trainer.global_step * self._effective_batch(trainer)  # over all segments
        self._write_segment(
            trainer, self._snapshot(trainer, ended, costs, counts),
            **{k: best[k] for k in SCORES if k in best},
            best_step=best.get("step"), n_scored=best.get("n_scored"),
            global_step=trainer.global_step, samples_seen=samples,
            epochs=round(samples / n_train, 3) if n_train else None,
            stopped_early=_stopped_early(trainer), best_checkpoint=_best_checkpoint(trainer),
        )

    def on_fit_end(self, trainer, pl_module):
        costs, extra = collect_costs(trainer)
        if not trainer.is_global_zero:
            return
        counts = extra.pop("counts", {})
        if extra:
            record.update(self.run_dir, **extra)
        self._finish_segment(trainer, pl_module, "finished", costs, counts)
        best = pl_module.best or {}
        value = best.get(pl_module.metric)
        log.info(
            "%s: best %s=%s at step %s -> %s", self.identity.get("model", "model"), pl_module.metric,
            "n/a" if value is None else f"{value:.2f}", best.get("step"), self.run_dir,
        )

    def on_exception(self, trainer, pl_module, exception):
        """A segment that ends by a signal or a failure records what it measured (one process, or a signal that
        every rank saw: the measuring callbacks' finish gathers across ranks)."""
        if getattr(self, "segment", None) is None or trainer.state.fn != "fit":
            return
        graceful = isinstance(exception, SIGTERMException)
        ended = "interrupted" if graceful or isinstance(exception, KeyboardInterrupt) else "failed"
        costs, counts = {}, {}
        try:
            if graceful or trainer.world_size == 1:
                for cb in trainer.callbacks:
                    if isinstance(cb, PhaseCallback):
                        cb.finish(trainer, pl_module, fitting=True)
                costs, extra = collect_costs(trainer)
                counts = extra.pop("counts", {})
            if trainer.is_global_zero:
                self._finish_segment(trainer, pl_module, ended, costs, counts)
        except Exception as e:  # noqa: BLE001 - never mask the run's own exception
            log.warning("could not record the segment's costs: %s", e)

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            # the ledger so far, in case this process is killed before the segment ends: runs just before the
            # training state is saved (TrainingState saves in its on_validation_end, after every other callback's)
            energy = next((cb for cb in trainer.callbacks if isinstance(cb, EnergyCallback)), None)
            so_far = {}
            if energy is not None:  # every rank: the node figures are gathered, as at the segment's end
                so_far = dict(energy.so_far(trainer), energy_train_gpu_kwh=train_gpu_energy(energy))
            if trainer.is_global_zero and getattr(self, "segment", None):
                self._write_segment(trainer, self._snapshot(trainer, "running", energy=so_far), global_step=trainer.global_step)
        if trainer.state.fn == "fit" or trainer.sanity_checking:
            return
        costs, extra = collect_costs(trainer)  # the generation pass's energy, speed and utilisation
        extra.pop("counts", None)
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
