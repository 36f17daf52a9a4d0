"""weightwise.profile.meters.nvml with a fake ``pynvml`` module injected into sys.modules."""

from __future__ import annotations

import sys
import threading
import types

import pytest

from weightwise.profile.meters import MeterError, NvmlMeter


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class FakeNotSupported(FakeNVMLError):
    """Stands in for pynvml.NVMLError_NotSupported."""


def _fake_pynvml(energy_supported: bool = True, init_error: str | None = None) -> types.ModuleType:
    """A pynvml look-alike whose readings are plain attributes: ``energy_mj`` and ``power_mw``."""
    nv = types.ModuleType("pynvml")
    nv.NVMLError, nv.NVMLError_NotSupported = FakeNVMLError, FakeNotSupported
    nv.energy_mj, nv.power_mw, nv.calls = 0, 0, []

    def init() -> None:
        nv.calls.append("init")
        if init_error:
            raise FakeNVMLError(init_error)

    def energy(handle: object) -> int:
        assert handle == "handle-1"
        if not energy_supported:
            raise FakeNotSupported("Not Supported")
        return nv.energy_mj

    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: nv.calls.append("shutdown")
    nv.nvmlDeviceGetHandleByIndex = lambda index: f"handle-{index}"
    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    nv.nvmlDeviceGetPowerUsage = lambda handle: nv.power_mw
    return nv


def test_energy_counter_path_converts_millijoules(monkeypatch):
    nv = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    ticks = iter([10.0, 12.0])
    meter = NvmlMeter(gpu_index=1, clock=lambda: next(ticks))
    assert nv.calls == []  # constructing does not initialize NVML
    assert meter.available, meter.reason
    assert meter.uses_energy_counter
    nv.energy_mj = 1_000_000
    meter.begin_window("w")
    nv.energy_mj = 1_250_500  # +250_500 mJ = 250.5 J
    m = meter.end_window("w")
    assert m.energy_j == pytest.approx(250.5)
    assert m.duration_s == pytest.approx(2.0)
    assert m.power_w == pytest.approx(125.25)
    assert m.meter == "nvml:energy-counter:gpu1"
    assert dict(m.domains_j) == pytest.approx({"gpu1": 250.5})
    meter.close()
    assert nv.calls == ["init", "shutdown"]


def test_power_sampling_fallback_integrates_milliwatts(monkeypatch):
    # Fake clock steps 0.1 s per sample and sets P(t) = 100 + 50 t W (in mW) for that time;
    # the trapezoid rule is exact for a line: E = 100 (t1 - t0) + 25 (t1^2 - t0^2) J.
    nv = _fake_pynvml(energy_supported=False)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    lock, now = threading.Lock(), [0.0]

    def clock() -> float:
        with lock:
            now[0] = round(now[0] + 0.1, 6)
            nv.power_mw = round(100_000 + 50_000 * now[0])
            return now[0]

    meter = NvmlMeter(gpu_index=1, sample_period_s=0.002, clock=clock)
    assert meter.available and not meter.uses_energy_counter
    meter.begin_window("w")
    threading.Event().wait(0.02)
    m = meter.end_window("w")
    t0, t1 = 0.1, now[0]
    assert t1 > t0
    assert m.meter == "nvml:power-sampling:gpu1"
    assert m.duration_s == pytest.approx(t1 - t0)
    assert m.energy_j == pytest.approx(100 * (t1 - t0) + 25 * (t1**2 - t0**2), rel=1e-9)


@pytest.mark.filterwarnings("error")
def test_constant_power_fallback_with_real_clock(monkeypatch):
    nv = _fake_pynvml(energy_supported=False)
    nv.power_mw = 150_000  # 150 W
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    with NvmlMeter(gpu_index=1, sample_period_s=0.01).window("w") as w:
        threading.Event().wait(0.11)  # longer than the 0.1 s update period: no warning
    assert w.measurement.energy_j == pytest.approx(150.0 * w.measurement.duration_s, rel=1e-9)


def test_missing_pynvml_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    meter = NvmlMeter()
    assert not meter.available
    assert meter.reason == "NVML not available: pynvml is not installed (pip install nvidia-ml-py)"


def test_nvml_init_failure_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(init_error="NVML Shared Library Not Found"))
    meter = NvmlMeter()
    assert not meter.available
    assert meter.reason == "NVML not available: nvmlInit failed (NVML Shared Library Not Found)"
    with pytest.raises(MeterError, match="nvmlInit failed"):
        meter.begin_window("x")


def test_bad_gpu_index_is_unavailable_and_shuts_nvml_down(monkeypatch):
    nv = _fake_pynvml()

    def no_such_gpu(index: int) -> str:
        raise FakeNVMLError("Invalid Argument")

    nv.nvmlDeviceGetHandleByIndex = no_such_gpu
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    meter = NvmlMeter(gpu_index=7)
    assert not meter.available
    assert meter.reason == "NVML not available: GPU 7 cannot be read (Invalid Argument)"
    assert nv.calls == ["init", "shutdown"]
