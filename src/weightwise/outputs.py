"""Result files: check an output path before the work starts, write it atomically when it is done.

Every command that writes a file calls `check_output_path` before it loads a model, so a path the
command could never write (an existing directory, a path under a file, a read-only location, or
one of the command's own inputs) is a one-line `InputError` up front, not a traceback after
minutes of work. The writers then put the bytes in a temp file in the same directory, fsync it and
`os.replace` it over the target: readers see the old file or the whole new one, never half of
one, and the temp file is removed on any failure. Missing parent directories are created at write
time (as the writers always did), never by the check.

This module sits at the bottom of the package: it imports nothing from weightwise but `errors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from weightwise.errors import InputError

__all__ = ["atomic_writer", "check_output_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]

PathLike = str | os.PathLike


def check_output_path(
    path: PathLike, *, inputs: Iterable[PathLike | None] = (), kind: str = "file", flag: str = "--out"
) -> Path:
    """Fail now, in one line, if `path` cannot be written as a `kind` ("file" or "dir") output.

    Args:
        path: where the command will write.
        inputs: files the command reads (None entries are skipped); the output may not be one of
            them (same path, or the same file through a link).
        kind: "file" (replaced atomically) or "dir" (a folder the command fills).
        flag: the option that named `path`, for the message.

    Returns:
        `path` as a Path.

    Raises:
        InputError: "<flag> <path>: <problem>" when `path` is an existing directory (for a file)
            or a non-directory (for a dir), lies under a file, sits in a location this process
            cannot create files in, or is the same file as an input.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    out = Path(path)
    where = f"{flag} {out}"
    if str(path).strip() == "":
        raise InputError(f"{flag}: empty output path")
    if out.is_dir() and kind == "file":
        raise InputError(f"{where}: is an existing directory, not a file path")
    if out.exists() and not out.is_dir() and kind == "dir":
        raise InputError(f"{where}: is an existing file, not a directory")
    if out.exists() and kind == "file" and not stat.S_ISREG(out.stat().st_mode):
        raise InputError(f"{where}: exists and is not a regular file")
    _check_same_as_inputs(out, where, inputs)
    _check_writable_parent(out, where)
    return out


def _check_same_as_inputs(out: Path, where: str, inputs: Iterable[PathLike | None]) -> None:
    target = out.resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        same = target == source.resolve()
        if not same and out.exists() and source.exists():
            same = os.path.samefile(out, source)
        if same:
            raise InputError(f"{where}: is also an input of this command; writing it would overwrite {source}")


def _check_writable_parent(out: Path, where: str) -> None:
    """The nearest existing ancestor must be a directory in which this process can create files."""
    parent = out.absolute().parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{where}: {parent} is a file, not a directory")
    try:  # a real probe: permission bits lie for root and say nothing of read-only mounts
        handle, probe = tempfile.mkstemp(dir=parent, prefix=".weightwise-probe-", suffix=".tmp")
    except OSError as err:
        raise InputError(f"{where}: cannot create files in {parent} ({err.strerror or err})") from None
    os.close(handle)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_writer(path: PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path` for writing; on a clean exit fsync and rename it to `path`.

    The file gets the mode bits a plain `open(path, "w")` would give it (the existing file's, or
    0o666 minus the umask). On any exception the temp file is removed and `path` is untouched.
    OSErrors (disk full, permissions changed meanwhile) become a one-line `InputError`.

    Args:
        path: the target file; missing parent directories are created.
        mode: "w" (UTF-8 text) or "wb".
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    tmp_name = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.fchmod(handle, _file_mode(target))
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as sink:
            yield sink
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as err:
        raise InputError(f"{target}: cannot write ({err.strerror or err})") from None
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def _file_mode(target: Path) -> int:
    """Mode bits for a new file at `target`: keep an existing file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_writer`)."""
    with atomic_writer(path, "wb") as sink:
        sink.write(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically (see `atomic_writer`)."""
    with atomic_writer(path, "w") as sink:
        sink.write(text)


def write_json_atomic(path: PathLike, data: Any) -> None:
    """Write `data` as indented JSON (non-ASCII kept readable) plus a newline, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
