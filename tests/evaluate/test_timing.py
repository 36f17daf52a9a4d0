"""weightwise.evaluate.timing: the one warm-up-and-time loop (eval, bench, benchmark scripts)."""

from __future__ import annotations

import contextlib
import time

import pytest

from weightwise.evaluate.timing import WARM_UP_ID, warm_up_and_time


def _runner(name, calls, sleep_s=0.0):
    def run(samples, utt_id):
        calls.append((name, utt_id, len(samples)))
        time.sleep(sleep_s)
        return f"{name}:{utt_id}"

    return run


def test_warm_up_once_then_every_item_through_every_runner_in_rotated_order(sample_audio):
    calls, events = [], []
    runners = {"a": _runner("a", calls), "b": _runner("b", calls), "c": _runner("c", calls)}
    timed = warm_up_and_time(runners, iter(sample_audio), after_warmup=lambda: events.append(len(calls)))
    first = len(sample_audio[0][1])
    assert calls[:3] == [("a", WARM_UP_ID, first), ("b", WARM_UP_ID, first), ("c", WARM_UP_ID, first)]
    assert events == [3]  # after the warm-up, before the first timed call
    ids = [u.id for u, _ in sample_audio]
    orders = [[c[0] for c in calls[3 + 3 * i : 6 + 3 * i]] for i in range(len(ids))]
    assert orders[:4] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert [(t.utterance.id, t.runner, t.output) for t in timed] == [
        (ids[i], name, f"{name}:{ids[i]}") for i in range(len(ids)) for name in orders[i]
    ]
    for t, (utt, samples) in zip(timed[::3], sample_audio, strict=True):
        assert t.audio_s == len(samples) / 16000 and t.utterance is utt


def test_compute_s_is_the_calls_own_wall_time(sample_audio):
    timed = warm_up_and_time({"slow": _runner("slow", [], sleep_s=0.05)}, sample_audio[:2])
    assert len(timed) == 2 and all(0.05 <= t.compute_s < 1.0 for t in timed)


def test_the_during_context_covers_the_timed_calls_only_and_closes_on_failure(sample_audio):
    calls, log = [], []

    @contextlib.contextmanager
    def window():
        log.append(("enter", len(calls)))
        try:
            yield
        finally:
            log.append(("exit", len(calls)))

    warm_up_and_time({"a": _runner("a", calls)}, sample_audio, during=window())
    assert log == [("enter", 1), ("exit", 1 + len(sample_audio))]

    def failing(samples, utt_id):
        if utt_id != WARM_UP_ID:
            raise RuntimeError("model crashed")

    log.clear()
    with pytest.raises(RuntimeError, match="model crashed"):
        warm_up_and_time({"f": failing}, sample_audio, during=window())
    assert [kind for kind, _ in log] == ["enter", "exit"]


def test_no_items_no_calls():
    calls = []
    assert warm_up_and_time({"a": _runner("a", calls)}, []) == [] and calls == []
