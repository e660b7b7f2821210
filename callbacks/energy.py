"""Energy of a run, with its source named: CodeCarbon for the run, the GPUs' own counters to split it by phase
and to cross-check it.

One CodeCarbon `OfflineEmissionsTracker` per node (local rank 0) measures that node's GPUs (exactly the ones the
job uses), its CPU and RAM, from the first phase to the end of the run. Phase boundaries cost one NVML counter
read and a timestamp, not a CodeCarbon call (its task API re-measures every device at each call). The run's
energy is split into phases by those readings — the GPU
part in proportion to each phase's NVML counter delta, the CPU and RAM parts in proportion to phase time — and
the NVML counter over the tracker's whole span is recorded beside CodeCarbon's GPU figure; a disagreement over
the tolerance is logged. The first `warmup_steps` optimizer steps (compile, graph capture, warm-up) are split off
the training phase the same way, by a counter read and a timestamp at their end (`warmup_energy_kwh`).
`tracking_mode` is CodeCarbon's CPU scope: "machine" charges every process's CPU load on the machine to the run,
"process" only this process's. Node figures are summed across nodes. A tracker that cannot start never stops
training: one warning, and its figures are recorded as unknown (null), never zero.
`so_far` gives the figures up to now without stopping the tracker (one CodeCarbon reading, at each validation),
so that a segment killed later still has the energy up to its last saved state.
(The paper's code summed sampled watts and called it kWh; here energy is integrated power over time.)
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from callbacks.nvml import NVML, physical_indices
from callbacks.phases import CHECKPOINT, TRAIN, VALIDATION, PhaseCallback
from study.ddp import gather_objects
from study.errors import StudyError
from study.record import measurement

log = logging.getLogger(__name__)

KWH = 3.6e6  # joules
WARMUP = "warmup"  # the first warmup_steps optimizer steps, inside the training phase
# CodeCarbon's CPU scope: "machine" charges every process's CPU load to the run, "process" this process's share
TRACKING_MODES = ("machine", "process")


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
        tracking_mode: str = "machine",
        warmup_steps: int | None = None,
    ):
        super().__init__()
        if tracking_mode not in TRACKING_MODES:
            raise StudyError(f"callbacks.energy.tracking_mode={tracking_mode} is not one of: {', '.join(TRACKING_MODES)}")
        self.tracking_mode = tracking_mode
        self._warmup_steps = warmup_steps  # None: the SpeedCallback's, so warm-up energy and time cover the same steps
        self.warmup_steps = 5 if warmup_steps is None else int(warmup_steps)
        self.country, self.measure_power_secs, self.tolerance = country_iso_code, measure_power_secs, tolerance
        self.output_dir, self.enabled = output_dir, enabled
        self.results: dict = {}
        self.cross_check: dict | None = None
        self.train_energy_kwh = self.train_gpu_energy_kwh = self.warmup_energy_kwh = None
        self.total_source = "unknown"
        self._leader, self.tracker, self.nvml, self.problem = False, None, None, None
        self.phases: dict[str, dict] = {}
        self.span: dict = {}

    # ---- set-up: one tracker per node, on the GPUs this job uses ----------------------------------------
    def setup(self, trainer, pl_module, stage):
        self._leader = self.enabled and self.is_leader(trainer)
        if self._warmup_steps is None:
            from callbacks.speed import SpeedCallback

            self.warmup_steps = next((cb.warmup_steps for cb in trainer.callbacks if isinstance(cb, SpeedCallback)), 5)
        self.tracker, self.nvml, self.problem = None, None, None
        self.phases: dict[str, dict] = {}
        self.span: dict = {}
        self.warm: dict | None = None  # the training phase's seconds and GPU counter up to the warm-up boundary
        self.warmup_energy_kwh = None
        self.results, self.cross_check = {}, None
        if not self._leader:
            return
        gpus = [int(i) for i in trainer.device_ids] if trainer.strategy.root_device.type == "cuda" else []
        if gpus:
            self.nvml = NVML(gpus)
        out = Path(self.output_dir or trainer.default_root_dir)
        try:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)  # its INFO lines ignore log_level="error"
            out.mkdir(parents=True, exist_ok=True)
            self.tracker = OfflineEmissionsTracker(
                country_iso_code=self.country,
                measure_power_secs=self.measure_power_secs,
                gpu_ids=physical_indices(gpus) or None,
                output_dir=str(out),
                output_file="emissions.csv",
                log_level="error",
                allow_multiple_runs=True,  # we guarantee one tracker per node ourselves; no lock file to go stale
                tracking_mode=self.tracking_mode,
                project_name=os.path.basename(str(out)),
            )
            if not hasattr(self.tracker, "_active_task"):  # CodeCarbon swallows its own init errors
                raise RuntimeError("tracker did not initialise")
        except Exception as e:  # noqa: BLE001 - measurement must never stop training
            self._fail(e, "could not start")

    def _fail(self, e: Exception, what: str) -> None:
        self.problem = f"{type(e).__name__}: {e}"
        log.warning("energy: CodeCarbon %s (%s); its figures are recorded as unknown", what, self.problem)
        self.tracker = None

    def _nvml_mj(self) -> float | None:
        return self.nvml.energy_mj() if self.nvml is not None and self.nvml.available else None

    # ---- phases: a timestamp and a counter read, nothing else --------------------------------------------
    def phase_start(self, trainer, name):
        if not self._leader:
            return
        if not self.span:  # the run's first phase: the tracker's span starts here
            if self.tracker is not None:
                try:
                    self.tracker.start()
                    if self.nvml is not None and not any(type(h).__name__ == "GPU" for h in getattr(self.tracker, "_hardware", [])):
                        log.warning("CodeCarbon sees no GPU: its GPU energy is unknown; the NVML counter is recorded alone")
                except Exception as e:  # noqa: BLE001
                    self._fail(e, "failed to start")
            self.span = {"t0": time.perf_counter(), "nvml0": self._nvml_mj()}
        self._t0, self._e0 = time.perf_counter(), self._nvml_mj()

    def phase_end(self, trainer, name):
        if not self._leader:
            return
        acc = self.phases.setdefault(name, {"seconds": 0.0, "nvml_mj": 0.0})
        acc["seconds"] += time.perf_counter() - self._t0
        e1 = self._nvml_mj()
        acc["nvml_mj"] = None if (e1 is None or self._e0 is None or acc["nvml_mj"] is None) else acc["nvml_mj"] + e1 - self._e0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # the warm-up boundary as SpeedCallback draws it: the batch end at which global_step reaches warmup_steps
        if not self._leader or self.warm is not None or trainer.global_step < self.warmup_steps or self._phase != TRAIN:
            return
        self._sync(pl_module)
        acc = self.phases.get(TRAIN, {"seconds": 0.0, "nvml_mj": 0.0})
        e1 = self._nvml_mj()
        self.warm = {
            "seconds": acc["seconds"] + time.perf_counter() - self._t0,
            "nvml_mj": None if (e1 is None or self._e0 is None or acc["nvml_mj"] is None) else acc["nvml_mj"] + e1 - self._e0,
        }

    def close(self) -> None:
        """Stop the tracker (it writes emissions.csv into the run directory) and close the span."""
        if self.span and "t1" not in self.span:
            self.span.update(t1=time.perf_counter(), nvml1=self._nvml_mj())
            if self.tracker is not None:
                try:
                    self.tracker.stop()
                    self.span["codecarbon"] = self.tracker.final_emissions_data
                except Exception as e:  # noqa: BLE001
                    self._fail(e, "failed to stop")

    # ---- results ----------------------------------------------------------------------------------------
    def finish(self, trainer, pl_module, fitting):
        node = None
        if self._leader:
            self.close()
            data = self.span.get("codecarbon") if self.problem is None else None
            cc = None if data is None else {"energy": data.energy_consumed, "cpu": data.cpu_energy, "ram": data.ram_energy,
                                            "gpu": data.gpu_energy}
            node = self._node(self.phases, self.span.get("t1", 0), self.span.get("nvml1"), cc, self.problem)
        nodes = [n for n in gather_objects(node, trainer) if n is not None]  # one per node
        self.results = self._combine(nodes, fitting)

    def so_far(self, trainer) -> dict:
        """The training segment's energy up to now, split by phase exactly as `finish` splits it, without stopping
        the tracker: one CodeCarbon reading of each device (what its `flush` does, without writing a row to
        emissions.csv) and one NVML counter read. Meant for once per validation, not per step. A collective like
        `finish` (every rank calls it; node figures are gathered and summed)."""
        node = None
        if self._leader and self.span and "t1" not in self.span:
            t, e = time.perf_counter(), self._nvml_mj()
            phases = {k: dict(v) for k, v in self.phases.items()}
            if self._phase is not None:  # the phase open now, up to now
                acc = phases.setdefault(self._phase, {"seconds": 0.0, "nvml_mj": 0.0})
                acc["seconds"] += t - self._t0
                acc["nvml_mj"] = None if (e is None or self._e0 is None or acc["nvml_mj"] is None) else acc["nvml_mj"] + e - self._e0
            cc, problem = None, self.problem
            if self.tracker is not None and problem is None:
                try:
                    tr = self.tracker
                    tr._measure_power_and_energy_if_stale()  # energy since its last scheduled reading
                    cc = {"energy": tr._total_energy.kWh, "cpu": tr._total_cpu_energy.kWh, "ram": tr._total_ram_energy.kWh,
                          "gpu": tr._total_gpu_energy.kWh}
                except Exception as err:  # noqa: BLE001 - a snapshot never stops training nor the tracker
                    problem = f"{type(err).__name__}: {err}"
            node = self._node(phases, t, e, cc, problem)
        nodes = [n for n in gather_objects(node, trainer) if n is not None]
        return self._combine(nodes, fitting=True, check=False)

    def _node(self, phases: dict, t1: float, nvml1: float | None, cc: dict | None, problem: str | None) -> dict:
        """One node's figures from the tracker's start to `t1`: what `_combine` sums across nodes and splits by phase."""
        gpu_seen = any(type(h).__name__ == "GPU" for h in getattr(self.tracker, "_hardware", []) or [])
        if cc is not None and not (gpu_seen or self.nvml is None):
            cc = dict(cc, gpu=None)
        return {
            "phases": phases,
            "warm": self.warm,
            "seconds": t1 - self.span.get("t0", 0) if self.span else 0,
            "nvml_mj": None if self.span.get("nvml0") is None or nvml1 is None else nvml1 - self.span["nvml0"],
            "gpu_in_use": self.nvml is not None,
            "cc": cc,
            "cpu_source": _cpu_source(self.tracker) if self.tracker is not None else None,
            "problem": problem or ("energy callback disabled" if not self.enabled else None),
        }

    def _combine(self, nodes: list[dict], fitting: bool, check: bool = True) -> dict:
        gpu_in_use = any(n["gpu_in_use"] for n in nodes)
        problem = next((n["problem"] for n in nodes if n["problem"]), None) if nodes else "no node measured"
        known = bool(nodes) and all(n["cc"] is not None for n in nodes)
        unknown = f"unknown: codecarbon did not measure ({problem})"
        cpu_src = next((n["cpu_source"] for n in nodes if n["cpu_source"]), "unknown")
        gpu_src = "measured: nvml energy counter (codecarbon)" if gpu_in_use else "not applicable: no GPU in use"
        ram_src = "estimated: ram power model (codecarbon)"
        parts = ([f"gpu {gpu_src}"] if gpu_in_use else []) + [f"cpu {cpu_src}", f"ram {ram_src}"]
        measured_all = gpu_in_use and cpu_src.startswith("measured")
        total_src = ("measured" if measured_all else "estimated") + " (sum of parts): " + "; ".join(parts)
        split_src = total_src + "; split by phase: gpu by nvml counter deltas, cpu and ram by phase time"

        def node_part(n, part, phase=None):
            """A node's energy (kWh) of one part, over the run or one phase."""
            cc = n["cc"]
            if cc is None or cc.get(part) is None:
                return None
            if phase is None:
                return cc[part]
            if phase == WARMUP:  # not a phase of its own: the start of the training phase
                ph = n.get("warm")
                if ph is None:
                    return None  # the run never reached the end of its warm-up steps: unknown, not zero
            else:
                ph = n["phases"].get(phase)
            if ph is None:
                return 0.0  # this phase did not happen
            if part == "gpu" and n["nvml_mj"] and ph["nvml_mj"] is not None:
                return cc[part] * ph["nvml_mj"] / n["nvml_mj"]
            return cc[part] * ph["seconds"] / n["seconds"] if n["seconds"] else None

        def total(part, phases=None):
            values = []
            for n in nodes:
                for phase in phases or [None]:
                    values.append(node_part(n, part, phase))
            return None if not values or any(v is None for v in values) else sum(values)

        def energy(phases):
            parts_ = [total(p, phases) for p in (("gpu", "cpu", "ram") if gpu_in_use else ("cpu", "ram"))]
            return None if any(v is None for v in parts_) else sum(parts_)

        out = {}
        if fitting:
            out["energy_kwh"] = measurement(total("energy") if known else None, "kWh", total_src if known else unknown)
            out["energy_train_kwh"] = measurement(energy([TRAIN]) if known else None, "kWh", split_src if known else unknown)
            out["energy_validation_kwh"] = measurement(energy([VALIDATION]) if known else None, "kWh", split_src if known else unknown)
            out["energy_checkpoint_kwh"] = measurement(energy([CHECKPOINT]) if known else None, "kWh", split_src if known else unknown)
            # one-time cost: the first warmup_steps optimizer steps (compile, graph capture, warm-up), part of energy_train_kwh
            self.warmup_energy_kwh = energy([WARMUP]) if known else None
            reached = bool(nodes) and all(n.get("warm") is not None for n in nodes)
            out["warmup_energy_kwh"] = measurement(
                self.warmup_energy_kwh, "kWh",
                (f"{split_src}; warm-up: the training phase's first {self.warmup_steps} optimizer steps, gpu by the nvml counter read at their end"
                 if reached else f"unknown: the run had fewer than {self.warmup_steps} optimizer steps") if known else unknown,
            )
        else:
            out["energy_inference_kwh"] = measurement(total("energy") if known else None, "kWh", total_src if known else unknown)
        gpu = total("gpu") if gpu_in_use and known else None
        out["energy_gpu_kwh"] = measurement(gpu, "kWh", gpu_src if (known or not gpu_in_use) else unknown)
        out["energy_cpu_kwh"] = measurement(total("cpu") if known else None, "kWh", cpu_src if known else unknown)
        out["energy_ram_kwh"] = measurement(total("ram") if known else None, "kWh", ram_src if known else unknown)
        nvml = [n["nvml_mj"] for n in nodes]
        nvml_kwh = sum(nvml) / 1e3 / KWH if gpu_in_use and nvml and None not in nvml else None
        out["nvml_energy_kwh"] = measurement(
            nvml_kwh, "kWh",
            "measured: nvml total-energy counter over the tracker's span" if gpu_in_use else "not applicable: no GPU in use",
        )
        if check:  # at the end, not at every snapshot
            self.cross_check = self._cross_check(gpu, nvml_kwh)
        # what power efficiency divides by: the training phase's energy, and its GPU part
        self.train_energy_kwh = energy([TRAIN]) if fitting and known else None
        gpu_train_mj = [n["phases"].get(TRAIN, {}).get("nvml_mj") for n in nodes]
        self.train_gpu_energy_kwh = (
            sum(gpu_train_mj) / 1e3 / KWH if fitting and gpu_in_use and gpu_train_mj and None not in gpu_train_mj else None
        )
        self.total_source = total_src if known else unknown
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
