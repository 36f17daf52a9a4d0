"""One finished benchmark cell as a typed, versioned row, and the JSONL file that holds them.

Row versions (the `version` field; a row without one is version 0):
    0  the matrix coordinates and the results only (files written before inputs were recorded);
       `report` reads them, `bench` refuses to resume onto them (it cannot tell what they answer).
    1  adds `data` (the manifest as given) and `inputs`: everything that changes the result
       (content hashes of the data, the weights, the plan, the calibration audio, the noise clips
       and the device profile; limit, seed, decoding options, threads). `bench` resumes a cell only
       when the row's inputs equal the command's.
    2  `meter` is the meter's name ("rapl", "nvml", "jetson", "null") and the new `meter_reason` says
       why it measured nothing (null when it measured). Versions 0 and 1 wrote that reason into
       `meter` when no meter was available; such rows are read as written (`meter_reason` null).
    3  `executor` ("local" or "ray") ran the cell, and `tasks_on_node` tasks of the bench (this one
       included) shared its machine while it was timed: 1 = alone, as every local row; RTF of rows
       timed beside others is comparable only at the same count. Older rows read both as null.

`kernels` (optional in any version, null where not recorded): what the weights ran on, "float",
"int8", "packed", "simulated" (`weightwise.evaluate.runtime.weight_kernels`) or "ctranslate2" (the
peer); every value but "simulated" is a real kernel (the row's speed and memory are the deployment's).

`cell` is the JSON list [system, model, precision, plan, noise, snr_db] of the row's coordinates;
it is derived from the fields and checked against them when read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightwise.errors import InputError

ROW_VERSION = 3
REQUIRED = ("cell", "system", "model", "precision", "noise", "snr_db", "wer")

_NUMBER, _INT, _TEXT, _OBJECT, _LIST = "a number", "an integer", "a string", "an object", "a list"


@dataclass(frozen=True)
class BenchRow:
    """The result of one cell: coordinates, scores, speed, memory and modeled/measured energy."""

    system: str  # "weightwise" | "faster-whisper"
    model: str
    precision: str  # ours: fp32/fp16/bf16/int8; peer: CTranslate2 compute type
    plan: str | None  # plan file stem (weightwise rows with a plan)
    noise: str | None  # None = clean
    snr_db: float | None
    wer: float | None  # fraction; None without reference texts
    substitutions: int | None = None
    deletions: int | None = None
    insertions: int | None = None
    n_ref_words: int | None = None
    n_utterances: int | None = None
    audio_s: float | None = None
    rtf: float | None = None
    peak_rss_mb: float | None = None  # MiB
    peak_rss_scope: str | None = None  # "cell" | "process" | None (version-0 rows: per utterance)
    host: dict[str, Any] | None = None  # cpu, cores, threads
    measured_energy_j: float | None = None  # on this host, over the timed utterances
    meter: str | None = None  # the meter's name (versions < 2: its name, or why there was none)
    energy_j_per_audio_s: float | None = None  # modeled
    offchip_bytes_per_audio_s: float | None = None
    components: dict[str, float] | None = None  # share of the modeled energy by component
    model_bytes: int | None = None
    device: str | None = None  # device profile of the modeled energy
    energy_note: str | None = None
    wall_s: float | None = None  # the whole cell: load, trace, mixing, warm-up, timed runs
    utterances: tuple[dict[str, Any], ...] = ()  # {"id", "hyp"} per utterance
    data: str | None = None  # the manifest as given (version >= 1)
    inputs: dict[str, Any] | None = None  # what the result depends on (version >= 1)
    meter_reason: str | None = None  # why `meter` measured nothing (version >= 2)
    executor: str | None = None  # "local" | "ray" (version >= 3)
    tasks_on_node: int | None = None  # bench tasks on the cell's machine while it was timed (version >= 3)
    kernels: str | None = None  # what the weights ran on (see the module docstring); None: not recorded
    version: int = ROW_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know

    @property
    def cell(self) -> str:
        return cell_key(self.system, self.model, self.precision, self.plan, self.noise, self.snr_db)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cell": self.cell}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                out[f.name] = list(value) if f.name == "utterances" else value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: str = "row") -> BenchRow:
        """A row from its JSON object; a missing or mistyped field is a one-line `InputError`."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: not a bench row (a JSON {type(data).__name__}, not an object)")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise InputError(f"{where}: not a bench row (missing {', '.join(missing)})")
        version = data.get("version", 0)
        if not _is_int(version) or version < 0:
            raise InputError(f"{where}: field 'version' must be a non-negative integer, got {version!r}")
        if version > ROW_VERSION:
            raise InputError(
                f"{where}: row version {version} is newer than this weightwise reads "
                f"({ROW_VERSION}); upgrade weightwise"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        for name, value in values.items():
            _check_type(name, value, where)
        values["version"] = version
        values["utterances"] = tuple(values.get("utterances") or ())
        row = cls(**values, extra={k: v for k, v in data.items() if k not in known and k != "cell"})
        if data["cell"] != row.cell:
            raise InputError(f"{where}: 'cell' {data['cell']!r} does not match the row's fields ({row.cell})")
        return row


def cell_key(system: str, model: str, precision: str, plan: str | None, noise: str | None, snr_db: float | None) -> str:
    return json.dumps([system, model, precision, plan, noise, snr_db])


_TYPES = {
    "system": _TEXT,
    "model": _TEXT,
    "precision": _TEXT,
    "plan": _TEXT,
    "noise": _TEXT,
    "snr_db": _NUMBER,
    "wer": _NUMBER,
    "substitutions": _INT,
    "deletions": _INT,
    "insertions": _INT,
    "n_ref_words": _INT,
    "n_utterances": _INT,
    "audio_s": _NUMBER,
    "rtf": _NUMBER,
    "peak_rss_mb": _NUMBER,
    "peak_rss_scope": _TEXT,
    "host": _OBJECT,
    "measured_energy_j": _NUMBER,
    "meter": _TEXT,
    "energy_j_per_audio_s": _NUMBER,
    "offchip_bytes_per_audio_s": _NUMBER,
    "components": _OBJECT,
    "model_bytes": _INT,
    "device": _TEXT,
    "energy_note": _TEXT,
    "wall_s": _NUMBER,
    "utterances": _LIST,
    "data": _TEXT,
    "inputs": _OBJECT,
    "meter_reason": _TEXT,
    "executor": _TEXT,
    "tasks_on_node": _INT,
    "kernels": _TEXT,
}
_NOT_NULL = ("system", "model", "precision")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_type(name: str, value: Any, where: str) -> None:
    kind = _TYPES.get(name)
    if kind is None or (value is None and name not in _NOT_NULL):
        return
    ok = {
        _TEXT: isinstance(value, str),
        _INT: _is_int(value),
        _OBJECT: isinstance(value, dict),
        _LIST: isinstance(value, list),
        _NUMBER: (_is_int(value) or isinstance(value, float)) and math.isfinite(value),
    }[kind]
    if not ok:
        null = "" if name in _NOT_NULL else " or null"
        raise InputError(f"{where}: field '{name}' must be {kind}{null}, got {value!r:.40}")


def read_rows(path: str | Path) -> list[tuple[int, BenchRow]]:
    """(line number, row) of every row in a bench JSONL file, in file order.

    An unterminated last line that starts as a row does (`{"cell"`) but is not valid JSON is a
    torn write (a bench killed mid-append) and is skipped; any other bad line, a line that is not a
    bench row, or a second row for the same cell is a one-line `InputError` naming the file and line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a results file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    lines = data.split(b"\n")
    rows: list[tuple[int, BenchRow]] = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(lines, 1):
        torn = number == len(lines) and is_torn_write(raw)  # after the last newline
        where = f"{path}:{number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if torn:
                continue
            raise InputError(f"{where}: not UTF-8 text (corrupted line?)") from None
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            if torn:
                continue
            raise InputError(
                f"{where}: not a JSON line ({err.msg}, column {err.colno}); the file is corrupted"
            ) from None
        row = BenchRow.from_dict(record, where)
        if row.cell in first_line:
            raise InputError(
                f"{where}: cell {row.cell} is already on line {first_line[row.cell]} "
                "(two benches wrote this file?); keep one of the two lines"
            )
        first_line[row.cell] = number
        rows.append((number, row))
    return rows


_ROW_START = b'{"cell"'  # how every row written by `BenchRow.to_dict` (and version 0) begins


def is_torn_write(tail: bytes) -> bool:
    """`tail` (the bytes after a file's last newline) looks like the start of a row cut short."""
    if not tail or not (tail.startswith(_ROW_START) or _ROW_START.startswith(tail)):
        return False
    try:
        json.loads(tail.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True
    return False
