"""weightwise.profile.meters.rapl on fake powercap trees laid out like /sys/class/powercap."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pytest

from weightwise.profile.meters import MeterError, RaplMeter, ShortWindowWarning
from weightwise.profile.meters import rapl as rapl_module

MAX_UJ = 262143328850  # a real max_energy_range_uj value (Intel client part)


def _one_second_clock():
    """Fake clock: every window lasts 1 s, well above the 1 ms update period."""
    return itertools.count(start=0.0, step=1.0).__next__


def _zone(root: Path, zone_id: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    """Create a zone; sub-zones are nested in their parent and symlinked at the top, as in sysfs."""
    parent_id = zone_id.rsplit(":", 1)[0] if zone_id.count(":") == 2 else None
    path = root / parent_id / zone_id if parent_id else root / zone_id
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (path / "enabled").write_text("1\n")
    if parent_id:
        (root / zone_id).symlink_to(path, target_is_directory=True)
    return path


def _set(path: Path, energy_uj: int) -> None:
    (path / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def client_tree(tmp_path: Path) -> dict[str, Path]:
    """One package with core, uncore and dram sub-zones, plus the platform (psys) zone."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control-type directory, not a zone
    (root / "intel-rapl" / "enabled").write_text("1\n")
    return {
        "root": root,
        "pkg": _zone(root, "intel-rapl:0", "package-0", 10_000_000),
        "core": _zone(root, "intel-rapl:0:0", "core", 4_000_000),
        "uncore": _zone(root, "intel-rapl:0:1", "uncore", 1_000_000),
        "dram": _zone(root, "intel-rapl:0:2", "dram", 7_000_000),
        "psys": _zone(root, "intel-rapl:1", "psys", 50_000_000),
    }


def test_domains_and_total_without_double_counting(client_tree):
    meter = RaplMeter(client_tree["root"], clock=_one_second_clock())
    assert meter.available, meter.reason
    assert sorted(z.zone_id for z in meter.zones) == [
        "intel-rapl:0",
        "intel-rapl:0:0",
        "intel-rapl:0:1",
        "intel-rapl:0:2",
        "intel-rapl:1",
    ]
    meter.begin_window("w")
    _set(client_tree["pkg"], 10_000_000 + 6_500_000)  # +6.5 J
    _set(client_tree["core"], 4_000_000 + 4_000_000)  # +4 J, inside the package
    _set(client_tree["uncore"], 1_000_000 + 250_000)  # +0.25 J, inside the package
    _set(client_tree["dram"], 7_000_000 + 1_200_000)  # +1.2 J
    _set(client_tree["psys"], 50_000_000 + 9_000_000)  # +9 J, overlaps the package
    m = meter.end_window("w")
    assert m.energy_j == pytest.approx(6.5)  # package only: not 6.5+4+0.25, not +9 (psys)
    assert m.meter == "rapl:package-0"
    assert dict(m.domains_j) == pytest.approx({"package-0": 6.5, "core": 4.0, "uncore": 0.25, "dram": 1.2, "psys": 9.0})


def test_counter_wraparound_between_begin_and_end(tmp_path):
    root = tmp_path / "powercap"
    pkg = _zone(root, "intel-rapl:0", "package-0", 999_000_000, max_uj=1_000_000_000)
    meter = RaplMeter(root, clock=_one_second_clock())
    meter.begin_window("wrap")
    _set(pkg, 500_000)  # wrapped: (1e9 - 999e6) + 0.5e6 = 1.5e6 uJ
    m = meter.end_window("wrap")
    assert m.energy_j == pytest.approx(1.5)
    assert m.domains_j["package-0"] == pytest.approx(1.5)


def test_two_sockets_sum_packages_and_qualify_repeated_dram(tmp_path):
    root = tmp_path / "powercap"
    p0, d0 = _zone(root, "intel-rapl:0", "package-0", 0), _zone(root, "intel-rapl:0:0", "dram", 0)
    p1, d1 = _zone(root, "intel-rapl:1", "package-1", 0), _zone(root, "intel-rapl:1:0", "dram", 0)
    meter = RaplMeter(root, clock=_one_second_clock())
    meter.begin_window("w")
    for path, uj in ((p0, 3_000_000), (d0, 500_000), (p1, 2_000_000), (d1, 250_000)):
        _set(path, uj)
    m = meter.end_window("w")
    assert m.energy_j == pytest.approx(5.0)
    assert m.meter == "rapl:package-0+package-1"
    assert dict(m.domains_j) == pytest.approx(
        {"package-0": 3.0, "package-0/dram": 0.5, "package-1": 2.0, "package-1/dram": 0.25}
    )


def test_missing_tree_is_unavailable_with_reason(tmp_path):
    meter = RaplMeter(tmp_path / "no-powercap")  # constructing touches nothing
    assert not meter.available
    assert meter.reason == f"RAPL not available: {tmp_path / 'no-powercap'} has no intel-rapl zones"
    assert meter.zones == []
    with pytest.raises(MeterError, match="has no intel-rapl zones"):
        meter.begin_window("x")


def test_zone_without_energy_file_is_unavailable(tmp_path):
    root = tmp_path / "powercap"
    pkg = _zone(root, "intel-rapl:0", "package-0", 1)
    (pkg / "energy_uj").unlink()  # what a reader sees when the file is hidden from it
    meter = RaplMeter(root)
    assert not meter.available
    assert "RAPL not available: cannot read" in meter.reason and "energy_uj" in meter.reason


def test_permission_denied_names_the_file(tmp_path, monkeypatch):
    root = tmp_path / "powercap"
    pkg = _zone(root, "intel-rapl:0", "package-0", 1)

    def denied(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return int(path.read_text())

    monkeypatch.setattr(rapl_module, "_read_int", denied)
    meter = RaplMeter(root)
    assert not meter.available
    assert meter.reason.startswith(f"RAPL not available: permission denied reading {pkg / 'energy_uj'}")


def test_short_rapl_window_warns(tmp_path):
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", "package-0", 1)
    ticks = iter([5.0, 5.0002, 7.0, 9.0])  # first window 0.2 ms, second 2 s
    meter = RaplMeter(root, clock=lambda: next(ticks))
    meter.begin_window("short")
    with pytest.warns(ShortWindowWarning, match="update period of 0.001 s"):
        meter.end_window("short")
    meter.begin_window("long")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert meter.end_window("long").duration_s == pytest.approx(2.0)
