"""Audio in: files or arrays -> mono float32 at 16 kHz (see `io`)."""

from __future__ import annotations

from weightwise.audio.io import SAMPLE_RATE, audio_duration_s, load_audio, to_mono_16k

__all__ = ["SAMPLE_RATE", "audio_duration_s", "load_audio", "to_mono_16k"]
