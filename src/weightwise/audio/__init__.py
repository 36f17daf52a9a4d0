"""Audio in: files or arrays -> mono float32 at `SAMPLE_RATE` (see `io`); noise at an SNR (see `noise`).

Every audio constant lives here (`SAMPLE_RATE`); this package imports nothing from weightwise but
`errors`: finding noise clips by name or manifest is `weightwise.data.resolve_noise`.
"""

from __future__ import annotations

from weightwise.audio.io import SAMPLE_RATE, audio_duration_s, load_audio, to_mono_16k
from weightwise.audio.noise import (
    Decibels,
    NoiseSource,
    add_noise,
    cell_seed,
    load_clip,
    mix_at_snr,
    noise_for,
    noise_label,
)

__all__ = [
    "SAMPLE_RATE",
    "Decibels",
    "NoiseSource",
    "add_noise",
    "audio_duration_s",
    "cell_seed",
    "load_audio",
    "load_clip",
    "mix_at_snr",
    "noise_for",
    "noise_label",
    "to_mono_16k",
]
