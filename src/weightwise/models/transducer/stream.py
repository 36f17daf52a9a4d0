"""`TransducerStream`: the caller pushes audio, the stream returns partial and confirmed words.

    stream = model.create_stream()
    for piece in pieces:                    # any split of the audio, empty pieces included
        result = stream.accept_waveform(piece)
        print(result.text)                  # best hypothesis so far
    final = stream.finish()                 # flushes the tail; final.words carry times

Samples go through `FeatureStream` (whole frames only), are stacked `stack_frames` at a time, and
the encoder runs once per `chunk_frames` stacked frames (plus once for the tail at `finish`). The
output depends only on the samples, not on how they were split (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weightwise.errors import InputError
from weightwise.models.transducer.features import FeatureStream
from weightwise.models.transducer.search import BeamSearch, Emission, GreedySearch


@dataclass(frozen=True)
class TimedWord:
    """A confirmed word. `end_s`: end of the encoder frame that emitted it (when the model was
    sure); `start_s`: the previous word's `end_s` (a transducer emits no start time)."""

    word: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class TransducerResult:
    text: str  # best hypothesis so far (partial until is_final)
    confirmed_text: str  # words no later audio can change
    words: tuple[TimedWord, ...]  # the confirmed words with times
    tokens: tuple[int, ...]  # ids of the best hypothesis
    audio_s: float  # audio accepted so far
    n_chunks: int  # encoder calls so far
    is_final: bool


class TransducerStream:
    def __init__(self, model, beam_size: int = 1, observer=None):
        if beam_size < 1:
            raise InputError(f"beam size must be >= 1, got {beam_size}")
        self.model, self.config, self.observer = model, model.config, observer
        network = model.network
        self.search = GreedySearch(network, observer) if beam_size == 1 else BeamSearch(network, beam_size, observer)
        self.features = FeatureStream(self.config)
        self.pending = torch.zeros(0, self.config.n_mels)  # normalized frames not yet stacked
        self.stacked: list[torch.Tensor] = []  # encoder input frames not yet encoded
        self.states: list | None = None
        self.n_chunks, self.finished = 0, False

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def accept_waveform(self, samples, sample_rate: int | None = None) -> TransducerResult:
        """Append mono float samples at the model's rate (`sample_rate`, when given, must match)."""
        if self.finished:
            raise InputError("stream: accept_waveform after finish (create a new stream)")
        if sample_rate is not None and sample_rate != self.config.sample_rate:
            raise InputError(
                f"stream: audio at {sample_rate} Hz, this model takes {self.config.sample_rate} Hz (resample first)"
            )
        array = np.asarray(samples)
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"stream: samples must be a 1-D array of numbers, got shape {array.shape} {array.dtype}")
        if array.size and not np.isfinite(array).all():
            raise InputError("stream: samples contain NaN or inf (nothing of this chunk was accepted)")
        if array.size:
            with torch.inference_mode():
                self._frames(self.features.accept(array.astype(np.float32)))
        return self.result

    def finish(self) -> TransducerResult:
        """Flush the audio tail through the encoder and search; the result is final."""
        if not self.finished:
            with torch.inference_mode():
                self._frames(self.features.finish())
                pad = -len(self.pending) % self.config.stack_frames
                self._frames(torch.zeros(pad, self.config.n_mels), normalized=True)
                self._encode(final=True)
            self.finished = True
        return self.result

    def _frames(self, frames: torch.Tensor, normalized: bool = False) -> None:
        frames = frames if normalized else self.model.network.normalize(frames)
        self.pending = torch.cat([self.pending, frames])
        k = self.config.stack_frames
        whole = len(self.pending) // k * k
        self.stacked += list(self.pending[:whole].reshape(-1, k * self.config.n_mels))
        self.pending = self.pending[whole:]
        self._encode(final=False)

    def _encode(self, final: bool) -> None:
        size = self.config.chunk_frames
        while len(self.stacked) >= size or (final and self.stacked):
            chunk, self.stacked = self.stacked[:size], self.stacked[size:]
            start_s = self.search.frame * self.config.frame_s
            if self.observer is not None:
                self.observer.on_window(self.n_chunks, start_s, len(chunk) * self.config.frame_s)
            before = len(self.search.best())
            enc, self.states = self.model.network.encoder.step(torch.stack(chunk)[None], self.states)
            self.search.accept(enc[0], self.n_chunks)
            if self.observer is not None:
                self.observer.on_window_end(self.n_chunks, max(len(self.search.best()) - before, 0))
            self.n_chunks += 1

    @property
    def result(self) -> TransducerResult:
        best = self.search.best()
        stable = best if self.finished else self.search.stable()
        words, start = [], 0.0
        for emission in stable:
            end = (emission.frame + 1) * self.config.frame_s
            words.append(TimedWord(self.model.word(emission.token), start, end))
            start = end
        return TransducerResult(
            text=self.model.decode_text([e.token for e in best]),
            confirmed_text=" ".join(w.word for w in words),
            words=tuple(words),
            tokens=tuple(e.token for e in best),
            audio_s=self.features.n_samples / self.config.sample_rate,
            n_chunks=self.n_chunks,
            is_final=self.finished,
        )


__all__ = ["Emission", "TimedWord", "TransducerResult", "TransducerStream"]
