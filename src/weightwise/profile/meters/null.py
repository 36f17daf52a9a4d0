"""The empty fallback meter: windows work, nothing is measured.

Contract: `NullMeter.end_window` returns ``None`` (never a fake 0 J or NaN measurement).
Callers record ``measured_energy_j: null`` together with ``meter_reason: meter.reason``, so a
result row always says why it has no measured energy. This mirrors zeus's ``EmptyGPUs``.

Example:
    >>> meter = NullMeter("no energy counter found on this machine")
    >>> with meter.window("decode") as w:
    ...     pass
    >>> w.measurement is None, meter.reason
    (True, 'no energy counter found on this machine')
"""

from __future__ import annotations

from weightwise.profile.meters.base import Meter


class NullMeter(Meter):
    """A meter that measures nothing and says why.

    Args:
        reason: Why no real meter is in use (shown to users and stored in result rows).
    """

    name = "null"
    update_period_s = 0.0

    def __init__(self, reason: str = "no meter selected"):
        super().__init__()
        self._reason = reason

    @property
    def available(self) -> bool:
        """Always ``False``: a null meter never measures."""
        return False

    @property
    def reason(self) -> str:
        """Why no real meter is in use."""
        return self._reason

    def begin_window(self, key: str) -> None:
        """Open window ``key`` (bookkeeping only, so key errors match the real meters)."""
        if key in self._windows:
            super().begin_window(key)  # raises the shared "already open" error
        self._windows[key] = None

    def __repr__(self) -> str:
        return f"NullMeter(reason={self._reason!r})"

    def _probe(self) -> tuple[bool, str]:
        return False, self._reason

    def _begin(self, key: str) -> None:
        return None

    def _end(self, state: None) -> None:
        return None
