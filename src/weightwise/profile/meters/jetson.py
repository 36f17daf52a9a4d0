"""Board power on NVIDIA Jetson from the on-module INA3221 monitors, integrated over a window.

Two sysfs layouts, both under ``/sys/bus/i2c/drivers`` (the constructor's ``root``):

- JetPack 5/6 (mainline ``ina3221`` hwmon driver):
  ``ina3221/<bus>-<addr>/hwmon/hwmon<M>/in<N>_label`` (rail name, ``NC`` when not connected),
  ``in<N>_input`` (bus voltage, mV) and ``curr<N>_input`` (current, mA), N = 1..3.
  Power = mV * mA / 1e6 W. Source: Linux ``Documentation/hwmon/ina3221.rst``
  (https://kernel.org/doc/Documentation/hwmon/ina3221.rst) for names and units; the path is the
  one energymon's ``jetson/ina3221.c`` and the alumet Jetson plugin README read
  (e.g. ``/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3``).
- JetPack 4 (NVIDIA L4T ``ina3221x`` IIO driver):
  ``ina3221x/<bus>-<addr>/iio:device<M>/rail_name_<N>`` and ``in_power<N>_input`` (mW), N = 0..2.
  Source: energymon ``jetson/ina3221x.c`` (``rail_name_%d``, ``in_power%d_input``).

Rail names (energymon ``jetson/JetsonPowerRails.md``, NVIDIA Jetson Developer Guide "Platform
Power and Performance"): Orin Nano/NX and Xavier NX ``VDD_IN, VDD_CPU_GPU_CV, VDD_SOC``; Nano
``POM_5V_IN, POM_5V_GPU, POM_5V_CPU``; AGX Orin ``VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0,
VDDQ_VDD2_1V8AO`` (no board-input rail).

Scope of ``energy_j``: the module input rail (``VDD_IN``, or ``POM_5V_IN``/``5V_IN`` on older
boards), which includes DRAM; the meter string is then ``jetson:VDD_IN``. Without one, the sum
of all rails, ``jetson:sum`` (rails may overlap or miss parts of the board: a rough total).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weightwise.profile.meters._sampler import PowerSampler, integrate_trapezoid
from weightwise.profile.meters.base import Measurement, Meter, MeterError

INPUT_RAILS = (
    "VDD_IN",
    "POM_5V_IN",
    "5V_IN",
)  # module input rail per board family, in preference order
_MW_PER_W = 1e3
_UW_PER_W = 1e6  # mV * mA = uW


@dataclass(frozen=True)
class JetsonRail:
    """One INA3221 channel.

    Attributes:
        name: Rail label (``VDD_IN``, ...), qualified with the I2C device if it repeats.
        files: The sysfs files read for it: ``(mV, mA)`` for hwmon, ``(mW,)`` for ina3221x.
    """

    name: str
    files: tuple[Path, ...]

    def read_power_w(self) -> float:
        """Instantaneous power in watts."""
        values = [float(path.read_text().strip()) for path in self.files]
        if len(values) == 2:
            return values[0] * values[1] / _UW_PER_W
        return values[0] / _MW_PER_W


class JetsonMeter(Meter):
    """Energy of Jetson power rails, sampled in a background thread and integrated.

    Args:
        root: The i2c drivers directory (a fake tree in tests).
        period_s: Seconds between power samples; also the meter's update period.
        clock: Monotonic clock in seconds (injectable for tests).

    Example:
        >>> meter = JetsonMeter(period_s=0.02)
        >>> if meter.available:
        ...     with meter.window("stream") as w:
        ...         pass
    """

    name = "jetson"

    def __init__(
        self,
        root: str | Path = "/sys/bus/i2c/drivers",
        period_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        if period_s <= 0:
            raise ValueError(f"JetsonMeter period_s must be > 0, got {period_s}")
        self._root = Path(root)
        self._clock = clock
        self.update_period_s = period_s
        self._rails: list[JetsonRail] = []

    @property
    def rails(self) -> list[JetsonRail]:
        """The rails found (empty when unavailable)."""
        return list(self._rails) if self.available else []

    def _probe(self) -> tuple[bool, str]:
        try:
            rails = _hwmon_rails(self._root / "ina3221") + _iio_rails(self._root / "ina3221x")
            if not rails:
                where = f"no ina3221 hwmon or ina3221x iio rails under {self._root}"
                return False, f"Jetson INA3221 not available: {where}"
            self._rails = _unique_names(rails)
            self._read_power_w()
        except (OSError, ValueError) as err:
            self._rails = []
            return False, f"Jetson INA3221 not available: cannot read rail power ({err})"
        return True, ""

    def _begin(self, key: str) -> PowerSampler:
        sampler = PowerSampler(self._read_power_w, self.update_period_s, self._clock)
        sampler.start()
        return sampler

    def _end(self, state: PowerSampler) -> Measurement:
        try:
            samples = state.stop()
        except (OSError, ValueError) as err:
            raise MeterError(f"meter 'jetson': reading rail power failed during the window ({err})") from err
        domains_j = integrate_trapezoid(samples)
        duration_s = samples[-1][0] - samples[0][0]
        input_rail = next((rail for rail in INPUT_RAILS if rail in domains_j), None)
        if input_rail is not None:
            return Measurement(domains_j[input_rail], duration_s, f"jetson:{input_rail}", domains_j)
        return Measurement(sum(domains_j.values()), duration_s, "jetson:sum", domains_j)

    def _abandon(self, state: PowerSampler) -> None:
        state.abandon()

    def _read_power_w(self) -> dict[str, float]:
        return {rail.name: rail.read_power_w() for rail in self._rails}


def _hwmon_rails(driver_dir: Path) -> list[JetsonRail]:
    """Rails of the hwmon driver: ``in<N>_label``, ``in<N>_input`` (mV), ``curr<N>_input`` (mA)."""
    rails = []
    for hwmon in sorted(driver_dir.glob("*/hwmon/hwmon*")):
        for label_file in sorted(hwmon.glob("in*_label")):
            channel = re.fullmatch(r"in(\d+)_label", label_file.name)
            if channel is None:
                continue
            volt, curr = hwmon / f"in{channel[1]}_input", hwmon / f"curr{channel[1]}_input"
            # in7_label (sum of shunt voltages) has no curr7_input; unconnected channels read "NC".
            if volt.exists() and curr.exists() and _connected(label_file, hwmon / f"in{channel[1]}_enable"):
                rails.append(JetsonRail(_label(label_file, hwmon.parents[1].name), (volt, curr)))
    return rails


def _iio_rails(driver_dir: Path) -> list[JetsonRail]:
    """Rails of the L4T ``ina3221x`` IIO driver: ``rail_name_<N>`` + ``in_power<N>_input`` (mW)."""
    rails = []
    for device in sorted(driver_dir.glob("*/iio:device*")):
        for name_file in sorted(device.glob("rail_name_*")):
            power = device / f"in_power{name_file.name.removeprefix('rail_name_')}_input"
            if power.exists() and _connected(name_file, None):
                rails.append(JetsonRail(_label(name_file, device.parent.name), (power,)))
    return rails


def _connected(label_file: Path, enable_file: Path | None) -> bool:
    if label_file.read_text().strip() in ("", "NC"):
        return False
    return enable_file is None or not enable_file.exists() or enable_file.read_text().strip() != "0"


def _label(label_file: Path, i2c_device: str) -> str:
    """``label@<bus>-<addr>``: the raw label, with its I2C device kept for de-duplication."""
    return f"{label_file.read_text().strip()}@{i2c_device}"


def _unique_names(rails: list[JetsonRail]) -> list[JetsonRail]:
    """Drop the ``@device`` suffix unless two devices report the same label."""
    bare = [rail.name.split("@", 1)[0] for rail in rails]
    return [
        JetsonRail(name if bare.count(name) == 1 else rail.name, rail.files)
        for name, rail in zip(bare, rails, strict=True)
    ]
