"""NVIDIA GPU energy through NVML (``pynvml``, from the ``nvidia-ml-py`` package; optional).

Preferred path: ``nvmlDeviceGetTotalEnergyConsumption(handle)``, the energy in millijoules
since the driver was loaded (Volta and newer), read at the start and end of a window.
Fallback, when that call raises ``NVMLError_NotSupported``: ``nvmlDeviceGetPowerUsage(handle)``
(milliwatts) sampled in a background thread and integrated with the trapezoid rule.
This module is the only place that converts mJ -> J and mW -> W.

The counter and the power reading change roughly every 20-100 ms depending on the GPU
(zeus warns for windows below its update period as well), so `NvmlMeter.update_period_s` is 0.1 s.
``energy_j`` covers the whole board of one GPU (``gpu_index``), not the host.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from weightwise.profile.meters._sampler import PowerSampler, integrate_trapezoid
from weightwise.profile.meters.base import Measurement, Meter, MeterError

_MJ_PER_J = 1e3
_MW_PER_W = 1e3


class NvmlMeter(Meter):
    """Energy of one NVIDIA GPU.

    Args:
        gpu_index: NVML device index (as listed by ``nvidia-smi``).
        sample_period_s: Seconds between power samples on the fallback path.
        clock: Monotonic clock in seconds (injectable for tests).

    Example:
        >>> meter = NvmlMeter(gpu_index=0)
        >>> if meter.available:
        ...     with meter.window("encoder") as w:
        ...         pass
    """

    name = "nvml"
    update_period_s = 0.1

    def __init__(
        self,
        gpu_index: int = 0,
        sample_period_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self._gpu_index = gpu_index
        self._sample_period_s = sample_period_s
        self._clock = clock
        self._nvml: Any = None  # the pynvml module once initialized
        self._handle: Any = None
        self.uses_energy_counter = False

    @property
    def domain(self) -> str:
        """Domain key in `Measurement.domains_j`, e.g. ``gpu0``."""
        return f"gpu{self._gpu_index}"

    def close(self) -> None:
        """Abandon open windows and shut NVML down if this meter initialized it."""
        super().close()
        if self._nvml is not None:
            # Shutting down twice, or after a driver reset, is harmless.
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml, self._handle, self._probed = None, None, None

    def _probe(self) -> tuple[bool, str]:
        try:
            import pynvml  # lazy: optional, present only on NVIDIA machines
        except ImportError:
            return False, "NVML not available: pynvml is not installed (pip install nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
        except Exception as err:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return False, f"NVML not available: nvmlInit failed ({err})"
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self._gpu_index)
            self.uses_energy_counter = _supports_energy_counter(pynvml, self._handle)
            if not self.uses_energy_counter:
                pynvml.nvmlDeviceGetPowerUsage(self._handle)
        except Exception as err:  # noqa: BLE001 - any NVMLError means this GPU cannot be metered
            pynvml.nvmlShutdown()
            return False, f"NVML not available: GPU {self._gpu_index} cannot be read ({err})"
        self._nvml = pynvml
        return True, ""

    def _begin(self, key: str) -> tuple[float, float] | PowerSampler:
        if self.uses_energy_counter:
            return self._clock(), self._energy_j()
        sampler = PowerSampler(self._power_w, self._sample_period_s, self._clock)
        sampler.start()
        return sampler

    def _end(self, state: tuple[float, float] | PowerSampler) -> Measurement:
        if isinstance(state, PowerSampler):
            return self._end_sampling(state)
        start_s, start_j = state
        energy_j = self._energy_j() - start_j
        duration_s = self._clock() - start_s
        return Measurement(energy_j, duration_s, f"nvml:energy-counter:{self.domain}", {self.domain: energy_j})

    def _end_sampling(self, sampler: PowerSampler) -> Measurement:
        try:
            samples = sampler.stop()
        except Exception as err:  # noqa: BLE001 - an NVMLError raised in the sampler thread
            raise MeterError(f"meter 'nvml': reading GPU power failed during the window ({err})") from err
        energy_j = integrate_trapezoid(samples)[self.domain]
        duration_s = samples[-1][0] - samples[0][0]
        return Measurement(energy_j, duration_s, f"nvml:power-sampling:{self.domain}", {self.domain: energy_j})

    def _abandon(self, state: tuple[float, float] | PowerSampler) -> None:
        if isinstance(state, PowerSampler):
            state.abandon()

    def _energy_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / _MJ_PER_J

    def _power_w(self) -> dict[str, float]:
        return {self.domain: self._nvml.nvmlDeviceGetPowerUsage(self._handle) / _MW_PER_W}


def _supports_energy_counter(pynvml: ModuleType, handle: Any) -> bool:
    """Whether the total-energy counter works on this GPU (Volta+); other NVML errors propagate."""
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError_NotSupported:
        return False
    return True
