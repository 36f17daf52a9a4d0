"""Tasks on a Ray cluster: a local one started for the run, or an existing one joined by address.

Each task is a Ray task that reserves `threads` CPUs (so a node runs at most CPUs // threads at
once), sets torch to that many threads in its worker, and is rerun by Ray when its worker process
dies (`max_retries`). Results come back to the driver as they finish (`ray.wait`). A task that
raises `InputError` returns its message instead, and the driver raises the same one-line error
(a Ray task error would carry the worker's traceback). Ray is an optional extra:
`pip install 'weightwise[ray]'`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from weightwise.errors import InputError
from weightwise.executors.base import Executor, ExecutorConfig, Task
from weightwise.executors.share import log_path, use_log

INSTALL = "pip install 'weightwise[ray]'"


@dataclass(frozen=True)
class _Failed:
    """A task's `InputError`, sent back as its message."""

    message: str


def _run(fn: Task, shared: Any, payload: Any, threads: int, run: str) -> Any:
    """The Ray task: in a worker process, with `threads` torch threads."""
    import ray
    import torch

    torch.set_num_threads(threads)
    node = ray.get_runtime_context().get_node_id()
    try:
        with use_log(log_path(run, node)):
            return fn(shared, payload)
    except InputError as err:
        return _Failed(str(err))


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, threads: int, max_retries: int):
        self.threads, self.max_retries = threads, max_retries

    def map(self, fn: Task, payloads: Iterable[Any], shared: Any = None) -> Iterator[tuple[int, Any]]:
        import ray

        run = uuid.uuid4().hex[:16]
        task = ray.remote(_run).options(
            num_cpus=self.threads, max_retries=self.max_retries, retry_exceptions=False, name=fn.__name__
        )
        shared_ref = ray.put(shared)
        pending = {task.remote(fn, shared_ref, p, self.threads, run): i for i, p in enumerate(payloads)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                result = ray.get(done[0])
                if isinstance(result, _Failed):
                    raise InputError(result.message)
                yield index, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            node = ray.get_runtime_context().get_node_id()
            with contextlib.suppress(OSError):
                os.unlink(log_path(run, node))


@contextlib.contextmanager
def ray_executor(config: ExecutorConfig) -> Iterator[RayExecutor]:
    """Connect to (or start) the cluster; stop it at the end if this call started it."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray, an optional extra: {INSTALL}") from None
    import torch

    threads = config.threads or torch.get_num_threads()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(
                address=config.address or "local",  # None: a new local cluster, never one found running
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except ConnectionError as err:
            raise InputError(f"--ray-address {config.address}: cannot join a Ray cluster there ({err})") from None
    cpus = max(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"])
    if cpus < threads:
        if started:
            ray.shutdown()
        raise InputError(
            f"--threads {threads}: no node of the Ray cluster has that many CPUs (the largest has {cpus:g})"
        )
    try:
        yield RayExecutor(threads, config.max_retries)
    finally:
        if started:
            ray.shutdown()
