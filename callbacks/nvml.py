"""The GPUs this process uses, read through NVML: energy counters, utilisation, memory.

NVML numbers GPUs physically; CUDA numbers the visible ones. `physical_indices` maps the job's CUDA devices
through CUDA_VISIBLE_DEVICES so that we read exactly the GPUs the job uses, not every GPU on the machine.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def physical_indices(cuda_devices: list[int]) -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return list(cuda_devices)
    entries = [v.strip() for v in visible.split(",") if v.strip()]
    if not all(e.isdigit() for e in entries):  # UUIDs: resolved by NVML below
        return [int(_uuid_index(entries[i])) for i in cuda_devices]
    return [int(entries[i]) for i in cuda_devices]


def _uuid_index(uuid: str) -> int:
    import pynvml

    return pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(uuid))


class NVML:
    """Handles to the job's GPUs; every reading returns None when NVML cannot give it."""

    def __init__(self, cuda_devices: list[int]):
        self.handles = []
        self.error: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in physical_indices(cuda_devices)]
            self.names = [pynvml.nvmlDeviceGetName(h) for h in self.handles]
        except Exception as e:  # noqa: BLE001 - no driver, no GPU, no pynvml: all mean "not measured"
            self.error = f"{type(e).__name__}: {e}"
            self.handles = []

    @property
    def available(self) -> bool:
        return bool(self.handles)

    def energy_mj(self) -> float | None:
        """Sum of the GPUs' total-energy counters (millijoules since the driver loaded; Volta and newer)."""
        try:
            return float(sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles)) if self.handles else None
        except Exception as e:  # noqa: BLE001
            log.debug("NVML energy counter unreadable: %s", e)
            return None

    def utilization_pct(self) -> list[float] | None:
        try:
            return [float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self.handles] if self.handles else None
        except Exception:  # noqa: BLE001
            return None

    def memory_used_gib(self) -> list[float] | None:
        try:
            return [self._nvml.nvmlDeviceGetMemoryInfo(h).used / 2**30 for h in self.handles] if self.handles else None
        except Exception:  # noqa: BLE001
            return None

    def power_w(self) -> list[float] | None:
        try:
            return [self._nvml.nvmlDeviceGetPowerUsage(h) / 1000.0 for h in self.handles] if self.handles else None
        except Exception:  # noqa: BLE001
            return None
