"""CPU package and DRAM energy from Linux powercap (Intel RAPL, also AMD on recent kernels).

Each zone directory ``/sys/class/powercap/intel-rapl:<p>`` (sub-zones ``intel-rapl:<p>:<s>``,
found both at the top level and nested inside their parent) holds three files:

- ``name``: the domain, e.g. ``package-0``, ``core``, ``uncore``, ``dram``, ``psys``;
- ``energy_uj``: a cumulative energy counter in microjoules;
- ``max_energy_range_uj``: the value at which ``energy_uj`` wraps back to 0.

(Linux ``Documentation/power/powercap/powercap.rst``.) The counters update about every
millisecond, so `RaplMeter.update_period_s` is 0.001 s. Since the 2020 PLATYPUS fix
(CVE-2020-8694) ``energy_uj`` is readable by root only on most distributions.

Scope of ``energy_j``: the sum of top-level zones (one ``package-N`` per socket). Sub-zones
(``core``, ``uncore``, ``dram``) are reported in ``domains_j`` but not added again. ``psys``
(whole platform) overlaps the packages, so it is summed only when it is the sole top-level
zone. DRAM is a package sub-zone in powercap, so it is in ``domains_j`` only, not in the total.
``intel-rapl-mmio`` zones duplicate the MSR ones and are ignored.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weightwise.profile.meters.base import Measurement, Meter

_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_UJ_PER_J = 1e6


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone.

    Attributes:
        zone_id: Directory name, e.g. ``intel-rapl:0:1``.
        path: The zone directory.
        name: Content of its ``name`` file.
        key: Domain key in `Measurement.domains_j` (the name, qualified if names repeat).
        max_energy_range_uj: Counter wrap value in microjoules.
        top_level: Whether this is a top-level zone (counted in the total).
    """

    zone_id: str
    path: Path
    name: str
    key: str
    max_energy_range_uj: int
    top_level: bool


class RaplMeter(Meter):
    """Energy of CPU packages (and their sub-domains) from powercap counters.

    Args:
        sysfs_root: The powercap class directory (a fake tree in tests).
        clock: Monotonic clock in seconds, for window durations.

    Example:
        >>> meter = RaplMeter()
        >>> if meter.available:
        ...     with meter.window("encode") as w:
        ...         pass
    """

    name = "rapl"
    update_period_s = 0.001

    def __init__(
        self,
        sysfs_root: str | Path = "/sys/class/powercap",
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self._root = Path(sysfs_root)
        self._clock = clock
        self._zones: list[RaplZone] = []

    @property
    def zones(self) -> list[RaplZone]:
        """The zones found (empty when unavailable)."""
        return list(self._zones) if self.available else []

    def _probe(self) -> tuple[bool, str]:
        dirs = _find_zone_dirs(self._root)
        if not dirs:
            return False, f"RAPL not available: {self._root} has no intel-rapl zones"
        try:
            self._zones = _describe_zones(dirs)
            for zone in self._zones:
                _read_int(zone.path / "energy_uj")
        except (OSError, ValueError) as err:
            self._zones = []
            return False, f"RAPL not available: {_describe_error(err)}"
        return True, ""

    def _begin(self, key: str) -> tuple[float, dict[str, int]]:
        return self._clock(), self._read_counters_uj()

    def _end(self, state: tuple[float, dict[str, int]]) -> Measurement:
        start_s, start_uj = state
        end_uj = self._read_counters_uj()
        duration_s = self._clock() - start_s
        domains_j = {
            zone.key: _delta_uj(start_uj[zone.zone_id], end_uj[zone.zone_id], zone.max_energy_range_uj) / _UJ_PER_J
            for zone in self._zones
        }
        summed = _total_zones(self._zones)
        total_j = sum(domains_j[zone.key] for zone in summed)
        scope = "+".join(zone.key for zone in summed)
        return Measurement(energy_j=total_j, duration_s=duration_s, meter=f"rapl:{scope}", domains_j=domains_j)

    def _read_counters_uj(self) -> dict[str, int]:
        return {zone.zone_id: _read_int(zone.path / "energy_uj") for zone in self._zones}


def _find_zone_dirs(root: Path) -> dict[str, Path]:
    """Zone id -> directory, from the top level and from sub-zones nested in their parent."""
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted([*root.glob("intel-rapl:*"), *root.glob("intel-rapl:*/intel-rapl:*")]):
        if _ZONE_RE.match(path.name) and path.is_dir():
            found.setdefault(path.name, path)
    return found


def _describe_zones(dirs: dict[str, Path]) -> list[RaplZone]:
    """Read ``name`` and ``max_energy_range_uj`` and give every zone a unique domain key."""
    names = {zone_id: (path / "name").read_text().strip() for zone_id, path in dirs.items()}
    repeated = Counter(names.values())
    zones = []
    for zone_id, path in dirs.items():
        package, sub = _ZONE_RE.match(zone_id).groups()  # type: ignore[union-attr]
        key = names[zone_id]
        if repeated[key] > 1:  # e.g. one "dram" per socket -> "package-1/dram"
            parent = names.get(f"intel-rapl:{package}", f"intel-rapl:{package}")
            key = f"{parent}/{key}" if sub is not None else zone_id
        max_uj = _read_int(path / "max_energy_range_uj")
        zones.append(RaplZone(zone_id, path, names[zone_id], key, max_uj, top_level=sub is None))
    return zones


def _total_zones(zones: list[RaplZone]) -> list[RaplZone]:
    """Top-level zones that add up without overlap (psys only when nothing else is there)."""
    top = [zone for zone in zones if zone.top_level]
    without_psys = [zone for zone in top if zone.name != "psys"]
    return without_psys or top


def _delta_uj(start_uj: int, end_uj: int, max_energy_range_uj: int) -> int:
    """Counter difference in microjoules, allowing one wraparound at ``max_energy_range_uj``."""
    delta = end_uj - start_uj
    return delta + max_energy_range_uj if delta < 0 else delta


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _describe_error(err: OSError | ValueError) -> str:
    if isinstance(err, PermissionError):
        return f"permission denied reading {err.filename} (root-only since CVE-2020-8694; run as root or chmod a+r)"
    if isinstance(err, OSError):
        return f"cannot read {err.filename}: {err.strerror or err}"
    return f"unexpected counter value ({err})"
