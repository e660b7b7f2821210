"""Energy of a run, per phase, with its source named: CodeCarbon, cross-checked against the GPUs' own counters.

One CodeCarbon `OfflineEmissionsTracker` per node (local rank 0) measures that node's GPUs (exactly the ones the
job uses), its CPU and RAM; a CodeCarbon task per phase gives each phase's energy. On GPUs the NVML total-energy
counter is also read at every phase boundary and recorded beside CodeCarbon's figure; a disagreement over the
tolerance is logged. Node figures are summed across nodes. A tracker that cannot start never stops training:
one warning, and what it would have measured is recorded as unknown (null), not zero.
(The paper's code summed sampled watts and called it kWh; here energy is integrated power over time.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from callbacks.nvml import NVML
from callbacks.phases import INFERENCE, TRAIN, VALIDATION, PhaseCallback, gather
from study.record import measurement

log = logging.getLogger(__name__)

KWH = 3.6e6  # joules
PARTS = ("energy", "gpu", "cpu", "ram")


def _cpu_source(tracker) -> str:
    modes = [getattr(h, "_mode", None) for h in getattr(tracker, "_hardware", []) if type(h).__name__ == "CPU"]
    mode = modes[0] if modes else None
    return {
        "intel_rapl": "measured: rapl counters (codecarbon)",
        "windows_emi": "measured: windows energy meter (codecarbon)",
        "intel_power_gadget": "measured: intel power gadget (codecarbon)",
        "cpu_load": "estimated: cpu tdp x load (codecarbon)",
        "constant": "estimated: cpu tdp (codecarbon)",
    }.get(mode, f"estimated: codecarbon cpu mode {mode}")


class EnergyCallback(PhaseCallback):
    def __init__(
        self,
        country_iso_code: str = "USA",
        measure_power_secs: float = 15.0,
        tolerance: float = 0.05,
        output_dir: str | None = None,
        enabled: bool = True,
    ):
        super().__init__()
        self.country, self.measure_power_secs, self.tolerance = country_iso_code, measure_power_secs, tolerance
        self.output_dir, self.enabled = output_dir, enabled
        self.tracker = None
        self.nvml: NVML | None = None
        self.problem: str | None = None  # why CodeCarbon is not measuring
        self.phases: dict[str, dict] = {}
        self.results: dict = {}
        self._leader = False
        self._started = False
        self._nvml_at_start: float | None = None

    # ---- set-up: one tracker per node, on the GPUs this job uses ----------------------------------------
    def setup(self, trainer, pl_module, stage):
        self._leader = self.enabled and trainer.local_rank == 0
        self.phases, self.results = {}, {}
        if not self._leader or self.tracker is not None:
            return
        gpus = []
        if trainer.strategy.root_device.type == "cuda":
            # the node's devices of this job (each rank holds one; their indices are the trainer's device ids)
            gpus = [int(i) for i in trainer.device_ids]
            self.nvml = NVML(gpus)
        out = Path(self.output_dir or trainer.default_root_dir)
        try:
            from codecarbon import OfflineEmissionsTracker

            out.mkdir(parents=True, exist_ok=True)
            self.tracker = OfflineEmissionsTracker(
                country_iso_code=self.country,
                measure_power_secs=self.measure_power_secs,
                gpu_ids=[int(i) for i in (self._physical(gpus) if gpus else [])] or None,
                output_dir=str(out),
                output_file="emissions.csv",
                log_level="error",
                allow_multiple_runs=True,  # we guarantee one tracker per node ourselves; no lock file to go stale
                tracking_mode="machine",
                project_name=os.path.basename(str(out)),
            )
            if not hasattr(self.tracker, "_active_task"):  # CodeCarbon swallows its own init errors
                raise RuntimeError("tracker did not initialise")
        except Exception as e:  # noqa: BLE001 - measurement must never stop training
            self.problem = f"{type(e).__name__}: {e}"
            self.tracker = None
            log.warning("energy: CodeCarbon could not start (%s); its figures are recorded as unknown", self.problem)

    @staticmethod
    def _physical(gpus):
        from callbacks.nvml import physical_indices

        return physical_indices(gpus)

    # ---- phases -----------------------------------------------------------------------------------------
    def phase_start(self, trainer, name):
        if not self._leader:
            return
        if self.tracker is not None:
            try:
                if not self._started:
                    self.tracker.start()  # finds its hardware here
                    self._started = True
                    if self.nvml is not None and not any(type(h).__name__ == "GPU" for h in getattr(self.tracker, "_hardware", [])):
                        log.warning("CodeCarbon sees no GPU: its GPU energy is unknown; the NVML counter is recorded alone")
                self.tracker.start_task(name)
            except Exception as e:  # noqa: BLE001
                self._fail(e)
        self._nvml_at_start = self.nvml.energy_mj() if self.nvml and self.nvml.available else None

    def phase_end(self, trainer, name):
        if not self._leader:
            return
        acc = self.phases.setdefault(name, {"energy": 0.0, "gpu": 0.0, "cpu": 0.0, "ram": 0.0, "nvml_mj": 0.0, "segments": 0})
        acc["segments"] += 1
        if self.tracker is not None:
            try:
                data = self.tracker.stop_task()
                acc["energy"] += data.energy_consumed
                acc["gpu"] += data.gpu_energy
                acc["cpu"] += data.cpu_energy
                acc["ram"] += data.ram_energy
            except Exception as e:  # noqa: BLE001
                self._fail(e)
        now = self.nvml.energy_mj() if self.nvml and self.nvml.available else None
        if now is not None and self._nvml_at_start is not None and acc["nvml_mj"] is not None:
            acc["nvml_mj"] += now - self._nvml_at_start
        else:
            acc["nvml_mj"] = None

    def _fail(self, e: Exception) -> None:
        self.problem = f"{type(e).__name__}: {e}"
        log.warning("energy: CodeCarbon failed mid-run (%s); its figures are recorded as unknown", self.problem)
        self.close()

    def close(self) -> None:
        if self.tracker is not None and self._started:
            try:
                self.tracker.stop()  # writes emissions.csv into the run directory
            except Exception:  # noqa: BLE001
                pass
        self.tracker, self._started = None, False

    # ---- results ----------------------------------------------------------------------------------------
    def finish(self, trainer, pl_module, fitting):
        node = self._node_summary() if self._leader else None
        self.close()
        nodes = [n for n in gather(node, trainer) if n is not None]  # one per node
        self.results = self._combine(nodes, fitting)

    def _node_summary(self) -> dict:
        cc_ok = self.problem is None
        has_gpu = self.nvml is not None
        cc_gpu_seen = cc_ok and any(type(h).__name__ == "GPU" for h in getattr(self.tracker, "_hardware", []) or [])
        return {
            "phases": self.phases,
            "codecarbon": cc_ok,
            "gpu_in_use": has_gpu,
            "codecarbon_gpu": cc_gpu_seen or not has_gpu,
            "cpu_source": _cpu_source(self.tracker) if self.tracker is not None else None,
            "problem": self.problem,
        }

    def _combine(self, nodes: list[dict], fitting: bool) -> dict:
        def total(phases, part):
            values = []
            for n in nodes:
                for p in phases:
                    if p not in n["phases"]:
                        continue
                    v = n["phases"][p]["nvml_mj"] if part == "nvml" else n["phases"][p][part]
                    if part == "nvml":
                        v = None if v is None else v / 1e3 / KWH
                    elif not n["codecarbon"] or (part == "gpu" and not n["codecarbon_gpu"]):
                        v = None
                    values.append(v)
            if not values or any(v is None for v in values):
                return None
            return sum(values)

        gpu_in_use = any(n["gpu_in_use"] for n in nodes)
        cc_ok = bool(nodes) and all(n["codecarbon"] for n in nodes)
        problem = next((n["problem"] for n in nodes if n["problem"]), None)
        unknown = f"unknown: codecarbon did not measure ({problem})" if problem else "unknown: energy callback disabled"
        cpu_src = next((n["cpu_source"] for n in nodes if n["cpu_source"]), "unknown")
        gpu_src = "measured: nvml energy counter (codecarbon)" if gpu_in_use else "not applicable: no GPU in use"
        ram_src = "estimated: ram power model (codecarbon)"
        # the total is "measured" only if every part is; the label lists each part's own source
        parts = ([f"gpu {gpu_src}"] if gpu_in_use else []) + [f"cpu {cpu_src}", f"ram {ram_src}"]
        measured_all = gpu_in_use and cpu_src.startswith("measured")
        total_src = ("measured" if measured_all else "estimated") + " (sum of parts): " + "; ".join(parts)

        def m(value, source):
            return measurement(value, "kWh", source if cc_ok else unknown)

        out: dict = {}
        phases = (TRAIN, VALIDATION) if fitting else (INFERENCE,)
        main = "energy_kwh" if fitting else "energy_inference_kwh"
        out[main] = m(total(phases, "energy"), total_src)
        if fitting:
            out["energy_train_kwh"] = m(total((TRAIN,), "energy"), total_src)
            out["energy_validation_kwh"] = m(total((VALIDATION,), "energy"), total_src)
        gpu = total(phases, "gpu") if gpu_in_use else None
        out["energy_gpu_kwh"] = measurement(gpu, "kWh", gpu_src if (cc_ok or not gpu_in_use) else unknown)
        out["energy_cpu_kwh"] = m(total(phases, "cpu"), cpu_src)
        out["energy_ram_kwh"] = m(total(phases, "ram"), ram_src)
        nvml = total(phases, "nvml") if gpu_in_use else None
        out["nvml_energy_kwh"] = measurement(
            nvml, "kWh", "measured: nvml total-energy counter, read at phase boundaries" if gpu_in_use else "not applicable: no GPU in use"
        )
        self.cross_check = self._cross_check(out["energy_gpu_kwh"]["value"], nvml)
        # what power efficiency divides by: the training phase's energy (all parts), and its GPU part alone
        self.train_energy_kwh = total((TRAIN,), "energy") if fitting and cc_ok else None
        self.train_gpu_energy_kwh = (total((TRAIN,), "nvml") or total((TRAIN,), "gpu")) if fitting and gpu_in_use else None
        self.total_source = total_src if cc_ok else unknown
        return out

    def _cross_check(self, codecarbon_gpu: float | None, nvml: float | None) -> dict | None:
        if codecarbon_gpu is None or nvml is None or nvml <= 0:
            return None
        diff = abs(codecarbon_gpu - nvml) / nvml
        ok = diff <= self.tolerance
        if not ok:
            log.warning(
                "energy cross-check: CodeCarbon's GPU energy %.6f kWh and the NVML counter's %.6f kWh differ by %.1f%% (over %.0f%%)",
                codecarbon_gpu, nvml, 100 * diff, 100 * self.tolerance,
            )
        return {"codecarbon_gpu_kwh": codecarbon_gpu, "nvml_kwh": nvml, "relative_difference": diff, "within_tolerance": ok}
