"""The executor interface, its configuration, and the in-process executor."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from weightwise.errors import InputError

EXECUTORS = ("local", "ray")
Task = Callable[[Any, Any], Any]  # fn(shared, payload) -> result; module-level, so Ray can pickle it


@dataclass(frozen=True)
class ExecutorConfig:
    """Where tasks run.

    `threads`: torch intra-op threads per task (None: the driver's current setting). On Ray every
    task also reserves that many CPUs, so a node runs at most (its CPUs // threads) tasks at once
    and a task's timing is not slowed by more runnable threads than cores.
    `address`: an existing Ray cluster to join ("auto", "HOST:PORT", "ray://HOST:PORT"); None
    starts a local cluster on this machine for the run. `max_retries`: Ray reruns a task whose
    worker process died (killed, out of memory) up to this many times; a task that raised is not rerun.
    """

    kind: str = "local"
    address: str | None = None
    threads: int | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise InputError(f"--executor {self.kind!r}: choose from {', '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise InputError("--ray-address needs --executor ray")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise InputError(f"--threads must be a positive integer, got {self.threads!r}")
        if self.max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {self.max_retries}")


class Executor(ABC):
    """Runs `fn(shared, payload)` for every payload; see the package docstring."""

    name: str

    @abstractmethod
    def map(self, fn: Task, payloads: Iterable[Any], shared: Any = None) -> Iterator[tuple[int, Any]]:
        """(index of the payload, its result) as each task finishes; an `InputError` raised by a
        task is raised here with the same message, and the tasks not yet finished are cancelled."""


class LocalExecutor(Executor):
    """Every task in this process, one after the other, in order (the behaviour before executors)."""

    name = "local"

    def map(self, fn: Task, payloads: Iterable[Any], shared: Any = None) -> Iterator[tuple[int, Any]]:
        for index, payload in enumerate(payloads):
            yield index, fn(shared, payload)


@contextlib.contextmanager
def open_executor(config: ExecutorConfig = ExecutorConfig()) -> Iterator[Executor]:
    """The executor `config` names, ready for `map`; a local Ray cluster it started is stopped at the end."""
    if config.kind == "local":
        yield LocalExecutor()
        return
    from weightwise.executors.ray_executor import ray_executor

    with ray_executor(config) as executor:
        yield executor
