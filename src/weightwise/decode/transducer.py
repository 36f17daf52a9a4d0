"""`transcribe` for the transducer family: the streaming path over a whole utterance.

The encoder runs once per chunk (each chunk is a `WindowTrace`, so the profiler's encoder count is
the chunk count), the predictor once per emitted label per hypothesis (`on_decoder_step`), the
joiner once per (frame, hypothesis, symbol expansion), counted by the profiler's module hooks.
"""

from __future__ import annotations

import numpy as np

from weightwise.audio import SAMPLE_RATE
from weightwise.decode.options import DecodeObserver, DecodingOptions
from weightwise.errors import InputError
from weightwise.models.transducer import TransducerASR


class _ChunkRecorder(DecodeObserver):
    """Forwards every hook to `inner` and keeps (index, start_s, duration_s, n_tokens) per chunk."""

    def __init__(self, inner: DecodeObserver):
        self.inner, self.chunks = inner, []

    def on_window(self, window_index: int, start_s: float, duration_s: float) -> None:
        self.chunks.append([window_index, start_s, duration_s, 0])
        self.inner.on_window(window_index, start_s, duration_s)

    def on_decoder_step(self, window_index: int, step: int, n_positions: int, n_sequences: int) -> None:
        self.inner.on_decoder_step(window_index, step, n_positions, n_sequences)

    def on_window_end(self, window_index: int, n_tokens: int) -> None:
        self.chunks[-1][3] = n_tokens
        self.inner.on_window_end(window_index, n_tokens)


def transcribe_transducer(
    model: TransducerASR, audio: np.ndarray, options: DecodingOptions, observer: DecodeObserver, file_id: str
):
    """Decode 16 kHz `audio` with greedy (beam_size 1) or modified beam search; a `Transcript`."""
    from weightwise.decode.transcribe import Transcript, WindowTrace

    if model.sample_rate != SAMPLE_RATE:
        raise InputError(f"{model.info.name}: takes {model.sample_rate} Hz audio, transcribe passes {SAMPLE_RATE} Hz")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.size and not np.isfinite(samples).all():
        raise InputError(f"{file_id or 'audio'}: samples are not finite (NaN/inf)")
    audio_s = len(samples) / SAMPLE_RATE
    observer.on_file(file_id, audio_s)
    recorder = _ChunkRecorder(observer)
    out = model.decode_audio(samples, options.beam_size, recorder)
    windows = tuple(WindowTrace(i, start, duration, n, "eot") for i, start, duration, n in recorder.chunks)
    return Transcript(out.text, out.tokens, audio_s, windows)
