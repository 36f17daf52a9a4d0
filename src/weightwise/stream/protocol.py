"""The streaming contract every model family implements (sherpa-onnx style: the caller owns the loop).

    stream = model.create_stream(chunk_ms=1000)     # or weightwise.stream.create_stream(model, ...)
    for chunk in chunks:                            # float32 mono at model.sample_rate, any sizes
        result = stream.accept_waveform(chunk)      # -> StreamResult: confirmed words + partial text
    final = stream.finish()                         # everything confirmed, is_final=True

Results depend only on the audio, never on how it was split into `accept_waveform` calls: a stream
decodes at fixed positions of the audio it has received (every `chunk_ms`), whatever the call sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from weightwise.errors import InputError


@dataclass(frozen=True)
class Word:
    """One recognized word and where it lies in the stream's audio (seconds from the stream's start)."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ConfirmedWord:
    """A word that will not change any more, and when it was confirmed.

    `confirmed_at_audio_s`: how much audio the stream had received when the word was confirmed
    (the decode that confirmed it ran on audio up to there); `step`: index of that decode in
    `stream.steps` (finish's decode included).
    """

    word: Word
    confirmed_at_audio_s: float
    step: int


@dataclass(frozen=True)
class DecodeStep:
    """One decode of the stream: the audio it saw, its wall time and what it confirmed."""

    audio_end_s: float  # stream time the decode ran at (all audio up to here was received)
    buffer_s: float  # seconds of audio the decode covered (whisper: the growing buffer)
    compute_s: float  # wall seconds of the decode on this host
    n_confirmed: int  # words it confirmed
    skipped: bool = False  # the VAD found no speech: nothing was decoded
    cpu_s: float = 0.0  # CPU seconds of this process during the decode (all its threads)


@dataclass(frozen=True)
class StreamResult:
    """What the stream knows now: confirmed words (final) and the unconfirmed partial text."""

    confirmed: tuple[Word, ...]
    partial: str  # the latest hypothesis beyond the confirmed words (may still change)
    audio_s: float  # audio received so far
    is_final: bool = False
    new_words: tuple[Word, ...] = field(default=())  # confirmed by the call that returned this result

    @property
    def confirmed_text(self) -> str:
        return " ".join(w.text for w in self.confirmed)

    @property
    def text(self) -> str:
        """Confirmed text followed by the partial text."""
        return " ".join(t for t in (self.confirmed_text, self.partial) if t)


class Stream(Protocol):
    """What `create_stream` returns for any model family (Whisper here; a transducer later)."""

    sample_rate: int

    def accept_waveform(self, samples: np.ndarray, sample_rate: int | None = None) -> StreamResult: ...

    @property
    def result(self) -> StreamResult: ...

    def finish(self) -> StreamResult: ...


def checked_chunk(samples, sample_rate: int | None, expected_rate: int, where: str = "accept_waveform") -> np.ndarray:
    """`samples` as a 1-D float32 array, or a one-line InputError (the stream stays usable).

    Accepts any 1-D float array (or a list of floats); a (n, 1) column is flattened. Rejects another
    sample rate, integer PCM (scale it to [-1, 1] first), several channels and NaN/inf samples.
    """
    if sample_rate is not None and int(sample_rate) != expected_rate:
        raise InputError(
            f"{where}: sample rate {sample_rate} Hz, the model expects {expected_rate} Hz (resample first)"
        )
    array = np.asarray(samples)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise InputError(f"{where}: expected mono samples (a 1-D array), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{where}: expected float samples in [-1, 1], got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        array = array.astype(np.float32, copy=False)
    if array.size and not np.isfinite(array).all():
        raise InputError(f"{where}: {int((~np.isfinite(array)).sum())} NaN/inf samples in the chunk (chunk dropped)")
    return array
