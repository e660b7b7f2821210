"""Where a training run's wall time goes, step by step: a diagnostic callback and its summary.

Added to any train.py run from the command line (the GPU is synchronised at every hook it times):

    python train.py ... +callbacks.trace._target_=benchmarks.step_trace.StepTrace +callbacks.trace.path=trace.json
    python benchmarks/step_trace.py trace.json          # per-step table, the slow steps, what every thread was doing

It records each hook's time (batch start/end, validation start/end, epoch start/end, train end), the CUDA
allocator's counters at each step end (cudaMalloc/cudaFree calls, retries), and a stack sample of every Python
thread every `every_s` seconds, so a slow stretch can be matched to the code that ran during it.
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
import threading
import time
import traceback

import torch
from pytorch_lightning import Callback

ALLOC_KEYS = ("num_device_alloc", "num_device_free", "num_alloc_retries", "reserved_bytes.all.current")


class StepTrace(Callback):
    def __init__(self, path: str, every_s: float = 0.05, depth: int = 6):
        self.path, self.every_s, self.depth = path, every_s, depth
        self.events: list[dict] = []
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = None

    # ---- the stack sampler ------------------------------------------------------------------------------
    def _sample(self):
        names = {}
        me = threading.get_ident()
        while not self._stop.wait(self.every_s):
            t = time.perf_counter()
            names.update({th.ident: th.name for th in threading.enumerate()})
            stacks = {}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                frames = traceback.extract_stack(frame)[-self.depth :]
                stacks[names.get(ident, str(ident))] = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames]
            self.samples.append({"t": t, "stacks": stacks})

    def _event(self, pl_module, name, **extra):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.events.append({"t": time.perf_counter(), "event": name, **extra})

    # ---- hooks ----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module):
        self._thread = threading.Thread(target=self._sample, name="step-trace", daemon=True)
        self._thread.start()
        self._event(pl_module, "fit_start")

    def on_train_epoch_start(self, trainer, pl_module):
        self._event(pl_module, "epoch_start", epoch=trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        self._event(pl_module, "epoch_end", epoch=trainer.current_epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._event(pl_module, "batch_start", step=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stats = torch.cuda.memory_stats(pl_module.device) if pl_module.device.type == "cuda" else {}
        self._event(pl_module, "batch_end", step=trainer.global_step, alloc={k: stats.get(k) for k in ALLOC_KEYS})

    def on_validation_start(self, trainer, pl_module):
        self._event(pl_module, "validation_start")

    def on_validation_end(self, trainer, pl_module):
        self._event(pl_module, "validation_end")

    def on_train_end(self, trainer, pl_module):
        self._event(pl_module, "train_end")

    def on_fit_end(self, trainer, pl_module):
        self.events.append({"t": time.perf_counter(), "event": "fit_end"})
        self._stop.set()
        self._thread.join()
        with open(self.path, "w") as f:
            json.dump({"events": self.events, "samples": self.samples}, f)


# ---- the summary ------------------------------------------------------------------------------------------
def summarize(path: str, top: int = 8) -> None:
    trace = json.load(open(path))
    events, samples = trace["events"], trace["samples"]
    t0 = events[0]["t"]
    print(f"{path}: {len(events)} events, {len(samples)} stack samples")
    print(f"{'t (s)':>8s} {'event':16s} {'step':>5s} {'since prev (s)':>14s}  allocator (cudaMalloc, cudaFree, retries, reserved GiB)")
    prev = None
    spans = []  # (start, end, label) of every stretch between consecutive events
    for e in events:
        dt = e["t"] - prev["t"] if prev else 0.0
        a = e.get("alloc") or {}
        alloc = "" if not a else f"{a.get('num_device_alloc')}, {a.get('num_device_free')}, {a.get('num_alloc_retries')}, {(a.get('reserved_bytes.all.current') or 0) / 2**30:.1f}"
        print(f"{e['t'] - t0:8.2f} {e['event']:16s} {str(e.get('step', '')):>5s} {dt:14.3f}  {alloc}")
        if prev:
            spans.append((prev["t"], e["t"], f"{prev['event']} -> {e['event']}"))
        prev = e
    steps = [s[1] - s[0] for s in spans if s[2] == "batch_start -> batch_end"]
    if steps:
        med = statistics.median(steps)
        print(f"\nsteps: {len(steps)}, median {med:.3f} s, mean {statistics.mean(steps):.3f} s, max {max(steps):.3f} s")
    # what the threads were doing in each stretch that took unusually long
    slow = [s for s in spans if s[1] - s[0] > max(0.5, 1.5 * (med if steps else 0))]
    for start, end, label in sorted(slow, key=lambda s: s[0] - s[1])[:top]:
        inside = [s for s in samples if start <= s["t"] <= end]
        print(f"\n== {label}: {end - start:.2f} s at t={start - t0:.2f}, {len(inside)} samples")
        for thread in sorted({n for s in inside for n in s["stacks"]}):
            counts = collections.Counter(" <- ".join(reversed(s["stacks"][thread][-4:])) for s in inside if thread in s["stacks"])
            for stack, n in counts.most_common(3):
                print(f"  [{thread}] {n:4d}x {stack}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        summarize(p)
