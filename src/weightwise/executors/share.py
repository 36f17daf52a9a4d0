"""How many tasks of one run shared a node while a task timed something.

A Ray worker runs tasks of one run beside other workers on the same node; their timings (RTF) are
comparable only when one knows how many ran at once. Each task of a run appends a `start` and an
`end` line (pid, a task token, the system-wide monotonic clock) to one log per run and node
(`<tmp>/weightwise-share/<run>-<node>.log`, whole lines by O_APPEND). At its end a task counts the
tasks whose interval overlaps its own: those that ended after it started, and those still running
(their process alive). A task of the local executor runs alone: 1.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_log: Path | None = None  # set in a Ray worker for the task it runs (`use_log`)


@dataclass
class Share:
    """Filled when the `timed_share` block ends: tasks on the node during it, this one included."""

    tasks_on_node: int = 1


def log_path(run: str, node: str) -> Path:
    return Path(tempfile.gettempdir()) / "weightwise-share" / f"{run}-{node}.log"


@contextlib.contextmanager
def use_log(path: Path | None) -> Iterator[None]:
    """Count overlaps in `path` for `timed_share` blocks inside this block (None: the task runs alone)."""
    global _log
    previous, _log = _log, path
    try:
        yield
    finally:
        _log = previous


@contextlib.contextmanager
def timed_share() -> Iterator[Share]:
    """Measure how many tasks of this run shared the node during the block (see the module docstring)."""
    share = Share()
    path = _log
    if path is None:
        yield share
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    start = time.monotonic()
    _append(path, f"{os.getpid()} {token} start {start!r}\n")
    try:
        yield share
    finally:
        end = time.monotonic()
        _append(path, f"{os.getpid()} {token} end {end!r}\n")
        share.tasks_on_node = 1 + _overlapping(path, token, start, end)


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _overlapping(path: Path, mine: str, start: float, end: float) -> int:
    """Other intervals in `path` that overlap [start, end] (a missing end: running, if its pid lives)."""
    spans: dict[str, list] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue  # a line being written
        pid, token, kind, when = parts
        span = spans.setdefault(token, [int(pid), None, None])
        span[1 if kind == "start" else 2] = float(when)
    count = 0
    for token, (pid, began, ended) in spans.items():
        if token == mine or began is None or began >= end:
            continue
        if ended is None and not _alive(pid):
            continue  # its worker died mid-task
        if ended is None or ended > start:
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
