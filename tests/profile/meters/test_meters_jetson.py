"""weightwise.profile.meters.jetson on fake INA3221 sysfs trees (JetPack 5/6 hwmon, JP 4 iio)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from weightwise.profile.meters import JetsonMeter, MeterError


def _hwmon(root: Path, device: str, channels: dict[int, tuple[str, int, int]], hwmon: str = "hwmon3") -> Path:
    """JetPack 5/6: ina3221/<dev>/hwmon/hwmonN/in{N}_label, in{N}_input (mV), curr{N}_input (mA)."""
    path = root / "ina3221" / device / "hwmon" / hwmon
    path.mkdir(parents=True)
    for n, (label, mv, ma) in channels.items():
        (path / f"in{n}_label").write_text(f"{label}\n")
        (path / f"in{n}_input").write_text(f"{mv}\n")
        (path / f"curr{n}_input").write_text(f"{ma}\n")
        (path / f"in{n}_enable").write_text("1\n")
        (path / f"in{n + 3}_input").write_text("1234\n")  # shunt voltage (uV), not a rail
    (path / "in7_label").write_text("sum of shunt voltages\n")  # no curr7_input: must be skipped
    (path / "in7_input").write_text("3702\n")
    (path / "update_interval").write_text("5\n")
    return path


def _iio(root: Path, device: str, rails: dict[int, tuple[str, int]]) -> Path:
    """JetPack 4: ina3221x/<dev>/iio:device0/rail_name_{N}, in_power{N}_input (mW)."""
    path = root / "ina3221x" / device / "iio:device0"
    path.mkdir(parents=True)
    for n, (name, mw) in rails.items():
        (path / f"rail_name_{n}").write_text(f"{name}\n")
        (path / f"in_power{n}_input").write_text(f"{mw}\n")
        (path / f"in_current{n}_input").write_text("1\n")
        (path / f"in_voltage{n}_input").write_text("1\n")
    return path


ORIN_NANO = {
    1: ("VDD_IN", 5000, 1200),
    2: ("VDD_CPU_GPU_CV", 5000, 400),
    3: ("VDD_SOC", 5000, 300),
}  # 6, 2, 1.5 W


def test_hwmon_constant_power_gives_power_times_duration(tmp_path):
    _hwmon(tmp_path, "1-0040", ORIN_NANO)
    meter = JetsonMeter(tmp_path, period_s=0.005)
    assert meter.available, meter.reason
    assert [r.name for r in meter.rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    with meter.window("w") as w:
        time.sleep(0.05)
    m = w.measurement
    assert m.duration_s >= 0.05
    assert m.meter == "jetson:VDD_IN"
    assert m.energy_j == pytest.approx(6.0 * m.duration_s, rel=1e-9)  # VDD_IN only, not the sum
    assert dict(m.domains_j) == pytest.approx(
        {
            "VDD_IN": 6.0 * m.duration_s,
            "VDD_CPU_GPU_CV": 2.0 * m.duration_s,
            "VDD_SOC": 1.5 * m.duration_s,
        },
        rel=1e-9,
    )


def test_hwmon_linear_power_with_fake_clock(tmp_path):
    # The fake clock rewrites curr1_input for the time it returns, so each sample reads
    # P(t) = 2 + 10 t W exactly (1000 mV * (2000 + 10000 t) mA / 1e6); the trapezoid rule is exact.
    hw = _hwmon(tmp_path, "1-0040", {1: ("VDD_IN", 1000, 2000)})
    lock, now = threading.Lock(), [0.0]

    def clock() -> float:
        with lock:
            now[0] = round(now[0] + 0.01, 6)
            (hw / "curr1_input").write_text(f"{round(2000 + 10000 * now[0])}\n")
            return now[0]

    meter = JetsonMeter(tmp_path, period_s=0.002, clock=clock)
    assert meter.available
    meter.begin_window("ramp")
    time.sleep(0.03)
    m = meter.end_window("ramp")
    t0, t1 = 0.01, now[0]
    assert m.duration_s == pytest.approx(t1 - t0)
    assert t1 - t0 >= 0.02  # at least begin, one thread sample and end
    assert m.energy_j == pytest.approx(2 * (t1 - t0) + 5 * (t1**2 - t0**2), rel=1e-9)


def test_agx_orin_without_input_rail_sums_rails_and_skips_nc(tmp_path):
    _hwmon(
        tmp_path,
        "1-0040",
        {
            1: ("VDD_GPU_SOC", 5000, 1000),
            2: ("VDD_CPU_CV", 5000, 600),
            3: ("VIN_SYS_5V0", 5000, 400),
        },
    )
    _hwmon(
        tmp_path,
        "1-0041",
        {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 200), 3: ("NC", 0, 0)},
        hwmon="hwmon4",
    )
    meter = JetsonMeter(tmp_path, period_s=0.005)
    assert [r.name for r in meter.rails] == [
        "VDD_GPU_SOC",
        "VDD_CPU_CV",
        "VIN_SYS_5V0",
        "VDDQ_VDD2_1V8AO",
    ]
    with meter.window("w") as w:
        time.sleep(0.02)
    m = w.measurement
    assert m.meter == "jetson:sum"
    assert m.energy_j == pytest.approx((5.0 + 3.0 + 2.0 + 1.0) * m.duration_s, rel=1e-9)


def test_disabled_channel_and_repeated_labels(tmp_path):
    a = _hwmon(tmp_path, "1-0040", {1: ("VDD_IN", 5000, 100), 2: ("VDD_SOC", 5000, 100)})
    _hwmon(tmp_path, "1-0041", {1: ("VDD_SOC", 5000, 100)}, hwmon="hwmon4")
    (a / "in2_enable").write_text("0\n")
    names = [r.name for r in JetsonMeter(tmp_path).rails]
    assert names == [
        "VDD_IN",
        "VDD_SOC",
    ]  # 1-0040's VDD_SOC is disabled, so the label is unique again
    (a / "in2_enable").write_text("1\n")
    assert [r.name for r in JetsonMeter(tmp_path).rails] == [
        "VDD_IN",
        "VDD_SOC@1-0040",
        "VDD_SOC@1-0041",
    ]


def test_jetpack4_iio_layout_converts_milliwatts(tmp_path):
    _iio(tmp_path, "0-0040", {0: ("GPU", 3000), 1: ("CPU", 1500), 2: ("SOC", 500)})  # AGX Xavier: no input rail
    meter = JetsonMeter(tmp_path, period_s=0.005)
    assert [r.name for r in meter.rails] == ["GPU", "CPU", "SOC"]
    with meter.window("w") as w:
        time.sleep(0.02)
    m = w.measurement
    assert m.meter == "jetson:sum"
    assert m.energy_j == pytest.approx(5.0 * m.duration_s, rel=1e-9)
    assert m.domains_j["SOC"] == pytest.approx(0.5 * m.duration_s, rel=1e-9)


def test_jetpack4_nano_uses_pom_5v_in_as_total(tmp_path):
    _iio(
        tmp_path,
        "6-0040",
        {0: ("POM_5V_IN", 4000), 1: ("POM_5V_GPU", 1000), 2: ("POM_5V_CPU", 800)},
    )
    with JetsonMeter(tmp_path, period_s=0.005).window("w") as w:
        time.sleep(0.01)
    assert w.measurement.meter == "jetson:POM_5V_IN"
    assert w.measurement.energy_j == pytest.approx(4.0 * w.measurement.duration_s, rel=1e-9)


def test_missing_tree_is_unavailable(tmp_path):
    meter = JetsonMeter(tmp_path / "drivers")
    assert not meter.available
    assert meter.reason.startswith("Jetson INA3221 not available: no ina3221 hwmon or ina3221x iio rails under")
    with pytest.raises(MeterError, match="unavailable"):
        meter.begin_window("x")


def test_rail_vanishing_mid_window_raises_meter_error(tmp_path):
    hw = _hwmon(tmp_path, "1-0040", ORIN_NANO)
    meter = JetsonMeter(tmp_path, period_s=0.002)
    meter.begin_window("w")
    (hw / "curr1_input").unlink()
    time.sleep(0.01)
    with pytest.raises(MeterError, match="reading rail power failed"):
        meter.end_window("w")


def test_close_stops_sampler_threads(tmp_path):
    _hwmon(tmp_path, "1-0040", ORIN_NANO)
    meter = JetsonMeter(tmp_path, period_s=0.002)
    before = threading.active_count()
    meter.begin_window("a")
    meter.begin_window("b")
    assert threading.active_count() == before + 2
    meter.close()
    assert threading.active_count() == before
