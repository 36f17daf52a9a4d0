"""The bench results file: checked before any work, locked while a bench runs, appended row by row.

A results file (`--out`) belongs to one bench at a time: `exclusive_lock` takes `fcntl.flock` on
a sidecar `<out>.lock` that holds the owner's pid, so a second bench on the same file stops at once
with a one-line error instead of computing every cell again (and appending duplicates). The lock
dies with its process (a killed bench leaves a stale file that the next bench simply takes over)
and the file is removed on a clean exit. `flock` is POSIX-only; weightwise runs on Linux/macOS.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from weightwise.bench.row import is_torn_write
from weightwise.errors import InputError


def check_out_path(path: Path) -> None:
    """`--out` must be a regular file we can write (or create) in an existing folder."""
    for ancestor in list(path.parents)[::-1]:
        if ancestor.exists() and not ancestor.is_dir():
            raise InputError(f"--out {path}: {ancestor} is a file, not a folder")
    if path.is_dir():
        raise InputError(f"--out {path}: is a directory, not a results file")
    if path.exists() and not path.is_file():
        raise InputError(f"--out {path}: not a regular file")
    if not path.parent.is_dir():
        raise InputError(f"--out {path}: folder {path.parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"--out {path}: not writable")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"--out {path}: folder {path.parent} is not writable")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on results file `path` for the block (see the module docstring).

    Raises:
        InputError: another process holds it ("... is locked by another bench (pid N)").
    """
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(f"--out {path}: cannot create {lock.name} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(f"--out {path}: cannot lock {lock.name} ({err.strerror})") from None
            raise InputError(
                f"--out {path} is locked by another bench (pid {owner}); wait for it to finish or use another --out"
            ) from None
        if _same_file(fd, lock):  # not unlinked by a previous owner between our open and flock
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it: a waiter re-checks the path (see above)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def repair_tail(path: Path) -> None:
    """Make results file `path` end on a newline so appends start a new line: a torn last write (a
    bench killed mid-append) is cut off; a whole row without its newline gets one. Call it only
    once `read_rows` has accepted the file (it never cuts anything that is not a torn row)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end == len(data):
        return
    with open(path, "r+b") as handle:
        if is_torn_write(data[end:]):
            handle.truncate(end)
        else:
            handle.seek(0, os.SEEK_END)
            handle.write(b"\n")


def append_row(path: Path, row: dict) -> None:
    """One line per write, flushed and fsynced: a reader sees whole rows or a torn tail only."""
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
