"""Warm up, then time: the one loop every RTF in weightwise comes from (eval, bench, the benchmark
scripts).

What is timed: one call `run(samples, utterance id)` per utterance and runner, from samples already
in memory to its result, with `time.perf_counter`. Reading, resampling and noise mixing happen
before (the items carry the samples). First, every runner runs once, untimed, on the first item
(first-call allocations, lazy initialization). With several runners each item goes through all of
them, the order rotated by one per item, so a burst of foreign load on a shared machine hits every
runner alike.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from weightwise.audio import SAMPLE_RATE
from weightwise.data import Utterance

__all__ = ["WARM_UP_ID", "Timed", "warm_up_and_time"]

T = TypeVar("T")
WARM_UP_ID = "warm-up"  # the utterance id the untimed warm-up call receives


@dataclass(frozen=True)
class Timed(Generic[T]):
    """One timed call: which utterance, which runner, what it returned and how long it took."""

    utterance: Utterance
    runner: str
    output: T
    audio_s: float  # length of the samples given, at SAMPLE_RATE
    compute_s: float  # wall-clock seconds of the call


def warm_up_and_time(
    runners: Mapping[str, Callable[[np.ndarray, str], T]],
    items: Iterable[tuple[Utterance, np.ndarray]],
    after_warmup: Callable[[], Any] | None = None,
    during: AbstractContextManager | None = None,
) -> list[Timed[T]]:
    """Warm every runner up on the first item, then time each item through every runner.

    Args:
        runners: name -> `run(samples, utterance id)`; called in insertion order, rotated by one
            per item.
        items: (utterance, samples at SAMPLE_RATE) pairs, consumed lazily (one file in memory at a
            time when `items` is a generator).
        after_warmup: called once between the warm-up and the first timed call (e.g. to reset
            counters that should cover the timed calls only).
        during: a context (e.g. a meter window) entered after the warm-up and left after the last
            timed call, also when a call raises.

    Returns:
        One `Timed` per (item, runner), in call order; empty when `items` is.
    """
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        return []
    for run in runners.values():
        run(first[1], WARM_UP_ID)
    if after_warmup is not None:
        after_warmup()
    names, timed = list(runners), []
    with during if during is not None else contextlib.nullcontext():
        for i, (utt, samples) in enumerate(itertools.chain([first], iterator)):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                output = runners[name](samples, utt.id)
                compute_s = time.perf_counter() - start
                timed.append(Timed(utt, name, output, len(samples) / SAMPLE_RATE, compute_s))
    return timed
