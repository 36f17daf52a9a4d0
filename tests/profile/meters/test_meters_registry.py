"""weightwise.profile.meters.registry: names, auto order, the NullMeter fallback and its reason."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from weightwise.errors import InputError
from weightwise.profile.meters import (
    JetsonMeter,
    MeterWarning,
    NullMeter,
    NvmlMeter,
    RaplMeter,
    available_meters,
    get_meter,
    registry,
)


def _rapl_tree(root: Path) -> Path:
    zone = root / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    for name, value in (("name", "package-0"), ("energy_uj", "1"), ("max_energy_range_uj", "100")):
        (zone / name).write_text(f"{value}\n")
    return root / "powercap"


def _jetson_tree(root: Path) -> Path:
    hwmon = root / "drivers" / "ina3221" / "1-0040" / "hwmon" / "hwmon1"
    hwmon.mkdir(parents=True)
    for name, value in (("in1_label", "VDD_IN"), ("in1_input", "5000"), ("curr1_input", "1000")):
        (hwmon / name).write_text(f"{value}\n")
    return root / "drivers"


@pytest.fixture
def no_hardware(tmp_path, monkeypatch):
    """Factories pointing at empty fake roots, and no pynvml: nothing is available."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    factories = {
        "jetson": lambda: JetsonMeter(tmp_path / "no-drivers"),
        "nvml": NvmlMeter,
        "rapl": lambda: RaplMeter(tmp_path / "no-powercap"),
    }
    monkeypatch.setattr(registry, "_FACTORIES", factories)
    return factories


def test_unknown_meter_name_is_one_line_input_error():
    with pytest.raises(InputError) as err:
        get_meter("joulescope")
    message = str(err.value)
    assert "\n" not in message
    assert "unknown meter 'joulescope'" in message and "auto, jetson, nvml, rapl, null" in message


def test_null_by_name():
    meter = get_meter("null")
    assert isinstance(meter, NullMeter) and "disabled" in meter.reason


def test_auto_without_hardware_lists_every_reason(no_hardware):
    for name in ("auto", None, " AUTO "):
        meter = get_meter(name)
        assert isinstance(meter, NullMeter)
        assert meter.reason.startswith("no energy meter available (jetson: Jetson INA3221 not available")
        assert "; nvml: NVML not available: pynvml is not installed" in meter.reason
        assert "; rapl: RAPL not available:" in meter.reason
    assert available_meters() == {}


def test_auto_prefers_jetson_then_nvml_then_rapl(no_hardware, tmp_path, monkeypatch):
    rapl_root = _rapl_tree(tmp_path)
    monkeypatch.setitem(no_hardware, "rapl", lambda: RaplMeter(rapl_root))
    assert isinstance(get_meter("auto"), RaplMeter)
    jetson_root = _jetson_tree(tmp_path)
    monkeypatch.setitem(no_hardware, "jetson", lambda: JetsonMeter(jetson_root))
    assert isinstance(get_meter("auto"), JetsonMeter)
    assert list(available_meters()) == ["jetson", "rapl"]


def test_named_but_unavailable_meter_warns_and_falls_back(no_hardware):
    with pytest.warns(MeterWarning, match="meter 'rapl' is unavailable"):
        meter = get_meter("rapl")
    assert isinstance(meter, NullMeter)
    assert meter.reason.startswith("RAPL not available:")


def test_named_available_meter_is_returned(no_hardware, tmp_path, monkeypatch):
    rapl_root = _rapl_tree(tmp_path)
    monkeypatch.setitem(no_hardware, "rapl", lambda: RaplMeter(rapl_root))
    meter = get_meter("RAPL")
    assert isinstance(meter, RaplMeter) and meter.available
