"""The measurement contract every energy meter follows.

A meter measures named windows: ``begin_window(key)`` reads its counters (or starts sampling),
``end_window(key)`` reads them again and returns a `Measurement` in joules and seconds. The shape
follows ml-energy/zeus (``ZeusMonitor.begin_window/end_window -> Measurement``), with the unit
in every field name and the unit conversion done once, inside each adapter.

Windows shorter than a meter's update period read too little energy (often 0 J), so
`Meter.end_window` warns with `ShortWindowWarning`; per-tensor energy comes from the analytic
model, and meters only validate totals over long windows (`weightwise.profile.energy`).

Callers use `with meter.window(key) as w:` (never a bare begin/end pair): the window is closed on
any exit, so a failure inside it cannot leave a sampler thread running; on a meter that cannot
measure here (`available` is False, `NullMeter` included) the window measures nothing and
`w.measurement` stays None, with `meter.reason` saying why. Results record `meter` (the name),
`meter_reason` and `measured_energy_j` as separate fields. Whoever creates a meter closes it
(`close()`, or `with get_meter(...) as meter:`).

Example:
    >>> from weightwise.profile.meters import get_meter
    >>> meter = get_meter("auto")
    >>> with meter.window("decode") as w:
    ...     pass  # the work to measure
    >>> w.measurement is None or w.measurement.energy_j >= 0.0
    True
"""

from __future__ import annotations

import contextlib
import math
import types
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class MeterError(RuntimeError):
    """A meter was used wrongly (unknown or duplicate window key) or failed while reading."""


class MeterWarning(UserWarning):
    """A meter result is less trustworthy than it looks (fallback meter, short window)."""


class ShortWindowWarning(MeterWarning):
    """A window was shorter than the meter's update period, so its energy is unreliable."""


@dataclass(frozen=True)
class Measurement:
    """Energy measured over one window.

    Attributes:
        energy_j: Total energy over the window in joules (what the meter string says it covers).
        duration_s: Wall-clock length of the window in seconds.
        meter: Which meter and which scope produced ``energy_j``, e.g. ``"rapl"``,
            ``"jetson:VDD_IN"``, ``"nvml:energy-counter:gpu0"``.
        domains_j: Energy per rail or domain in joules, e.g. ``{"package-0": .., "dram": ..}``.
            Domains may overlap each other; only ``energy_j`` is a non-overlapping total.
    """

    energy_j: float
    duration_s: float
    meter: str
    domains_j: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = types.MappingProxyType({str(k): float(v) for k, v in self.domains_j.items()})
        object.__setattr__(self, "domains_j", frozen)

    @property
    def power_w(self) -> float:
        """Mean power over the window in watts (NaN for a zero-length window)."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for JSONL result rows)."""
        return {
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "meter": self.meter,
            "domains_j": dict(self.domains_j),
        }


class MeterWindow:
    """Context manager returned by `Meter.window`; holds the `Measurement` after exit.

    Attributes:
        key: The window's key.
        measurement: ``None`` inside the block; after exit, what ``end_window`` returned
            (still ``None`` for a meter that cannot measure here, such as a `NullMeter`).
    """

    def __init__(self, meter: Meter, key: str):
        self._meter = meter
        self.key = key
        self.measurement: Measurement | None = None
        self._open = False

    def __enter__(self) -> MeterWindow:
        if self._meter.available:  # an unavailable meter measures nothing; its reason says why
            self._meter.begin_window(self.key)
            self._open = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # End the window even when the block raised, so no sampler thread is left running.
        if not self._open:
            return
        self._open = False
        if exc_type is None:
            self.measurement = self._meter.end_window(self.key)
            return
        with contextlib.suppress(Exception):  # the block's own error is the one to report
            self.measurement = self._meter.end_window(self.key)


