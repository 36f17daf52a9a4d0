"""Line-level helpers for manifest.jsonl: decode and validate one record, write atomically.

Kept apart from `manifest.py` so that file reads as the data model; everything here is private
to `weightwise.data`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from weightwise.errors import InputError
from weightwise.outputs import write_text_atomic

CORE_FIELDS = ("id", "audio", "text", "speaker", "duration")


def decode_line(raw: bytes, where: str, first: bool) -> dict[str, Any] | None:
    """One manifest line -> a JSON object, or None for a blank line.

    Args:
        raw: the line's bytes (decoded here so a bad byte gets a line number).
        where: "<path>:<lineno>" prefix for error messages.
        first: the first line may start with a UTF-8 byte-order mark.
    """
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: malformed manifest line (not UTF-8 text)") from None
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        reason = f"{err.msg} at column {err.colno}"
        raise InputError(f"{where}: malformed manifest line ({reason})") from None
    if not isinstance(record, dict):
        kind = type(record).__name__
        raise InputError(f"{where}: malformed manifest line (expected a JSON object, got {kind})")
    return record


def check_record(record: Mapping[str, Any], where: str) -> None:
    """Reject a record whose core fields would break later stages."""
    for name in ("audio", "id"):
        if name not in record:
            raise InputError(f"{where}: missing field '{name}'")
        if not isinstance(record[name], str) or not record[name].strip():
            raise InputError(f"{where}: field '{name}' must be a non-empty string")
    for name in ("text", "speaker"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise InputError(f"{where}: field '{name}' must be a string or null")
    duration = record.get("duration")
    if duration is not None and not is_duration(duration):
        raise InputError(f"{where}: field 'duration' must be a non-negative number of seconds, got {duration!r}")


def is_duration(value: Any) -> bool:
    """A finite, non-negative int or float (JSON's NaN/Infinity and booleans excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def dump_line(record: Mapping[str, Any]) -> str:
    """One JSON line; non-ASCII text kept readable."""
    return json.dumps(dict(record), ensure_ascii=False, default=_thaw) + "\n"


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write via a temp file in the same folder + os.replace, so readers never see half a file."""
    write_text_atomic(path, "".join(lines))


def freeze(value: Any) -> Any:
    """Read-only copy: mappings -> MappingProxyType, lists -> tuples (recursively)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """json.dumps fallback for the read-only mappings `freeze` makes."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
