"""Device profiles: the cited constants the energy model multiplies by.

A device is a TOML file, bundled under ``weightwise/profile/devices/`` (load it by its file stem)
or the user's own (load it by path). Every constant is a table with its source::

    name = "my-board"
    description = "what it is"

    [memory.onchip_weight_bytes]        # on-chip bytes usable for resident weights
    value = 2097152
    unit = "B"
    source = "data sheet X: 4 MB SRAM; assumption: half usable for weights"

    # likewise: memory.onchip_activation_bytes (on-chip bytes for activations and the key/value
    # cache, separate from the weight budget), memory.onchip_pj_per_byte, memory.dram_pj_per_byte,
    # memory.dram_bandwidth_bytes_per_s, compute.peak_macs_per_s and
    # compute.pj_per_mac.{fp32, fp16, bf16, int8, int4} (more dtypes may be added)

The inline form ``onchip_pj_per_byte = { value = 4.1, unit = "pJ/B", source = "..." }`` is the
same TOML. Every problem in a file is an `InputError` of one line naming the file and the key, so
a typo in a user's profile costs one look, not a traceback or a silently wrong energy.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from weightwise.errors import InputError
from weightwise.profile.devices import DEVICES_DIR

__all__ = ["DTYPES", "Constant", "DeviceSpec", "available_devices", "load_device"]

#: dtypes every profile must price, in the names `DeviceSpec.pj_per_mac_for` accepts.
DTYPES = ("fp32", "fp16", "bf16", "int8", "int4")

#: DeviceSpec scalar field -> (TOML table, key); the dotted path is also the key of `sources`.
_SCALARS = {
    "onchip_weight_bytes": ("memory", "onchip_weight_bytes"),
    "onchip_activation_bytes": ("memory", "onchip_activation_bytes"),
    "onchip_pj_per_byte": ("memory", "onchip_pj_per_byte"),
    "dram_pj_per_byte": ("memory", "dram_pj_per_byte"),
    "dram_bandwidth_bytes_per_s": ("memory", "dram_bandwidth_bytes_per_s"),
    "peak_macs_per_s": ("compute", "peak_macs_per_s"),
}
_TOP_KEYS = {"name", "description", "notes", "memory", "compute"}
_SECTION_KEYS = {
    "memory": {key for table, key in _SCALARS.values() if table == "memory"},
    "compute": {"peak_macs_per_s", "pj_per_mac"},
}
_DTYPE_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Constant:
    """One number of a device profile, with its unit and where it comes from."""

    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class DeviceSpec:
    """A device's energy and speed constants, each traceable to a source.

    Attributes:
        name: profile name (the file's ``name``; the bundled files use their stem).
        description: what the device is and which compute path the numbers assume.
        onchip_weight_bytes: on-chip bytes usable for resident weights (the placement budget).
        onchip_activation_bytes: on-chip bytes for activations and the key/value cache; a tensor
            (or cache) larger than this goes to DRAM.
        onchip_pj_per_byte: energy to read one weight byte from on-chip memory.
        dram_pj_per_byte: energy to read one weight byte from off-chip memory.
        dram_bandwidth_bytes_per_s: peak off-chip read bandwidth.
        peak_macs_per_s: peak multiply-accumulates per second of the device's accelerator path.
        pj_per_mac: arithmetic energy of one MAC by dtype name (read-only).
        sources: dotted TOML key (e.g. ``memory.dram_pj_per_byte``) -> `Constant` (read-only).
        path: the file the profile was read from.
    """

    name: str
    description: str
    onchip_weight_bytes: int
    onchip_activation_bytes: int
    onchip_pj_per_byte: float
    dram_pj_per_byte: float
    dram_bandwidth_bytes_per_s: float
    peak_macs_per_s: float
    pj_per_mac: Mapping[str, float] = field(hash=False)
    sources: Mapping[str, Constant] = field(hash=False, repr=False)
    path: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pj_per_mac", MappingProxyType(dict(self.pj_per_mac)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def pj_per_mac_for(self, dtype: str) -> float:
        """Energy of one MAC in ``dtype`` (fp32/fp16/bf16/int8/int4; float16-style names too)."""
        key = str(dtype).strip().lower()
        key = _DTYPE_ALIASES.get(key, key)
        if key not in self.pj_per_mac:
            raise InputError(
                f"device {self.name} ({self.path}): no pJ/MAC for dtype {dtype!r}; known: {', '.join(self.pj_per_mac)}"
            )
        return self.pj_per_mac[key]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready values plus every constant's unit and source."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "path": self.path}
        out.update({attr: getattr(self, attr) for attr in _SCALARS})
        out["pj_per_mac"] = dict(self.pj_per_mac)
        out["sources"] = {
            key: {"value": c.value, "unit": c.unit, "source": c.source} for key, c in self.sources.items()
        }
        return out


def available_devices() -> list[str]:
    """Names of the bundled device profiles (file stems), sorted."""
    return sorted(p.stem for p in DEVICES_DIR.glob("*.toml"))


def load_device(name_or_path: str | Path) -> DeviceSpec:
    """Load a bundled profile by name (``"jetson-orin-nano"``) or a user's TOML file by path.

    Raises:
        InputError: unknown name, missing or unreadable file, TOML syntax error, or a missing /
            malformed / non-positive constant; the message names the file and the key.
    """
    path = _resolve(name_or_path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"device file {path}: TOML syntax error: {exc}") from None
    except OSError as exc:
        raise InputError(f"device file {path}: cannot read: {exc.strerror or exc}") from None
    return _parse(data, path)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path).strip()
    if not text:
        raise InputError(f"device: empty name; choose one of {', '.join(available_devices())}")
    is_name = not text.endswith(".toml") and "/" not in text and "\\" not in text
    if is_name and (DEVICES_DIR / f"{text}.toml").is_file():
        return DEVICES_DIR / f"{text}.toml"
    path = Path(text).expanduser()
    if is_name and not path.exists():
        raise InputError(
            f"unknown device {text!r}: choose one of {', '.join(available_devices())} "
            f"or give the path of a .toml profile"
        )
    if not path.is_file():
        raise InputError(f"device file {path}: not found")
    return path


def _parse(data: dict[str, Any], path: Path) -> DeviceSpec:
    _check_keys(data, _TOP_KEYS, "", path)
    for section, allowed in _SECTION_KEYS.items():
        _check_keys(_table(data, section, path), allowed, f"{section}.", path)
    sources = {f"{table}.{key}": _constant(data, table, key, path) for table, key in _SCALARS.values()}
    for key in ("memory.onchip_weight_bytes", "memory.onchip_activation_bytes"):
        sources[key] = _whole_bytes(sources[key], key, path)
    per_mac_table = _table(data["compute"], "pj_per_mac", path, "compute.pj_per_mac")
    dtypes = list(DTYPES) + [d for d in per_mac_table if d not in DTYPES]
    for dtype in dtypes:
        key = f"compute.pj_per_mac.{dtype}"
        sources[key] = _constant(per_mac_table, None, dtype, path, key)
    return DeviceSpec(
        name=_text(data, "name", path),
        description=_text(data, "description", path),
        **{attr: sources[f"{table}.{key}"].value for attr, (table, key) in _SCALARS.items()},
        pj_per_mac={d: sources[f"compute.pj_per_mac.{d}"].value for d in dtypes},
        sources=sources,
        path=str(path),
    )


def _table(data: Mapping[str, Any], key: str, path: Path, dotted: str | None = None) -> dict[str, Any]:
    dotted = dotted or key
    if key not in data:
        raise InputError(f"device file {path}: missing table [{dotted}]")
    if not isinstance(data[key], dict):
        raise InputError(f"device file {path}: key '{dotted}' must be a table")
    return data[key]


def _check_keys(data: Mapping[str, Any], allowed: set[str], prefix: str, path: Path) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(
            f"device file {path}: unknown key '{prefix}{unknown[0]}'; "
            f"expected: {', '.join(prefix + k for k in sorted(allowed))}"
        )


def _text(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"device file {path}: key '{key}' must be a non-empty string")
    return value.strip()


def _constant(data: Mapping[str, Any], table: str | None, key: str, path: Path, dotted: str | None = None) -> Constant:
    """Read ``{value, unit, source}`` at data[table][key]; every flaw names the file and key."""
    dotted = dotted or f"{table}.{key}"
    parent = data if table is None else data[table]
    if key not in parent:
        raise InputError(f"device file {path}: missing key '{dotted}'")
    entry = parent[key]
    if not isinstance(entry, dict):
        raise InputError(
            f"device file {path}: key '{dotted}' must be a table "
            f'{{ value = ..., unit = "...", source = "..." }}, got {entry!r}'
        )
    _check_keys(entry, {"value", "unit", "source"}, f"{dotted}.", path)
    for part in ("value", "unit", "source"):
        if part not in entry:
            raise InputError(f"device file {path}: key '{dotted}' is missing '{part}'")
    value = entry["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"device file {path}: key '{dotted}.value' must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"device file {path}: key '{dotted}.value' must be a finite number > 0, got {value!r}")
    for part in ("unit", "source"):
        if not isinstance(entry[part], str) or not entry[part].strip():
            raise InputError(f"device file {path}: key '{dotted}.{part}' must be a non-empty string")
    return Constant(float(value), entry["unit"].strip(), " ".join(entry["source"].split()))


def _whole_bytes(c: Constant, key: str, path: Path) -> Constant:
    if c.value != int(c.value):
        raise InputError(f"device file {path}: key '{key}.value' must be a whole number of bytes, got {c.value!r}")
    return Constant(int(c.value), c.unit, c.source)
