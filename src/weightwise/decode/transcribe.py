"""Transcribe an utterance of any length: features -> 30 s windows -> encoder -> search -> text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from weightwise.audio import SAMPLE_RATE
from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.decode.options import DecodeObserver, DecodingOptions
from weightwise.decode.search import beam_search, greedy_search, max_new_tokens
from weightwise.errors import InputError
from weightwise.models.onnx_engine import OnnxWhisperASR
from weightwise.models.runtime import MAX_POSITIONS, encoder_positions
from weightwise.models.transducer import TransducerASR
from weightwise.models.whisper import WhisperASR


@dataclass(frozen=True)
class WindowTrace:
    """What one 30 s window cost: one encoder call and `n_decoder_calls` decoder calls."""

    index: int
    start_s: float
    duration_s: float  # real audio in the window (the rest is zero-padded features)
    n_tokens: int  # text tokens generated (eot excluded)
    stop_reason: str = "eot"  # "eot", "max_new_tokens" or "repetition" (the guard stopped a loop)


@dataclass(frozen=True)
class Transcript:
    """The text of one utterance and the decode trace that produced it."""

    text: str
    tokens: tuple[int, ...]
    audio_s: float
    windows: tuple[WindowTrace, ...]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_windows_repetition_stopped(self) -> int:
        """Windows the repetition guard stopped (their text ends in a loop, cut short)."""
        return sum(w.stop_reason == "repetition" for w in self.windows)

    @property
    def n_windows_limit_stopped(self) -> int:
        """Windows that hit `max_new_tokens` (their text may be cut mid-sentence)."""
        return sum(w.stop_reason == "max_new_tokens" for w in self.windows)


def run_encoder(model: WhisperASR | OnnxWhisperASR, features: torch.Tensor) -> torch.Tensor:
    """The encoder's output (batch, positions, width) for one window's features."""
    if isinstance(model, OnnxWhisperASR):
        return model.encode(features)
    return model.network.model.encoder(features).last_hidden_state


@torch.inference_mode()
def transcribe(
    model: WhisperASR | TransducerASR | OnnxWhisperASR,
    audio: np.ndarray,
    options: DecodingOptions = DecodingOptions(),
    observer: DecodeObserver | None = None,
    file_id: str = "",
    encoder: Callable[[WhisperASR | OnnxWhisperASR, torch.Tensor], torch.Tensor] | None = None,
) -> Transcript:
    """Transcribe 16 kHz mono float32 `audio` (long audio in consecutive 30 s windows; a transducer
    streams it chunk by chunk, see `weightwise.decode.transducer`).

    Args:
        model: from `load_model`.
        audio: samples at 16 kHz, e.g. from `weightwise.audio.load_audio`.
        options: search settings (greedy by default).
        observer: optional hooks (`DecodeObserver`) called per window and per decoder call.
        file_id: passed to `observer.on_file`.
        encoder: maps (model, one window's features) to the encoder output; None: `run_encoder`
            (the optimizer's closed loop passes a memo that reuses outputs across decodes).

    Raises:
        InputError: `options.max_new_tokens` exceeds the decoder's room, or the audio gives
            non-finite features (NaN/inf samples, or samples far beyond full scale).

    Example:
        >>> model = load_model("whisper-tiny.en")  # doctest: +SKIP
        >>> transcribe(model, load_audio("clip.flac")).text  # doctest: +SKIP
        'Stuff it into you, his belly counselled him.'
    """
    observer = observer or DecodeObserver()
    if model.info.family == "transducer":
        from weightwise.decode.transducer import transcribe_transducer

        return transcribe_transducer(model, audio, options, observer, file_id)
    max_new_tokens(model, options)  # a limit the decoder cannot honour fails before any work
    mel = log_mel_spectrogram(audio, model.n_mels)
    if not torch.isfinite(mel).all():  # NaN/inf or overflowing samples: the model would babble
        raise InputError(
            f"{file_id or 'audio'}: log-mel features are not finite (NaN/inf samples, or samples far beyond full scale)"
        )
    audio_s = len(audio) / SAMPLE_RATE
    observer.on_file(file_id, audio_s)
    search = greedy_search if options.beam_size == 1 else beam_search
    tokens: list[int] = []
    traces = []
    for window in split_windows(mel):
        observer.on_window(window.index, window.start_s, window.duration_s)
        features = window.features.unsqueeze(0).to(model.dtype)
        positions = encoder_positions(getattr(model, "runtime", None), window.duration_s)
        if positions < MAX_POSITIONS:  # a plan's encoder context: the encoder sees the window's start only
            features = features[..., : features.shape[-1] * positions // MAX_POSITIONS]
        encoder_out = (encoder or run_encoder)(model, features)  # cross-attention keys/values, once per window
        window_tokens, stop_reason = search(model, encoder_out, options, observer, window.index)
        observer.on_window_end(window.index, len(window_tokens))
        traces.append(WindowTrace(window.index, window.start_s, window.duration_s, len(window_tokens), stop_reason))
        tokens += window_tokens
    return Transcript(model.decode_text(tokens), tuple(tokens), audio_s, tuple(traces))
