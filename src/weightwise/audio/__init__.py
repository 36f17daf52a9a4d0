"""Audio in: files or arrays -> mono float32 at 16 kHz (see `io`); noise at an SNR (see `noise`)."""

from __future__ import annotations

from weightwise.audio.io import SAMPLE_RATE, audio_duration_s, load_audio, to_mono_16k
from weightwise.audio.noise import (
    Decibels,
    NoiseSource,
    add_noise,
    cell_seed,
    mix_at_snr,
    noise_for,
    noise_label,
    resolve_noise,
)

__all__ = [
    "SAMPLE_RATE",
    "Decibels",
    "NoiseSource",
    "add_noise",
    "audio_duration_s",
    "cell_seed",
    "load_audio",
    "mix_at_snr",
    "noise_for",
    "noise_label",
    "resolve_noise",
    "to_mono_16k",
]
