"""weightwise.profile.meters.base and null: the window contract, key errors, warnings, NullMeter."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings

import pytest

from weightwise.profile.meters import Measurement, Meter, MeterError, NullMeter, ShortWindowWarning
from weightwise.profile.meters._sampler import PowerSampler, integrate_trapezoid


class _StepClock:
    """Fake monotonic clock: every call advances by ``step_s``."""

    def __init__(self, step_s: float, start_s: float = 100.0):
        self.now_s, self.step_s = start_s, step_s

    def __call__(self) -> float:
        self.now_s += self.step_s
        return self.now_s


class _CountingMeter(Meter):
    """A meter whose energy counter is a plain attribute (joules), for testing the base class."""

    name = "counting"
    update_period_s = 0.5

    def __init__(self, clock: _StepClock):
        super().__init__()
        self.clock, self.counter_j, self.probes = clock, 0.0, 0

    def _probe(self) -> tuple[bool, str]:
        self.probes += 1
        return True, ""

    def _begin(self, key: str) -> tuple[float, float]:
        return self.clock(), self.counter_j

    def _end(self, state: tuple[float, float]) -> Measurement:
        start_s, start_j = state
        return Measurement(
            self.counter_j - start_j,
            self.clock() - start_s,
            "counting",
            {"all": self.counter_j - start_j},
        )


def test_measurement_power_units_and_immutability():
    m = Measurement(energy_j=12.0, duration_s=4.0, meter="rapl", domains_j={"package-0": 12.0, "dram": 2.5})
    assert m.power_w == 3.0
    assert math.isnan(Measurement(1.0, 0.0, "x", {}).power_w)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.energy_j = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.domains_j["dram"] = 0.0  # type: ignore[index]
    assert m.to_dict() == {
        "energy_j": 12.0,
        "duration_s": 4.0,
        "meter": "rapl",
        "domains_j": {"package-0": 12.0, "dram": 2.5},
    }


def test_measurement_copies_the_domains_it_was_given():
    domains = {"VDD_IN": 1.0}
    m = Measurement(1.0, 1.0, "jetson:VDD_IN", domains)
    domains["VDD_IN"] = 99.0
    assert m.domains_j["VDD_IN"] == 1.0


def test_window_context_manager_exposes_the_measurement():
    meter = _CountingMeter(_StepClock(1.0))
    assert meter.probes == 0  # constructing probes nothing
    with meter.window("decode") as w:
        assert w.measurement is None
        meter.counter_j += 7.5
    assert w.measurement is not None
    assert w.measurement.energy_j == 7.5
    assert w.measurement.duration_s == 1.0
    assert w.measurement.power_w == 7.5


def test_window_ends_even_when_the_block_raises():
    meter = _CountingMeter(_StepClock(1.0))
    with pytest.raises(RuntimeError, match="model crashed"), meter.window("boom") as w:
        meter.counter_j += 2.0
        raise RuntimeError("model crashed")
    assert w.measurement is not None and w.measurement.energy_j == 2.0
    meter.begin_window("boom")  # the key is free again


class _FailingSamplerMeter(Meter):
    """A sampling meter (a real `PowerSampler` thread) whose power reads fail after `good_reads`."""

    name = "failing"

    def __init__(self, good_reads: int):
        super().__init__()
        self.reads_left = good_reads

    def _probe(self) -> tuple[bool, str]:
        return True, ""

    def _read(self) -> dict[str, float]:
        self.reads_left -= 1
        if self.reads_left < 0:
            raise OSError("rail vanished")
        return {"rail": 1.0}

    def _begin(self, key: str) -> PowerSampler:
        sampler = PowerSampler(self._read, 0.001, time.monotonic)
        sampler.start()
        return sampler

    def _end(self, state: PowerSampler) -> Measurement:
        samples = state.stop()
        return Measurement(integrate_trapezoid(samples)["rail"], samples[-1][0] - samples[0][0], "failing")

    def _abandon(self, state: PowerSampler) -> None:
        state.abandon()


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "weightwise-power-sampler"]


@pytest.mark.parametrize("good_reads", [1_000_000, 3])  # the end reads fine / the sampler fails too
def test_a_failing_block_leaks_no_sampler_thread_and_keeps_its_own_error(good_reads):
    meter = _FailingSamplerMeter(good_reads)
    with pytest.raises(RuntimeError, match="model crashed"), meter.window("w"):
        assert len(_sampler_threads()) == 1
        time.sleep(0.02)
        raise RuntimeError("model crashed")
    assert _sampler_threads() == []
    meter.reads_left = 1_000_000
    meter.begin_window("w")  # the key is free again
    meter.close()
    assert _sampler_threads() == []


def test_a_failing_read_at_the_end_raises_and_stops_the_sampler():
    meter = _FailingSamplerMeter(3)
    with pytest.raises(OSError, match="rail vanished"), meter.window("w"):
        time.sleep(0.02)
    assert _sampler_threads() == []


def test_an_unavailable_meter_opens_no_window():
    class Unavailable(_CountingMeter):
        def _probe(self) -> tuple[bool, str]:
            return False, "no counter here"

    meter = Unavailable(_StepClock(1.0))
    with meter.window("w") as w:
        pass
    assert w.measurement is None and meter.reason == "no counter here"


def test_overlapping_windows_are_independent():
    meter = _CountingMeter(_StepClock(1.0))
    meter.begin_window("outer")
    meter.counter_j += 1.0
    meter.begin_window("inner")
    meter.counter_j += 2.0
    inner = meter.end_window("inner")
    meter.counter_j += 4.0
    outer = meter.end_window("outer")
    assert (inner.energy_j, outer.energy_j) == (2.0, 7.0)


def test_end_of_unknown_or_finished_window_raises_clear_error():
    meter = _CountingMeter(_StepClock(1.0))
    with pytest.raises(MeterError, match=r"no open window 'never'.*begin_window\('never'\)"):
        meter.end_window("never")
    meter.begin_window("once")
    meter.end_window("once")
    with pytest.raises(MeterError, match="no open window 'once'"):
        meter.end_window("once")


def test_begin_twice_with_same_key_raises():
    meter = _CountingMeter(_StepClock(1.0))
    meter.begin_window("k")
    with pytest.raises(MeterError, match="'k' is already open"):
        meter.begin_window("k")


def test_short_window_warns_and_long_window_does_not():
    short = _CountingMeter(_StepClock(0.1))  # window lasts 0.1 s < update period 0.5 s
    short.begin_window("tiny")
    with pytest.warns(ShortWindowWarning, match=r"'tiny' lasted 0\.100000 s.*update period of 0\.5 s"):
        short.end_window("tiny")
    long = _CountingMeter(_StepClock(2.0))
    long.begin_window("long")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        long.end_window("long")


def test_close_forgets_open_windows():
    meter = _CountingMeter(_StepClock(1.0))
    meter.begin_window("a")
    meter.close()
    with pytest.raises(MeterError):
        meter.end_window("a")


def test_null_meter_returns_none_and_keeps_its_reason():
    meter = NullMeter("no RAPL, no NVML")
    assert meter.available is False
    assert meter.reason == "no RAPL, no NVML"
    with meter.window("x") as w:
        pass
    assert w.measurement is None
    meter.begin_window("y")
    assert meter.end_window("y") is None
    with pytest.raises(MeterError):
        meter.end_window("y")
    meter.begin_window("z")
    with pytest.raises(MeterError, match="already open"):
        meter.begin_window("z")


def test_trapezoid_integrates_linear_power_exactly():
    # P(t) = 3 + 2 t W on t in [1, 4] s at uneven sample times -> 3*3 + (16 - 1) = 24 J.
    times = [1.0, 1.5, 2.75, 4.0]
    samples = [(t, {"rail": 3 + 2 * t}) for t in times]
    assert integrate_trapezoid(samples)["rail"] == pytest.approx(24.0, rel=1e-12)
    assert integrate_trapezoid(samples[:1]) == {"rail": 0.0}
