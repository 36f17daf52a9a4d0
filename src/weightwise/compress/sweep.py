"""The sensitivity sweep on an executor other than this process (`weightwise.executors`, e.g. Ray).

Each (group, candidate) is one task. A worker loads the float model once per sweep (by registered
name, else by its source path, and checks that its weights hash to the driver's), keeps it for the
sweep's next tasks, and computes the entry exactly as the local sweep does (`sensitivity._compute`).
The reference (windows, calls, trace) and the `skip` rule are sent once per sweep. Keep entries go
first: a candidate's `skip` decision needs its group's keep counts. Entries come back to the
driver, which alone appends them to the cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from weightwise.compress.api import CompressContext
from weightwise.compress.candidates import Candidate, CandidateSpace, Group
from weightwise.errors import InputError


@dataclass(frozen=True)
class _Sweep:
    """What every task of one sweep needs (sent once to each worker)."""

    model: str  # what the worker passes to load_model
    weights_sha256: str
    reference: Any  # sensitivity.Reference
    skip: Any  # sensitivity.Skip | None
    context: tuple | None  # CompressContext's (calib, train, finetune_steps, finetune_lr)
    token: str


_worker: dict[str, tuple[Any, Any]] = {}  # sweep token -> this process's model and context


def _model_spec(model) -> str:
    from weightwise.models.registry import resolve_name

    return model.info.name if resolve_name(model.info.name) is not None else model.info.source


def _loaded(sweep: _Sweep):
    if sweep.token not in _worker:
        from weightwise.models import load_model

        _worker.clear()  # an earlier sweep's model
        model = load_model(sweep.model)
        if model.info.weights_sha256 != sweep.weights_sha256:
            raise InputError(
                f"model {sweep.model}: a worker loaded other weights than the driver "
                f"({model.info.weights_sha256[:12]} != {sweep.weights_sha256[:12]}); install the same on every node"
            )
        context = CompressContext(model, *sweep.context) if sweep.context is not None else None
        _worker[sweep.token] = (model, context)
    return _worker[sweep.token]


def _task(sweep: _Sweep, job: tuple[Group, Candidate, bool, Any]):
    from weightwise.compress.sensitivity import _compute

    model, context = _loaded(sweep)
    group, candidate, is_keep, keep = job
    return _compute(model, sweep.reference, group, candidate, is_keep, keep, sweep.skip, context)


class _Sized:
    """An iterator with a length, for progress bars that size themselves with len()."""

    def __init__(self, items: Iterable, n: int):
        self.items, self.n = items, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator:
        return iter(self.items)


def sweep_on(executor, model, reference, pending, space: CandidateSpace, cache, skip, progress, context) -> None:
    """Compute `pending` (group, candidate) entries as `executor` tasks; `cache.put` each as it arrives."""
    shared = _Sweep(
        _model_spec(model),
        model.info.weights_sha256,
        reference,
        skip,
        None if context is None else (context.calib, context.train, context.finetune_steps, context.finetune_lr),
        uuid.uuid4().hex,
    )
    keeps = [(g, c) for g, c in pending if c.key == space.keep.key]
    others = [(g, c) for g, c in pending if c.key != space.keep.key]

    def entries() -> Iterator:
        for phase in (keeps, others):
            jobs = [(g, c, c.key == space.keep.key, cache.entries.get((g.name, space.keep.key))) for g, c in phase]
            for _, entry in executor.map(_task, jobs, shared):
                yield entry

    done = _Sized(entries(), len(pending))
    for entry in progress(done, "sensitivity") if progress is not None else done:
        cache.put(entry)
