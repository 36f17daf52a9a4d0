"""Feeding a stream live: a file paced in real time, or a microphone (sounddevice, if installed)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

import numpy as np

from weightwise.errors import InputError
from weightwise.stream.protocol import Stream, StreamResult


def file_chunks(samples: np.ndarray, chunk_samples: int, sample_rate: int, pace: bool = True) -> Iterator[np.ndarray]:
    """`samples` in chunks; with `pace`, chunk k is yielded no earlier than k chunks after the start
    (as a microphone would deliver it)."""
    began = time.monotonic()
    for start in range(0, len(samples), chunk_samples):
        chunk = samples[start : start + chunk_samples]
        if pace:
            time.sleep(max(0.0, began + (start + len(chunk)) / sample_rate - time.monotonic()))
        yield chunk


def mic_chunks(chunk_samples: int, sample_rate: int, max_s: float | None = None) -> Iterator[np.ndarray]:
    """Chunks from the default input device until Ctrl-C (or `max_s` seconds).

    Raises:
        InputError: sounddevice is not installed, or there is no input device.
    """
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the package is there but PortAudio is not
        raise InputError(
            f"--mic needs the sounddevice package and PortAudio (pip install sounddevice): {err}"
        ) from None
    try:
        sounddevice.query_devices(kind="input")
    except Exception as err:  # sounddevice raises PortAudioError/ValueError when none exists
        raise InputError(f"--mic: no input sound device ({' '.join(str(err).split())})") from None
    chunks: queue.Queue = queue.Queue()
    began = time.monotonic()

    def callback(data, *_):
        chunks.put(data[:, 0].copy())

    with sounddevice.InputStream(sample_rate, chunk_samples, channels=1, dtype="float32", callback=callback):
        while max_s is None or time.monotonic() - began < max_s:
            yield chunks.get()


def run_stream(stream: Stream, chunks: Iterator[np.ndarray], on_result: Callable[[StreamResult], None]) -> StreamResult:
    """Feed `chunks` to `stream`, calling `on_result` after every chunk; finish on the end of the
    chunks or Ctrl-C, and return the final result."""
    try:
        for chunk in chunks:
            on_result(stream.accept_waveform(chunk))
    except KeyboardInterrupt:
        pass
    final = stream.finish()
    on_result(final)
    return final
