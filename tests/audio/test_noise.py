"""weightwise.audio.noise: exact-SNR mixing, seeded noise, looping/cropping, spectra, sources."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from weightwise.audio import (
    SAMPLE_RATE,
    NoiseSource,
    add_noise,
    cell_seed,
    mix_at_snr,
    noise_for,
    noise_label,
)
from weightwise.errors import InputError

BABBLE = "noise/babble_librispeech_derived"
WHITE = NoiseSource("white", "synthetic")
PINK = NoiseSource("pink", "synthetic")


def _speech(duration_s: float = 2.0, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: a 150 Hz harmonic stack, syllable-rate envelope, a silent gap."""
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    signal = 0.2 * voiced * envelope + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    signal[: SAMPLE_RATE // 4] = 0.0  # leading silence still counts in the power
    return signal.astype(np.float32)


def _snr_db(speech: np.ndarray, mix: np.ndarray) -> float:
    speech64 = speech.astype(np.float64)
    noise64 = mix.astype(np.float64) - speech64
    return float(10 * np.log10(np.mean(speech64**2) / np.mean(noise64**2)))


def _write_clip(path: Path, samples: np.ndarray) -> Path:
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")  # float WAV keeps exact samples
    return path


def _slope_per_decade(samples: np.ndarray, low_hz: float = 100, high_hz: float = 4000) -> float:
    """Least-squares slope of log10(averaged periodogram) vs log10(f) over [low, high] Hz."""
    seg = 4096
    frames = samples[: len(samples) // seg * seg].reshape(-1, seg) * np.hanning(seg)
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(seg, 1 / SAMPLE_RATE)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0])


@pytest.mark.parametrize("snr_db", [-10.0, -5.0, 0.0, 5.0, 12.5, 20.0])
@pytest.mark.parametrize("source", [WHITE, PINK], ids=["white", "pink"])
def test_mix_hits_the_requested_snr(snr_db, source):
    speech = _speech()
    mix = add_noise(speech, source, snr_db, seed=7)
    assert mix.dtype == np.float32 and mix.shape == speech.shape
    assert abs(_snr_db(speech, mix) - snr_db) < 1e-6


def test_mix_adds_the_noise_scaled_by_the_snr_gain_without_clipping():
    speech = np.clip(_speech() * 4.0, -0.99, 0.99)
    noise = noise_for(WHITE, len(speech), seed=1)
    mix = mix_at_snr(speech, noise, -10.0)
    p_speech = np.mean(speech.astype(np.float64) ** 2)
    p_noise = np.mean(noise.astype(np.float64) ** 2)
    gain = np.sqrt(10.0 * p_speech / p_noise)  # -10 dB: scaled noise power = 10x speech power
    np.testing.assert_allclose(mix, speech + gain * noise, rtol=0, atol=1e-6)
    assert np.abs(mix).max() > 1.0  # not normalized, not clipped


def test_white_and_pink_have_unit_rms():
    for source in (WHITE, PINK):
        noise = noise_for(source, 48000, seed=3)
        assert noise.dtype == np.float32 and noise.shape == (48000,)
        assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)


def test_pink_falls_10_db_per_decade_and_white_is_flat():
    n = 16 * SAMPLE_RATE
    pink_slope = _slope_per_decade(noise_for(PINK, n, seed=11))
    white_slope = _slope_per_decade(noise_for(WHITE, n, seed=11))
    assert -1.25 <= pink_slope <= -0.75, pink_slope
    assert abs(white_slope) <= 0.25, white_slope
    assert abs(np.mean(noise_for(PINK, n, seed=11))) < 1e-4  # DC bin removed


def test_same_seed_same_noise_other_seed_other_noise(tmp_path: Path):
    clip = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * SAMPLE_RATE).astype(np.float32)
    recorded = NoiseSource("hum", "recorded", (_write_clip(tmp_path / "hum.wav", clip),))
    for source in (WHITE, PINK, recorded):
        a, b, c = (noise_for(source, SAMPLE_RATE, seed=s) for s in (5, 5, 6))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c), source.name


def test_short_clip_is_looped_to_the_speech_length(tmp_path: Path):
    clip = np.random.default_rng(1).uniform(-0.5, 0.5, SAMPLE_RATE).astype(np.float32)  # 1 s
    source = NoiseSource("one_second", "recorded", (_write_clip(tmp_path / "one_second.wav", clip),))
    speech = _speech(3.5)
    mix = add_noise(speech, source, 0.0, seed=2)
    added = mix.astype(np.float64) - speech.astype(np.float64)
    assert len(added) == int(3.5 * SAMPLE_RATE)
    period = SAMPLE_RATE
    np.testing.assert_allclose(added[period:], added[:-period], rtol=0, atol=1e-6)
    # one period is the clip itself, rotated to the seeded start
    raw = noise_for(source, len(speech), seed=2)
    start = int(np.flatnonzero(clip == raw[0])[0])
    np.testing.assert_array_equal(raw[:period], np.roll(clip, -start))
    np.testing.assert_array_equal(raw, np.tile(np.roll(clip, -start), 4)[: len(raw)])


def test_long_clip_is_cropped_without_wrapping(tmp_path: Path):
    clip = np.linspace(-0.9, 0.9, 5 * SAMPLE_RATE, dtype=np.float32)  # every sample distinct
    source = NoiseSource("ramp", "recorded", (_write_clip(tmp_path / "ramp.wav", clip),))
    starts = set()
    for seed in range(5):
        segment = noise_for(source, SAMPLE_RATE, seed=seed)
        start = int(np.flatnonzero(clip == segment[0])[0])
        assert start + SAMPLE_RATE <= len(clip)
        np.testing.assert_array_equal(segment, clip[start : start + SAMPLE_RATE])
        starts.add(start)
    assert len(starts) > 1  # the offset is drawn, not always 0


@pytest.mark.parametrize(
    "spec, name",
    [
        ("white", "white"),
        ("babble", "babble"),
        ("n/street/manifest.jsonl", "street"),
        ("n/street", "street"),
        ("clips/running_tap.flac", "running_tap"),
    ],
)
def test_noise_label_is_the_short_name_of_a_spec(spec, name):
    assert noise_label(spec) == name


@pytest.mark.parametrize("silent", ["speech", "noise"])
def test_silent_input_cannot_be_mixed(silent):
    signal, zeros = _speech(0.5), np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    speech, noise = (zeros, signal) if silent == "speech" else (signal, zeros)
    with pytest.raises(InputError, match=f"silent {silent}"):
        mix_at_snr(speech, noise, 0.0)


def test_bad_mix_arguments_are_input_errors():
    speech = _speech(0.5)
    with pytest.raises(InputError):
        mix_at_snr(speech, speech[:-1], 0.0)
    with pytest.raises(InputError):
        mix_at_snr(speech, speech, float("nan"))
    with pytest.raises(InputError):
        noise_for(WHITE, 0, seed=1)


def test_cell_seed_is_a_fixed_sha256_value():
    expected = int.from_bytes(hashlib.sha256(b"utt-1\x1fbabble\x1f5").digest()[:4], "big")
    assert expected == 4183717804
    assert cell_seed("utt-1", "babble", 5) == 4183717804
    assert cell_seed("utt-1", "babble", 10) != cell_seed("utt-1", "babble", 5)
    assert 0 <= cell_seed("x") < 2**32


def test_cell_seed_is_the_same_in_another_process():
    code = "from weightwise.audio.noise import cell_seed; print(cell_seed('utt-1', 'babble', 5))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 4183717804
