"""What measuring costs, and what Lightning costs: the same model, batches and optimizer, timed three ways in one
process — a bare PyTorch loop, train.py's Lightning Trainer without the measuring callbacks, and with them.

    python benchmarks/bench_callbacks.py experiment=smoke steps=30                 # CPU
    python benchmarks/bench_callbacks.py model=led_base model.pretrained=false strategy=single_gpu seq_len=1024 steps=40

Prints a table of median, mean and slowest step time and samples/s (from the mean); each step's time is taken at the end of the step with the GPU
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
from omegaconf import OmegaConf, open_dict  # noqa: E402
from pytorch_lightning import Callback  # noqa: E402

from benchmarks.bare_loop import prepare, run_steps, split_args  # noqa: E402
from callbacks import EnergyCallback, SpeedCallback, UtilizationCallback  # noqa: E402
from lightning_modules.trainer import build_trainer  # noqa: E402
from study.run import build  # noqa: E402

MEASURING = (EnergyCallback, SpeedCallback, UtilizationCallback)


class StepTimer(Callback):
    def __init__(self):
        self.times = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.times.append(time.perf_counter())


class HookClock:
    """Adds up the main-thread time spent inside the measuring callbacks' hooks (the work they put in the way of
    training), per hook, by wrapping each hook on the callback instances (Lightning looks hooks up by name)."""

    def __init__(self, callbacks):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        for cb in callbacks:
            for name in dir(cb):
                if (name.startswith("on_") or name in ("setup", "teardown")) and callable(getattr(cb, name)):
                    setattr(cb, name, self._wrap(name, getattr(cb, name)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
                self.calls[name] = self.calls.get(name, 0) + 1
        return timed


def background_cost(cfg) -> dict:
    """CPU seconds of the measuring threads' periodic work, timed directly: the utilisation sample (every
    interval_s) and CodeCarbon's power measurement (every measure_power_secs)."""
    import psutil
    from codecarbon import OfflineEmissionsTracker

    psutil.cpu_percent(None)
    t = time.process_time()
    for _ in range(200):
        psutil.cpu_percent(None)
    sample = (time.process_time() - t) / 200
    with tempfile.TemporaryDirectory() as out:
        tracker = OfflineEmissionsTracker(country_iso_code="USA", output_dir=out, log_level="error", allow_multiple_runs=True,
                                          measure_power_secs=3600, tracking_mode="machine")
        tracker.start()
        t = time.process_time()
        for _ in range(5):
            tracker._measure_power_and_energy()
        measure = (time.process_time() - t) / 5
        tracker.stop()
    every_util, every_cc = float(cfg.callbacks.utilization.interval_s), float(cfg.callbacks.energy.measure_power_secs)
    return {"utilization_sample_s": sample, "codecarbon_measure_s": measure,
            "cpu_s_per_s": sample / every_util + measure / every_cc}


def steady(times: list[float], warmup: int) -> list[float]:
    return [b - a for a, b in zip(times[warmup - 1 :], times[warmup:])]


def main(argv: list[str]) -> None:
    own, overrides = split_args(argv, {"steps": 30, "warmup": 5})
    steps, warmup = own["steps"], own["warmup"]
    s = prepare(overrides + [f"trainer.max_steps={steps}"])
    cfg, bs = s.cfg, s.batch_size
    # no Hydra run here: the callbacks' ${hydra:runtime.output_dir} becomes a scratch directory
    OmegaConf.register_new_resolver("hydra", lambda key: tempfile.mkdtemp(prefix="bench_"), replace=True)
    with open_dict(cfg):
        cfg.data.val_every_steps = 10 * steps  # no validation: step time only
        cfg.callbacks.best_checkpoint = cfg.callbacks.last_checkpoint = cfg.callbacks.early_stopping = None
    spec, device, data = s.spec, s.device, s.data
    module = build(cfg.module, model=s.model, tokenizer=s.tokenizer, task=data.task,
                   global_attention_on_first_token=spec.global_attention_on_first_token)

    # 1. bare loop: the same optimizer, clipping and batches as the Lightning module
    _, times = run_steps(s, steps)
    rows = [("bare PyTorch loop", steady(times, warmup))]

    # 2./3. train.py's Trainer, without and with the measuring callbacks
    for label, keep in (("Lightning, no measuring callbacks", False), ("Lightning + energy/speed/utilization", True)):
        with tempfile.TemporaryDirectory() as run_dir:
            timer = StepTimer()
            trainer = build_trainer(cfg, Path(run_dir), extra_callbacks=[timer])
            if not keep:
                trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, MEASURING)]
            else:
                clock = HookClock([c for c in trainer.callbacks if isinstance(c, MEASURING)])
            trainer.fit(module, datamodule=data)
            rows.append((label, steady(timer.times, warmup)))

    # the median says what a typical step costs; the mean is what a run's samples/s sees, stalls included
    base, nocb = statistics.mean(rows[0][1]), statistics.mean(rows[1][1])
    print(f"\n{spec.name} seq_len={cfg.seq_len} batch={bs} precision={cfg.trainer.precision} device={torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; steps {warmup + 1}..{steps}")
    print(f"{'variant':40s} {'median step s':>14s} {'mean step s':>12s} {'max step s':>11s} {'samples/s (mean)':>17s} {'vs bare':>8s} {'vs no callbacks':>16s}")
    out = []
    for label, dts in rows:
        med, mean = statistics.median(dts), statistics.mean(dts)
        print(f"{label:40s} {med:14.4f} {mean:12.4f} {max(dts):11.4f} {bs / mean:17.2f} {100 * (mean / base - 1):+7.1f}% {100 * (mean / nocb - 1):+15.1f}%")
        out.append({"variant": label, "median_step_s": med, "mean_step_s": mean, "max_step_s": max(dts), "samples_per_s": bs / mean, "steps": len(dts)})
    # the callbacks' own work, timed directly: robust where step-time noise between runs exceeds the effect
    per_step = ("on_train_batch_start", "on_train_batch_end")
    in_steps = sum(clock.seconds.get(h, 0.0) for h in per_step) / max(1, clock.calls.get("on_train_batch_end", 1))
    once = sum(v for h, v in clock.seconds.items() if h not in per_step)
    bg = background_cost(cfg)
    step = statistics.median(rows[2][1])
    work = in_steps / step + bg["cpu_s_per_s"]
    print(f"callbacks' own work: {1e6 * in_steps:.0f} us of hooks per step ({100 * in_steps / step:.3f}% of a {step:.3f} s step); "
          f"background {1e3 * bg['utilization_sample_s']:.2f} ms CPU per utilisation sample, {1e3 * bg['codecarbon_measure_s']:.1f} ms per "
          f"CodeCarbon measurement = {100 * bg['cpu_s_per_s']:.3f}% of one core; {once:.2f} s once at the run's start and end "
          f"(tracker start/stop, results). Per-step work in all: {100 * work:.3f}% of step time")
    print(json.dumps({"model": spec.name, "seq_len": cfg.seq_len, "batch_size": bs, "rows": out, "hooks_s_per_step": in_steps,
                      "hooks_once_s": once, "background": bg, "work_pct_of_step": 100 * work}))


if __name__ == "__main__":
    main(sys.argv[1:])
