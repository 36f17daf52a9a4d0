"""Noise for robustness runs: where it comes from, and mixing it in at an exact SNR.

A `NoiseSource` is either generated (white, pink) or a set of clips on disk (the derived babble
in shared/data, any audio file, any manifest); `weightwise.data.resolve_noise` turns a user's noise
name or path into one (reading a manifest is the data layer's job). `noise_for` draws a seeded segment of the length
asked for, and `mix_at_snr` scales it so that speech power over noise power, measured over the
whole utterance, is the requested SNR. Seeds come from `cell_seed(utterance id, noise, snr)`, so
every benchmark cell hears the same noise in every run and process (lhotse's seeded `mix`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weightwise.audio.io import load_audio
from weightwise.errors import InputError

Decibels = float  # unit alias, as in lhotse

SYNTHETIC = ("white", "pink")  # generated here, no files
NAMED_SETS = {"babble": "noise/babble_librispeech_derived"}  # relative to shared/data
KINDS = ("synthetic", "recorded", "derived")

__all__ = [
    "Decibels",
    "NoiseSource",
    "add_noise",
    "cell_seed",
    "load_clip",
    "mix_at_snr",
    "noise_for",
    "noise_label",
]


@dataclass(frozen=True)
class NoiseSource:
    """Where noise comes from.

    Attributes:
        name: "white", "pink", "babble", or the stem of the file/manifest folder it came from.
        kind: "synthetic" (generated), "recorded" (field recording) or "derived" (e.g. babble
            built from speech); for a manifest, its entries' `kind` when they all agree.
        paths: the clips drawn from; empty for generated noise.
    """

    name: str
    kind: str
    paths: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        if self.kind not in KINDS:
            raise InputError(f"noise kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.paths and self.name not in SYNTHETIC:
            raise InputError(f"noise '{self.name}' has no clips and is not one of {SYNTHETIC}")


def noise_label(spec: str) -> str:
    """The short name of a noise spec: the spec itself for a named noise, the folder of a
    manifest.jsonl, else the file or folder name without suffix."""
    if spec in SYNTHETIC or spec in NAMED_SETS:
        return spec
    path = Path(spec)
    return path.parent.name if path.suffix == ".jsonl" else path.stem


def noise_for(source: NoiseSource, n_samples: int, seed: int) -> np.ndarray:
    """A seeded noise segment of exactly `n_samples` at 16 kHz, float32.

    Generated noise has unit RMS. A clip is picked (seeded); if it is long enough a seeded
    window is cropped from it, otherwise it is looped (wrapping around) from a seeded offset.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"noise length must be a positive number of samples, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    if not source.paths:
        white = rng.standard_normal(int(n_samples))
        return _unit_rms(_pinked(white) if source.name == "pink" else white)
    clip = load_clip(source.paths[int(rng.integers(len(source.paths)))])
    if n_samples <= len(clip):
        start = int(rng.integers(len(clip) - n_samples + 1))
        return clip[start : start + n_samples].copy()
    start = int(rng.integers(len(clip)))
    return np.take(clip, (start + np.arange(n_samples)) % len(clip))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: Decibels) -> np.ndarray:
    """Speech plus noise scaled so that 10*log10(P_speech / P_noise) == `snr_db`.

    P is the mean square over the whole utterance (silences included). The sum is neither
    normalized nor clipped: either would change the SNR just set. Values may exceed 1.0, which
    the float pipeline accepts.

    Raises:
        InputError: shapes differ, `snr_db` is not finite, or speech/noise is all zeros.
    """
    speech64 = np.asarray(speech, dtype=np.float64)
    noise64 = np.asarray(noise, dtype=np.float64)
    if speech64.ndim != 1 or speech64.shape != noise64.shape:
        raise InputError(f"speech {speech64.shape} and noise {noise64.shape} must be equal 1-D")
    if not np.isfinite(snr_db):
        raise InputError(f"SNR must be a finite number of dB, got {snr_db!r}")
    power_speech, power_noise = np.mean(speech64**2), np.mean(noise64**2)
    for what, power in (("speech", power_speech), ("noise", power_noise)):
        if power == 0.0:
            raise InputError(f"cannot mix at an SNR: silent {what} (all samples are zero)")
    gain = np.sqrt(power_speech / (power_noise * 10.0 ** (snr_db / 10.0)))
    return (speech64 + gain * noise64).astype(np.float32)


def add_noise(speech: np.ndarray, source: NoiseSource, snr_db: Decibels, seed: int) -> np.ndarray:
    """`speech` with noise from `source` mixed in at `snr_db` (see `noise_for`, `mix_at_snr`)."""
    return mix_at_snr(speech, noise_for(source, len(speech), seed), snr_db)


def cell_seed(*parts: str | int | float) -> int:
    """A stable 32-bit seed from e.g. (utterance id, noise name, snr_db).

    SHA-256 of the parts' `str()` joined by U+001F, first 4 bytes big-endian. Unlike `hash()`
    it does not change between processes. Note `str(5)` != `str(5.0)`: pass one type per field.
    """
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (str, int, float)):
            raise InputError(f"seed parts must be strings or numbers, got {part!r}")
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def _pinked(white: np.ndarray) -> np.ndarray:
    """Shape white noise to a 1/f power spectrum (amplitude 1/sqrt(f)); the DC bin is zeroed."""
    spectrum = np.fft.rfft(white)
    bins = np.arange(len(spectrum), dtype=np.float64)
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(bins[1:])
    return np.fft.irfft(spectrum, n=len(white))


def _unit_rms(samples: np.ndarray) -> np.ndarray:
    """Scale to RMS 1 (an all-zero input, e.g. 1-sample pink noise, is returned as is)."""
    rms = float(np.sqrt(np.mean(samples**2)))
    return (samples / rms if rms > 0 else samples).astype(np.float32)


@functools.lru_cache(maxsize=32)
def load_clip(path: Path) -> np.ndarray:
    """A noise clip as 16 kHz mono float32, read once per process and frozen (it is shared)."""
    clip = load_audio(path)
    clip.flags.writeable = False
    return clip