class Meter(ABC):
    """An energy meter behind one interface; subclasses wrap one kind of hardware counter.

    Constructing a meter has no side effects: hardware is probed on the first use of
    `available`/`reason` and opened in `begin_window`. Subclasses implement `_probe`,
    `_begin` and `_end`; this class keeps the window bookkeeping and the warnings.

    Attributes:
        name: Short meter name used by the registry (``"rapl"``, ``"nvml"``, ...).
        update_period_s: How often the underlying counter or sample changes, in seconds;
            windows shorter than this trigger a `ShortWindowWarning`.
    """

    name: str = "meter"
    update_period_s: float = 0.0

    def __init__(self) -> None:
        self._windows: dict[str, Any] = {}
        self._probed: tuple[bool, str] | None = None

    @property
    def available(self) -> bool:
        """Whether this meter can measure on this machine (probed once, then cached)."""
        return self._probe_once()[0]

    @property
    def reason(self) -> str:
        """Why the meter is unavailable (empty string when it is available)."""
        return self._probe_once()[1]

    def begin_window(self, key: str) -> None:
        """Start measuring a window named ``key``.

        Raises:
            MeterError: ``key`` is already open, or the meter is unavailable.
        """
        if key in self._windows:
            raise MeterError(f"meter {self.name!r}: window {key!r} is already open; end it before reusing it")
        if not self.available:
            raise MeterError(f"meter {self.name!r} is unavailable: {self.reason}")
        self._windows[key] = self._begin(key)

    def end_window(self, key: str) -> Measurement | None:
        """Stop the window ``key`` and return its energy.

        Returns:
            The `Measurement` (``None`` only for `NullMeter`, which measures nothing).

        Raises:
            MeterError: ``key`` was never begun or was already ended.
        """
        if key not in self._windows:
            open_keys = ", ".join(repr(k) for k in self._windows) or "none"
            raise MeterError(
                f"meter {self.name!r}: no open window {key!r} (open windows: {open_keys}); "
                f"call begin_window({key!r}) first"
            )
        state = self._windows.pop(key)
        try:
            measurement = self._end(state)
        except BaseException:
            self._abandon(state)  # a failed read must not leave a sampler thread running
            raise
        if measurement is not None:
            self._warn_if_short(key, measurement)
        return measurement

    def window(self, key: str) -> MeterWindow:
        """Measure a ``with`` block; read ``.measurement`` from the returned object afterwards.

        The window is ended however the block exits. A meter that cannot measure here
        (`available` False) opens no window: ``.measurement`` stays ``None``.
        """
        return MeterWindow(self, key)

    def close(self) -> None:
        """Abandon open windows and release the hardware; the meter can be used again later."""
        for state in list(self._windows.values()):
            self._abandon(state)
        self._windows.clear()

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "available" if self._probed and self._probed[0] else "not probed" if not self._probed else "unavailable"
        return f"{type(self).__name__}(name={self.name!r}, {state})"

    def _probe_once(self) -> tuple[bool, str]:
        if self._probed is None:
            self._probed = self._probe()
        return self._probed

    def _warn_if_short(self, key: str, measurement: Measurement) -> None:
        if measurement.duration_s < self.update_period_s:
            warnings.warn(
                f"meter {self.name!r}: window {key!r} lasted {measurement.duration_s:.6f} s, "
                f"shorter than the meter's update period of {self.update_period_s} s; its energy "
                f"({measurement.energy_j:.6g} J) is unreliable and may read as zero",
                ShortWindowWarning,
                stacklevel=3,
            )

    @abstractmethod
    def _probe(self) -> tuple[bool, str]:
        """Return ``(available, reason)``; reason is empty when available."""

    @abstractmethod
    def _begin(self, key: str) -> Any:
        """Read the counters or start sampling; return the window's state."""

    @abstractmethod
    def _end(self, state: Any) -> Measurement | None:
        """Turn a window's state into a `Measurement`."""

    def _abandon(self, state: Any) -> None:  # noqa: B027 - optional hook, most meters hold nothing
        """Release what `_begin` started (a sampler thread) without measuring; default: nothing."""
