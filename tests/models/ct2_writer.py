"""Test-local CTranslate2 writer and the packaged weight locations (helpers for tests/models).

The writer follows ../shared/docs/WHISPER_CT2.md section 2 byte for byte (little-endian, packed;
strings are a uint16 length that includes a trailing NUL; variables sorted by name; then aliases).
It is written independently of `weightwise.models.ct2` so reading its output tests the reader.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np

# dtype ids from the format table; bfloat16 is passed as ("bfloat16", uint16 top halves).
DTYPE_IDS = {
    np.dtype(np.float32): 0,
    np.dtype(np.int8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.float16): 4,
}


def ct2_string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\x00"
    return struct.pack("<H", len(raw)) + raw


def ct2_bytes(
    variables: dict,
    aliases: dict[str, str] | None = None,
    version: int = 6,
    spec_name: str = "WhisperSpec",
    revision: int = 3,
) -> bytes:
    """Serialize `variables` (name -> ndarray, or ("bfloat16", uint16 ndarray)) as a model.bin."""
    out = [
        struct.pack("<I", version),
        ct2_string(spec_name),
        struct.pack("<I", revision),
        struct.pack("<I", len(variables)),
    ]
    for name in sorted(variables):
        value = variables[name]
        if isinstance(value, tuple) and value[0] == "bfloat16":
            array, dtype_id = np.array(value[1], dtype="<u2", order="C"), 5
        else:
            array = np.array(value, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            dtype_id = DTYPE_IDS[array.dtype]
            array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        data = array.tobytes(order="C")
        out += [
            ct2_string(name),
            struct.pack("<B", array.ndim),
            b"".join(struct.pack("<I", d) for d in array.shape),
            struct.pack("<B", dtype_id),
            struct.pack("<I", len(data)),
            data,
        ]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [ct2_string(alias), ct2_string(target)]
    return b"".join(out)


def package_data_dir(package: str, folder: str) -> Path:
    """Where an installed package keeps its data folder, found without weightwise's registry."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / folder
