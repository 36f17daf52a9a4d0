"""Streaming recognition: an explicit state object the caller drives (sherpa-onnx style).

    stream = model.create_stream(chunk_ms=1000)          # or create_stream(model, chunk_ms=1000)
    result = stream.accept_waveform(samples)             # StreamResult: confirmed words + partial
    final = stream.finish()
    evaluate_stream(model, manifest, device, ...)        # WER, latency, RTF and energy vs offline

Whisper streams re-decode a growing buffer with LocalAgreement-2 (`whisper`); `vad` gates decodes
with silero-vad; `pauses` builds audio with silences and noise gaps to show what the gate saves.
"""

from __future__ import annotations

import dataclasses

from weightwise.decode import DecodeObserver
from weightwise.errors import InputError
from weightwise.models import WhisperASR, register_stream
from weightwise.stream.protocol import ConfirmedWord, DecodeStep, Stream, StreamResult, Word
from weightwise.stream.transducer import TransducerStreamAdapter
from weightwise.stream.whisper import StreamOptions, WhisperStream


def create_stream(
    model: WhisperASR,
    chunk_ms: int = 1000,
    vad: bool = False,
    observer: DecodeObserver | None = None,
    file_id: str = "",
    options: StreamOptions | None = None,
) -> WhisperStream | TransducerStreamAdapter:
    """A new stream over `model` that decodes every `chunk_ms` of received audio.

    `observer` (e.g. the profiler's `Tracer`) sees every re-decode; `options` overrides the rest.

    Raises:
        InputError: `chunk_ms` out of 10..10000, or `vad` without silero-vad installed (or on a
            transducer, whose stream decodes each chunk once and has no gate).
    """
    if not isinstance(model, WhisperASR):
        if not hasattr(model, "create_stream"):
            raise InputError(f"{model!r} has no streaming decoder")
        if vad:
            raise InputError("--vad gates Whisper streams only (a transducer decodes each chunk once)")
        return TransducerStreamAdapter(model, chunk_ms, observer)
    options = dataclasses.replace(options or StreamOptions(), chunk_ms=chunk_ms, vad=vad)
    return WhisperStream(model, options, observer, file_id)


register_stream("whisper", create_stream)

__all__ = [
    "ConfirmedWord",
    "DecodeStep",
    "Stream",
    "StreamOptions",
    "StreamResult",
    "TransducerStreamAdapter",
    "WhisperStream",
    "Word",
    "create_stream",
]
