"""Read a CTranslate2 `model.bin` into numpy arrays.

The format (binary version 6, as written by ctranslate2's `specs/model_spec.py`): a header, then
named variables (name, shape, dtype id, raw bytes) in alphabetical order, then aliases. All integers
are little-endian and packed. See ../shared/docs/WHISPER_CT2.md for the verified description.
We read it with numpy so that neither ctranslate2 nor a hub is needed to load the weights.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weightwise.errors import InputError

# dtype ids of ctranslate2's binary format (src/types.cc); 5 = bfloat16 is widened to float32.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


@dataclass(frozen=True)
class CT2Model:
    """The variables of one CTranslate2 model file.

    Attributes:
        spec_name: e.g. ``"WhisperSpec"``.
        binary_version: format version of the file (6 for current files).
        variables: name -> array; scalars are 0-d arrays. Read-only views on the file buffer.
        aliases: alias name -> target name (e.g. the tied output projection).
        sha256: hex digest of the file bytes, to record which weights produced a result.
    """

    spec_name: str
    binary_version: int
    variables: Mapping[str, np.ndarray]
    aliases: Mapping[str, str] = field(default_factory=dict)
    sha256: str = ""

    def get(self, name: str) -> np.ndarray:
        """Return a variable, following an alias (aliases are not propagated to `_scale`)."""
        return self.variables[self.aliases.get(name, name)]

    def scalar(self, name: str) -> int | float:
        return self.variables[name].item()


class _Reader:
    def __init__(self, buf: bytes, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def need(self, size: int) -> None:
        if self.pos + size > len(self.buf):
            raise InputError(f"{self.path}: truncated CTranslate2 model file at byte {self.pos}")

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        self.need(size)
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.take("<H")  # includes the trailing NUL
        self.need(length)
        raw = self.buf[self.pos : self.pos + length - 1]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: corrupt name (not UTF-8) at byte {self.pos - length}") from None

    def array(self, dtype_id: int, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        if dtype_id not in _DTYPES:
            raise InputError(f"{self.path}: unknown dtype id {dtype_id} at byte {self.pos}")
        self.need(nbytes)
        dtype = _DTYPES[dtype_id]
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if nbytes != itemsize * int(np.prod(shape, dtype=np.int64)):
            raise InputError(f"{self.path}: variable at byte {self.pos} has {nbytes} bytes for shape {shape}")
        raw = np.frombuffer(
            self.buf, dtype=np.uint16 if dtype == "bfloat16" else dtype, count=nbytes // itemsize, offset=self.pos
        )
        self.pos += nbytes
        if dtype == "bfloat16":  # bf16 is the top half of a float32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.reshape(shape)


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin``.

    Args:
        path: the ``model.bin`` file (or a directory holding it).

    Returns:
        A `CT2Model` whose arrays are read-only views on the file's bytes.

    Example:
        >>> m = read_ct2_model(whisper_package_dir("whisper-tiny.en") / "model.bin")  # doctest: +SKIP
        >>> m.get("decoder/projection/weight").shape  # doctest: +SKIP
        (51864, 384)
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise InputError(f"{path}: CTranslate2 model file not found")
    buf = path.read_bytes()
    reader = _Reader(buf, path)
    version = reader.take("<I")
    if not 1 <= version <= 6:
        raise InputError(f"{path}: not a CTranslate2 model file (binary version {version})")
    if version < 4:
        raise InputError(f"{path}: CTranslate2 binary version {version} is too old (need >= 4)")
    spec_name = reader.string()
    reader.take("<I")  # spec revision
    variables = {}
    for _ in range(reader.take("<I")):
        name = reader.string()
        rank = reader.take("<B")
        shape = tuple(reader.take("<I") for _ in range(rank))
        dtype_id, nbytes = reader.take("<B"), reader.take("<I")
        variables[name] = reader.array(dtype_id, shape, nbytes)
    aliases = {}
    if version >= 3:  # the alias table is always written from version 3 on, even when empty
        for _ in range(reader.take("<I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.pos != len(buf):
        raise InputError(f"{path}: {len(buf) - reader.pos} unexpected trailing bytes")
    return CT2Model(spec_name, version, variables, aliases, hashlib.sha256(buf).hexdigest())
