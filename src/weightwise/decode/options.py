"""Decoding options and the per-step hooks the profiler attaches to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode one 30 s window. Fold overrides in with `dataclasses.replace`.

    Settings match our peer's "greedy, no timestamps, no previous-text conditioning": every window
    starts from the bare prompt, timestamps are never emitted, and there is no temperature fallback.
    Where the peer would fall back on a too-repetitive window, we stop it (the repetition guard);
    the guard's defaults leave clean-speech transcripts unchanged.
    """

    beam_size: int = 1  # 1 = greedy search; >1 = beam search with this many beams
    max_new_tokens: int | None = None  # per window; None = decoder context (448) minus the prompt
    suppress_blank: bool = True  # no blank/eot as the first token (the model's suppress_ids_begin)
    length_penalty: float | None = None  # beam ranking: None = logprob / length, else ((5+n)/6)**a
    use_cache: bool = True  # key/value cache; False recomputes all positions at every step
    # runaway-decoding guard (weightwise.decode.guard): stop a window that repeats itself
    repetition_stop_repeats: int | None = 4  # last n-gram repeated this often in a row; None = off
    compression_ratio_threshold: float | None = 2.4  # text's zlib ratio above this (openai's 2.4); None = off
    repetition_min_tokens: int = 32  # neither stop fires below this many window tokens (nor shorter repeats)

    def __post_init__(self):
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.repetition_stop_repeats is not None and self.repetition_stop_repeats < 2:
            raise ValueError(f"repetition_stop_repeats must be >= 2 or None, got {self.repetition_stop_repeats}")
        if self.compression_ratio_threshold is not None and not self.compression_ratio_threshold > 1:
            raise ValueError(f"compression_ratio_threshold must be > 1 or None, got {self.compression_ratio_threshold}")
        if self.repetition_min_tokens < 1:
            raise ValueError(f"repetition_min_tokens must be >= 1, got {self.repetition_min_tokens}")

    def without_guard(self) -> DecodingOptions:
        """These options with the repetition guard off (decode every window to eot or the limit)."""
        return dataclasses.replace(self, repetition_stop_repeats=None, compression_ratio_threshold=None)


class DecodeObserver:
    """Hooks called by the decode loop; subclass and override what you need (all no-ops here).

    The profiler uses them to count encoder calls (windows per file) and decoder calls
    (tokens per window, with the number of positions each call processes).
    """

    #: whether this observer hooks the decoder's modules and needs them called as transformers calls
    #: them (each attention block's and layer's forward, cross-attention keys/values projected at the
    #: first decoder call): the decode then skips `models.whisper_step.DecoderSteps`
    hooks_modules: bool = False

    def on_file(self, file_id: str, audio_s: float) -> None:
        """A new utterance of `audio_s` seconds starts."""

    def on_window(self, window_index: int, start_s: float, duration_s: float) -> None:
        """The encoder is about to run on one 30 s window."""

    def on_decoder_step(self, window_index: int, step: int, n_positions: int, n_sequences: int) -> None:
        """The decoder is about to run once: `n_positions` new tokens for `n_sequences` beams."""

    def on_window_end(self, window_index: int, n_tokens: int) -> None:
        """The window produced `n_tokens` text tokens (eot excluded)."""


class DecodeCounter(DecodeObserver):
    """Counts files, audio seconds, encoder windows, decoder calls and tokens (no module hooks)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.audio_s, self.n_files, self.n_windows, self.n_decoder_calls, self.n_tokens = 0.0, 0, 0, 0, 0

    def on_file(self, file_id: str, audio_s: float) -> None:
        self.n_files += 1
        self.audio_s += audio_s

    def on_window(self, window_index: int, start_s: float, duration_s: float) -> None:
        self.n_windows += 1

    def on_decoder_step(self, window_index: int, step: int, n_positions: int, n_sequences: int) -> None:
        self.n_decoder_calls += 1

    def on_window_end(self, window_index: int, n_tokens: int) -> None:
        self.n_tokens += n_tokens
