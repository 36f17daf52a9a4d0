"""Measured energy windows: one interface over NVML, RAPL, Jetson rails and a null fallback.

Example:
    >>> from weightwise.profile.meters import get_meter
    >>> meter = get_meter("auto")  # first available of jetson, nvml, rapl; else NullMeter
    >>> with meter.window("decode") as w:
    ...     pass
    >>> row = {"measured_energy_j": w.measurement.energy_j if w.measurement else None,
    ...        "meter_reason": meter.reason}
"""

from __future__ import annotations

from weightwise.profile.meters.base import (
    Measurement,
    Meter,
    MeterError,
    MeterWarning,
    MeterWindow,
    ShortWindowWarning,
)
from weightwise.profile.meters.jetson import JetsonMeter
from weightwise.profile.meters.null import NullMeter
from weightwise.profile.meters.nvml import NvmlMeter
from weightwise.profile.meters.rapl import RaplMeter
from weightwise.profile.meters.registry import METER_NAMES, available_meters, get_meter

__all__ = [
    "METER_NAMES",
    "JetsonMeter",
    "Measurement",
    "Meter",
    "MeterError",
    "MeterWarning",
    "MeterWindow",
    "NullMeter",
    "NvmlMeter",
    "RaplMeter",
    "ShortWindowWarning",
    "available_meters",
    "get_meter",
]
