"""Background power sampling and trapezoid integration, shared by the Jetson and NVML meters.

A `PowerSampler` reads instantaneous power (already in watts, per rail) once when started,
then every ``period_s`` seconds in a daemon thread, and once more when stopped, so the samples
span the whole window. `integrate_trapezoid` turns those samples into joules per rail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

PowerReader = Callable[[], Mapping[str, float]]
Sample = tuple[float, Mapping[str, float]]  # (time_s, {rail: power_w})


class PowerSampler:
    """Samples ``read_power_w()`` from start to stop.

    Args:
        read_power_w: Returns the instantaneous power per rail in watts.
        period_s: Seconds between samples in the background thread.
        clock: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, read_power_w: PowerReader, period_s: float, clock: Callable[[], float]):
        if period_s <= 0:
            raise ValueError(f"sampling period must be > 0 s, got {period_s}")
        self._read = read_power_w
        self._period_s = period_s
        self._clock = clock
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Take the first sample now, then keep sampling in a daemon thread."""
        self._take()
        self._thread = threading.Thread(target=self._run, name="weightwise-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        """Stop the thread, take the last sample, and return all samples in time order.

        Raises:
            OSError: (or whatever the reader raised) if a background read failed.
        """
        self._join()
        if self._error is not None:
            raise self._error
        self._take()
        return list(self._samples)

    def abandon(self) -> None:
        """Stop the thread and drop the samples."""
        self._join()
        self._samples.clear()

    def _join(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                self._take()
            except Exception as err:  # re-raised in stop(), on the caller's thread
                self._error = err
                return

    def _take(self) -> None:
        time_s = self._clock()
        self._samples.append((time_s, dict(self._read())))


def integrate_trapezoid(samples: Sequence[Sample]) -> dict[str, float]:
    """Energy per rail in joules from time-ordered power samples (trapezoid rule).

    Args:
        samples: ``(time_s, {rail: power_w})`` pairs in increasing time; rails missing from
            a sample contribute nothing for the intervals touching it.

    Returns:
        ``{rail: energy_j}`` for every rail seen; 0 J when fewer than two samples.
    """
    energy_j: dict[str, float] = {rail: 0.0 for _, powers in samples for rail in powers}
    for (t0, p0), (t1, p1) in zip(samples[:-1], samples[1:], strict=True):
        dt_s = t1 - t0
        for rail in p0.keys() & p1.keys():
            energy_j[rail] += 0.5 * (p0[rail] + p1[rail]) * dt_s
    return energy_j
