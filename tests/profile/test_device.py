"""Device profiles: the bundled files load, every constant is cited, the numbers obey physics,
and every flaw in a user's file is a one-line InputError naming the file and the key."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from weightwise.errors import InputError
from weightwise.profile.device import DTYPES, Constant, DeviceSpec, available_devices, load_device
from weightwise.profile.devices import DEVICES_DIR

BUNDLED = ("jetson-orin-nano", "mcu-npu", "phone-soc", "raspberry-pi-5", "x86-laptop")
UNITS = {
    "memory.onchip_weight_bytes": "B",
    "memory.onchip_activation_bytes": "B",
    "memory.onchip_pj_per_byte": "pJ/B",
    "memory.dram_pj_per_byte": "pJ/B",
    "memory.dram_bandwidth_bytes_per_s": "B/s",
    "compute.peak_macs_per_s": "MAC/s",
    **{f"compute.pj_per_mac.{d}": "pJ/MAC" for d in DTYPES},
}


def _c(value, unit: str) -> dict:
    return {"value": value, "unit": unit, "source": "test: a made-up number"}


def _valid() -> dict:
    return {
        "name": "toy-board",
        "description": "a board that exists only in this test",
        "memory": {
            "onchip_weight_bytes": _c(1048576, "B"),
            "onchip_activation_bytes": _c(524288, "B"),
            "onchip_pj_per_byte": _c(2.0, "pJ/B"),
            "dram_pj_per_byte": _c(60.0, "pJ/B"),
            "dram_bandwidth_bytes_per_s": _c(1.0e10, "B/s"),
        },
        "compute": {
            "peak_macs_per_s": _c(1.0e12, "MAC/s"),
            "pj_per_mac": {d: _c(v, "pJ/MAC") for d, v in zip(DTYPES, (4.0, 1.5, 1.0, 0.3, 0.15), strict=True)},
        },
    }


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def _dump(data: dict, prefix: tuple[str, ...] = ()) -> str:
    """A small TOML writer for the nested-table shape of a device profile."""
    lines = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{'.'.join(prefix)}]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(_dump(v, prefix + (k,)))
    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, data: dict | str, name: str = "board.toml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else _dump(data), encoding="utf-8")
    return path


def _at(data: dict, dotted: str) -> tuple[dict, str]:
    *parents, last = dotted.split(".")
    for p in parents:
        data = data[p]
    return data, last


def _delete(dotted: str):
    def mutate(data: dict) -> None:
        parent, last = _at(data, dotted)
        del parent[last]

    return mutate


def _set(dotted: str, value):
    def mutate(data: dict) -> None:
        parent, last = _at(data, dotted)
        parent[last] = value

    return mutate


def _assert_one_line_naming(exc: InputError, *needles: str) -> None:
    message = str(exc)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


# --- the bundled profiles ---------------------------------------------------------------------


def test_bundled_devices_are_the_five_documented_ones():
    assert available_devices() == sorted(BUNDLED)
    assert {p.name for p in DEVICES_DIR.glob("*.toml")} == {f"{n}.toml" for n in BUNDLED}


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_device_loads_with_every_constant_cited(name):
    spec = load_device(name)
    assert isinstance(spec, DeviceSpec)
    assert spec.name == name
    assert spec.description
    assert Path(spec.path) == DEVICES_DIR / f"{name}.toml"
    assert set(spec.sources) == set(UNITS)
    for key, const in spec.sources.items():
        assert isinstance(const, Constant)
        assert const.source.strip(), f"{name}: {key} has no source"
        assert len(const.source) > 40, f"{name}: {key} source is too thin to check: {const.source!r}"
        assert const.unit == UNITS[key], f"{name}: {key} unit {const.unit!r}"
        assert const.value > 0
    # the fields are the cited values, not copies that could drift
    assert spec.dram_pj_per_byte == spec.sources["memory.dram_pj_per_byte"].value
    assert spec.onchip_weight_bytes == spec.sources["memory.onchip_weight_bytes"].value
    assert isinstance(spec.onchip_weight_bytes, int)
    assert spec.onchip_activation_bytes == spec.sources["memory.onchip_activation_bytes"].value
    assert isinstance(spec.onchip_activation_bytes, int)
    assert spec.pj_per_mac == {d: spec.sources[f"compute.pj_per_mac.{d}"].value for d in DTYPES}


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_device_obeys_physics(name):
    spec = load_device(name)
    # an off-chip byte costs more than an on-chip one, by a wide margin
    assert spec.dram_pj_per_byte > 5 * spec.onchip_pj_per_byte
    # narrower arithmetic is cheaper
    e = spec.pj_per_mac
    assert e["int4"] < e["int8"] < e["fp16"] < e["fp32"]
    assert e["int8"] < e["bf16"] < e["fp32"]
    # magnitudes stay inside what the cited literature allows
    assert 0.1 <= spec.onchip_pj_per_byte <= 20  # Horowitz 45 nm: 1.25 (8 KB) .. 12.5 (1 MB) pJ/B
    assert 16 <= spec.dram_pj_per_byte <= 400  # 2 .. 50 pJ/bit
    assert 64 * 1024 <= spec.onchip_weight_bytes <= 64 * 2**20
    assert 64 * 1024 <= spec.onchip_activation_bytes <= 64 * 2**20
    assert 1e8 <= spec.dram_bandwidth_bytes_per_s <= 1e12
    assert 1e9 <= spec.peak_macs_per_s <= 1e15
    assert 0.01 <= e["int8"] <= 1.0 and 0.5 <= e["fp32"] <= 10


def test_devices_rank_as_their_hardware_does():
    spec = {n: load_device(n) for n in BUNDLED}
    mcu, jetson, pi = spec["mcu-npu"], spec["jetson-orin-nano"], spec["raspberry-pi-5"]
    # The Corstone-300 reference has as much NPU SRAM (4 MiB) as the Orin Nano has system cache,
    # so with the same "half usable" rule the budgets tie; the MCU never has more.
    assert mcu.onchip_weight_bytes <= jetson.onchip_weight_bytes
    assert mcu.dram_bandwidth_bytes_per_s == min(s.dram_bandwidth_bytes_per_s for s in spec.values())
    assert mcu.peak_macs_per_s == min(s.peak_macs_per_s for s in spec.values())
    assert mcu.dram_pj_per_byte == max(s.dram_pj_per_byte for s in spec.values())
    assert pi.dram_bandwidth_bytes_per_s < jetson.dram_bandwidth_bytes_per_s
    assert pi.peak_macs_per_s < jetson.peak_macs_per_s < spec["phone-soc"].peak_macs_per_s
    # LPDDR5-class memory costs less per byte than the LPDDR4X of the Pi
    assert jetson.dram_pj_per_byte < pi.dram_pj_per_byte


def test_spec_is_read_only_and_serializable():
    spec = load_device("jetson-orin-nano")
    with pytest.raises(TypeError):
        spec.pj_per_mac["fp32"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.sources["memory.dram_pj_per_byte"] = None  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.dram_pj_per_byte = 1.0  # type: ignore[misc]
    out = json.loads(json.dumps(spec.to_dict()))
    assert out["name"] == "jetson-orin-nano"
    assert out["dram_pj_per_byte"] == spec.dram_pj_per_byte
    assert out["pj_per_mac"]["int8"] == spec.pj_per_mac["int8"]
    cited = spec.sources["memory.dram_pj_per_byte"]
    assert out["sources"]["memory.dram_pj_per_byte"] == {
        "value": cited.value,
        "unit": cited.unit,
        "source": cited.source,
    }
    assert set(out["sources"]) == set(UNITS)


def test_pj_per_mac_for_known_aliases_and_unknown_dtype():
    spec = load_device("raspberry-pi-5")
    assert spec.pj_per_mac_for("fp16") == spec.pj_per_mac["fp16"]
    assert spec.pj_per_mac_for(" FP16 ") == spec.pj_per_mac["fp16"]
    assert spec.pj_per_mac_for("float16") == spec.pj_per_mac["fp16"]
    assert spec.pj_per_mac_for("bfloat16") == spec.pj_per_mac["bf16"]
    assert spec.pj_per_mac_for("float32") == spec.pj_per_mac["fp32"]
    with pytest.raises(InputError) as err:
        spec.pj_per_mac_for("fp8")
    _assert_one_line_naming(err.value, "'fp8'", "raspberry-pi-5", "int4")


# --- a user's own profile ---------------------------------------------------------------------


def test_user_toml_loads_by_path(tmp_path):
    path = _write(tmp_path, _valid())
    spec = load_device(path)
    assert spec.name == "toy-board"
    assert spec.path == str(path)
    assert spec.onchip_weight_bytes == 1048576 and isinstance(spec.onchip_weight_bytes, int)
    assert spec.dram_pj_per_byte == 60.0
    assert spec.pj_per_mac_for("int4") == 0.15
    assert load_device(str(path)) == spec


def test_user_toml_inline_tables_and_extra_dtype(tmp_path):
    lines = ['name = "inline-board"', 'description = "inline form"', "[memory]"]
    for key, (v, u) in {
        "onchip_weight_bytes": (4096, "B"),
        "onchip_activation_bytes": (2048, "B"),
        "onchip_pj_per_byte": (1.0, "pJ/B"),
        "dram_pj_per_byte": (40.0, "pJ/B"),
        "dram_bandwidth_bytes_per_s": (2e9, "B/s"),
    }.items():
        lines.append(f'{key} = {{ value = {v}, unit = "{u}", source = "made up" }}')
    lines += [
        "[compute]",
        'peak_macs_per_s = { value = 1e9, unit = "MAC/s", source = "made up" }',
        "[compute.pj_per_mac]",
    ]
    for d, v in zip(DTYPES + ("fp8",), (4.0, 1.5, 1.0, 0.3, 0.15, 0.5), strict=True):
        lines.append(f'{d} = {{ value = {v}, unit = "pJ/MAC", source = "made up" }}')
    spec = load_device(_write(tmp_path, "\n".join(lines) + "\n"))
    assert spec.onchip_weight_bytes == 4096 and spec.onchip_activation_bytes == 2048
    assert spec.pj_per_mac_for("fp8") == 0.5
    assert list(spec.pj_per_mac) == list(DTYPES) + ["fp8"]


# --- every flaw is one line naming the file and the key ----------------------------------------

BAD_FILES = {
    "missing field": (_delete("memory.dram_pj_per_byte"), "memory.dram_pj_per_byte"),
    "missing activation budget": (_delete("memory.onchip_activation_bytes"), "memory.onchip_activation_bytes"),
    "missing section": (_delete("compute"), "compute"),
    "missing dtype": (_delete("compute.pj_per_mac.int4"), "compute.pj_per_mac.int4"),
    "missing source": (_delete("memory.onchip_pj_per_byte.source"), "memory.onchip_pj_per_byte"),
    "missing value": (_delete("compute.peak_macs_per_s.value"), "compute.peak_macs_per_s"),
    "missing unit": (_delete("compute.pj_per_mac.fp16.unit"), "compute.pj_per_mac.fp16"),
    "empty source": (_set("memory.dram_pj_per_byte.source", "   "), "memory.dram_pj_per_byte.source"),
    "empty unit": (_set("memory.dram_pj_per_byte.unit", ""), "memory.dram_pj_per_byte.unit"),
    "zero value": (_set("compute.peak_macs_per_s.value", 0), "compute.peak_macs_per_s.value"),
    "negative value": (_set("memory.onchip_pj_per_byte.value", -1.0), "memory.onchip_pj_per_byte.value"),
    "text value": (_set("memory.dram_bandwidth_bytes_per_s.value", "fast"), "memory.dram_bandwidth_bytes_per_s.value"),
    "bool value": (_set("compute.pj_per_mac.int8.value", True), "compute.pj_per_mac.int8.value"),
    "bare number, no source": (_set("memory.dram_pj_per_byte", 60.0), "memory.dram_pj_per_byte"),
    "fractional bytes": (_set("memory.onchip_weight_bytes.value", 1.5), "memory.onchip_weight_bytes"),
    "fractional activation bytes": (
        _set("memory.onchip_activation_bytes.value", 2.5),
        "memory.onchip_activation_bytes",
    ),
    "misspelt key": (_set("memory.dram_pj_per_bite", _c(1.0, "pJ/B")), "memory.dram_pj_per_bite"),
    "missing name": (_delete("name"), "name"),
    "empty description": (_set("description", ""), "description"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_profile_is_one_line_naming_file_and_key(tmp_path, case):
    mutate, key = BAD_FILES[case]
    data = copy.deepcopy(_valid())
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as err:
        load_device(path)
    _assert_one_line_naming(err.value, str(path), key)


def test_non_finite_value_is_rejected(tmp_path):
    text = _dump(_valid()).replace("value = 60.0", "value = nan")
    assert "nan" in text
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_device(path)
    _assert_one_line_naming(err.value, str(path), "memory.dram_pj_per_byte.value", "finite")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    text = _dump(_valid()) + "\n[memory.extra\nvalue = 1\n"
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_device(path)
    _assert_one_line_naming(err.value, str(path), "syntax", "line")


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(InputError) as err:
        load_device(path)
    _assert_one_line_naming(err.value, str(path), "not found")
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(InputError) as err:
        load_device(tmp_path / "folder.toml")
    _assert_one_line_naming(err.value, "folder.toml", "not found")


def test_unknown_device_name_lists_the_bundled_ones():
    with pytest.raises(InputError) as err:
        load_device("jetson-orin-mega")
    _assert_one_line_naming(err.value, "'jetson-orin-mega'", *BUNDLED)
    with pytest.raises(InputError) as err:
        load_device("  ")
    _assert_one_line_naming(err.value, *BUNDLED)
