"""Where independent tasks run: in this process (`local`, the default) or on a Ray cluster (`ray`).

A task is one call `fn(shared, payload)` of a module-level function: `shared` is sent once per
run (Ray: one object in the cluster's object store), `payload` once per task. `Executor.map`
yields `(index, result)` as each task finishes, so the caller (the one driver process) writes
every result itself, in finishing order, to its resumable file. A task that raises `InputError`
fails the run with the same one-line error on every executor. `timed_share` tells a task how many
tasks of the run shared its node while it timed something (see `weightwise.executors.share`).

    with open_executor(ExecutorConfig("ray", threads=1)) as executor:
        for index, result in executor.map(fn, payloads, shared):
            ...
"""

from weightwise.executors.base import EXECUTORS, Executor, ExecutorConfig, LocalExecutor, open_executor
from weightwise.executors.share import Share, timed_share

__all__ = ["EXECUTORS", "Executor", "ExecutorConfig", "LocalExecutor", "Share", "open_executor", "timed_share"]
