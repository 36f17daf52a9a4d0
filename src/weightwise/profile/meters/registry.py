"""Pick a meter by name, or the first one that works on this machine.

``get_meter("auto")`` tries Jetson rails, then NVML, then RAPL, and falls back to a
`NullMeter` whose reason lists why each one was unavailable, so a result row can always say
why it has no measured energy (zeus: ``get_gpus()`` -> ``EmptyGPUs``).

Example:
    >>> meter = get_meter("auto")
    >>> meter.name in METER_NAMES
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from weightwise.errors import InputError
from weightwise.profile.meters.base import Meter, MeterWarning
from weightwise.profile.meters.jetson import JetsonMeter
from weightwise.profile.meters.null import NullMeter
from weightwise.profile.meters.nvml import NvmlMeter
from weightwise.profile.meters.rapl import RaplMeter

_FACTORIES: dict[str, Callable[[], Meter]] = {
    "jetson": JetsonMeter,
    "nvml": NvmlMeter,
    "rapl": RaplMeter,
}
# A Jetson's board input rail is the widest scope there, so it goes first; then GPU, then CPU.
AUTO_ORDER = ("jetson", "nvml", "rapl")
METER_NAMES = ("auto", *AUTO_ORDER, "null")


def available_meters() -> dict[str, Meter]:
    """The hardware meters that work here, by name, in `AUTO_ORDER` (may be empty)."""
    found = {}
    for name in AUTO_ORDER:
        meter = _FACTORIES[name]()
        if meter.available:
            found[name] = meter
    return found


def get_meter(name: str | None = "auto") -> Meter:
    """Return the meter called ``name``.

    Args:
        name: One of ``auto`` (or ``None``), ``jetson``, ``nvml``, ``rapl``, ``null``.

    Returns:
        The requested meter; a `NullMeter` (with a `MeterWarning`) when a named meter is
        unavailable, or when ``auto`` finds none.

    Raises:
        InputError: ``name`` is not a known meter.
    """
    key = "auto" if name is None else str(name).strip().lower()
    if key not in METER_NAMES:
        raise InputError(f"unknown meter {name!r}: choose one of {', '.join(METER_NAMES)}")
    if key == "null":
        return NullMeter("energy measurement disabled (meter 'null')")
    if key == "auto":
        return _auto()
    meter = _FACTORIES[key]()
    if meter.available:
        return meter
    warnings.warn(
        f"meter {key!r} is unavailable, energy will not be measured: {meter.reason}",
        MeterWarning,
        2,
    )
    return NullMeter(meter.reason)


def _auto() -> Meter:
    reasons = []
    for name in AUTO_ORDER:
        meter = _FACTORIES[name]()
        if meter.available:
            return meter
        reasons.append(f"{name}: {meter.reason}")
    return NullMeter("no energy meter available (" + "; ".join(reasons) + ")")
