"""Average GPU utilisation and memory over a run (the paper's Figure 6), sampled in a background thread.

The node leader (local rank 0) samples its node's GPUs of this job through NVML, and the CPU through psutil,
every `interval_s` while a phase runs; averages are taken over all samples and all GPUs of all nodes.
Beside the machine's CPU load it samples the run's own (this process and its children), for `cpu_attribution`.
"""

from __future__ import annotations

import os
import threading

from callbacks.nvml import NVML
from callbacks.phases import PhaseCallback
from study.ddp import gather_objects
from study.record import measurement


class UtilizationCallback(PhaseCallback):
    def __init__(self, interval_s: float = 1.0, contention_threshold_pct: float = 10.0):
        super().__init__()
        self.interval_s = interval_s
        self.contention_threshold_pct = float(contention_threshold_pct)
        self.results: dict = {}
        self._thread = None

    def setup(self, trainer, pl_module, stage):
        self._leader = self.is_leader(trainer)
        self.samples = {"gpu_util": [], "gpu_mem": [], "cpu": [], "process_cpu": []}
        self.cpu_share: dict | None = None
        self._procs: dict = {}
        self.results = {}
        self.nvml = None

    def _sample_cpu(self) -> tuple[float, float]:
        """(machine CPU %, this run's CPU %) since the last call, both as a share of all the machine's cores.
        The run is this process and its children (dataloader workers, DDP ranks started by this process; ranks
        started by another launcher, torchrun, SLURM or ddp_spawn's, are not its children and count as others);
        psutil needs the same Process object between calls, so they are kept."""
        import psutil

        machine = psutil.cpu_percent(None)
        me = self._procs.setdefault(os.getpid(), psutil.Process())
        ours = 0.0
        try:
            children = me.children(recursive=True)
        except psutil.Error:  # not allowed to list them: this process alone
            children = []
        for p in [me, *children]:
            p = self._procs.setdefault(p.pid, p)  # a process seen for the first time reads 0 once
            try:
                ours += p.cpu_percent(None)
            except psutil.Error:  # it ended meanwhile
                self._procs.pop(p.pid, None)
        return machine, ours / (psutil.cpu_count() or 1)

    def _sample_forever(self, stop: threading.Event):
        self._procs = {}
        self._sample_cpu()  # the first reading only starts psutil's interval
        while not stop.wait(self.interval_s):
            machine, ours = self._sample_cpu()
            self.samples["cpu"].append(machine)
            self.samples["process_cpu"].append(ours)
            if self.nvml is not None and self.nvml.available:
                util, mem = self.nvml.utilization_pct(), self.nvml.memory_used_gib()
                if util is not None:
                    self.samples["gpu_util"].extend(util)
                if mem is not None:
                    self.samples["gpu_mem"].extend(mem)

    def phase_start(self, trainer, name):
        if self._leader and self.on_gpu and self.nvml is None:  # the job's GPUs on this node
            self.nvml = NVML([int(i) for i in trainer.device_ids])
        if self._leader and self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample_forever, args=(self._stop,), daemon=True, name="utilization")
            self._thread.start()

    def phase_end(self, trainer, name):
        pass  # sampling spans the whole run; phases only start it

    def close(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None

    def finish(self, trainer, pl_module, fitting):
        self.close()
        nodes = gather_objects(self.samples if self._leader else None, trainer)
        merged = {k: [v for n in nodes if n for v in n[k]] for k in ("gpu_util", "gpu_mem", "cpu", "process_cpu")}
        self.cpu_share = cpu_share(merged["cpu"], merged["process_cpu"], self.contention_threshold_pct)
        on_gpu = self.on_gpu
        every = f"every {self.interval_s:g} s, mean over the run"

        def mean(values, unit, source):
            if not on_gpu and unit != "%cpu":
                return measurement(None, unit, "not applicable: no GPU in use")
            if not values:
                return measurement(None, unit.replace("%cpu", "%"), "unknown: no samples (run shorter than the interval, or NVML unavailable)")
            return measurement(sum(values) / len(values), unit.replace("%cpu", "%"), source)

        self.results = {
            "gpu_utilization_pct": mean(merged["gpu_util"], "%", f"measured: nvml utilization, sampled {every}"),
            "gpu_memory_used_gib": mean(merged["gpu_mem"], "GiB", f"measured: nvml memory used, sampled {every}"),
            "cpu_utilization_pct": mean(merged["cpu"], "%cpu", f"measured: psutil, sampled {every}"),
        }


def cpu_share(machine: list[float], process: list[float], threshold_pct: float = 10.0) -> dict:
    """The run's CPU share against the machine's, means over the samples (percent of all the machine's cores).
    `contended`: other processes used at least threshold_pct of the machine's CPU capacity on average. Under
    CodeCarbon's "machine" tracking (and its TDP x load estimate) that share of the CPU's power is charged to
    the run although it is not the run's: 10 points is 10% of the CPU's TDP, one busy core in ten."""
    if not machine or not process:
        return {"process_cpu_pct": None, "machine_cpu_pct": None, "contended": None}
    m, p = sum(machine) / len(machine), sum(process) / len(process)
    return {"process_cpu_pct": round(p, 2), "machine_cpu_pct": round(m, 2), "contended": bool(m - p >= threshold_pct)}
