"""Transducer streams behind the streaming protocol (`weightwise.stream.protocol`).

A transducer decodes each encoder chunk once as audio arrives (no re-decoding), so the adapter only
translates: `TransducerStream`'s results become `StreamResult`s, each encoder call that an
`accept_waveform` triggered becomes one `DecodeStep`, and words confirmed by a call are recorded as
`ConfirmedWord`s with the audio received at that point (what latency is measured from).
"""

from __future__ import annotations

import time

from weightwise.errors import InputError
from weightwise.stream.protocol import ConfirmedWord, DecodeStep, StreamResult, Word


class TransducerStreamAdapter:
    """The protocol's view of a transducer model's own stream (`model.create_stream()`)."""

    def __init__(self, model, chunk_ms: int = 1000, observer=None):
        if not 10 <= chunk_ms <= 10000:
            raise InputError(f"--chunk-ms {chunk_ms}: choose 10..10000")
        self.inner = model.create_stream(1, observer)
        self.sample_rate = self.inner.sample_rate
        self.chunk_samples = chunk_ms * self.sample_rate // 1000  # how callers size their pieces
        self.confirmations: list[ConfirmedWord] = []
        self.steps: list[DecodeStep] = []
        self.gate = None  # no VAD gate for transducers yet

    def accept_waveform(self, samples, sample_rate: int | None = None) -> StreamResult:
        return self._track(lambda: self.inner.accept_waveform(samples, sample_rate))

    def finish(self) -> StreamResult:
        if self.inner.finished:
            return self.result
        return self._track(self.inner.finish)

    @property
    def result(self) -> StreamResult:
        return self._convert(self.inner.result, new=())

    def _track(self, call) -> StreamResult:
        before_words, before_chunks = len(self.inner.result.words), self.inner.n_chunks
        began, began_cpu = time.perf_counter(), time.process_time()
        raw = call()
        new = raw.words[before_words:]
        if raw.n_chunks > before_chunks or new:
            wall_s, cpu_s = time.perf_counter() - began, time.process_time() - began_cpu
            self.steps.append(DecodeStep(raw.audio_s, raw.audio_s, wall_s, len(new), False, cpu_s))
        step = len(self.steps) - 1
        self.confirmations += [ConfirmedWord(_word(w), raw.audio_s, step) for w in new]
        return self._convert(raw, new)

    @staticmethod
    def _convert(raw, new) -> StreamResult:
        confirmed = tuple(_word(w) for w in raw.words)
        partial = raw.text[len(raw.confirmed_text) :].strip() if raw.text.startswith(raw.confirmed_text) else raw.text
        return StreamResult(confirmed, partial, raw.audio_s, raw.is_final, tuple(_word(w) for w in new))


def _word(w) -> Word:
    return Word(w.word, w.start_s, w.end_s)


__all__ = ["TransducerStreamAdapter"]
