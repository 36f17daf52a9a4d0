"""weightwise.audio.io: decoding, downmix, resampling, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from weightwise.audio import SAMPLE_RATE, audio_duration_s, load_audio, to_mono_16k
from weightwise.errors import InputError

CLEAN_MINI = "speech/librispeech_test_clean_mini"


def _sine(freq_hz: float, rate_hz: int, duration_s: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate_hz * duration_s))) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _peak_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate_hz)[np.argmax(spectrum)])


def _assert_one_line_naming(err: pytest.ExceptionInfo, name: str, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert name in message
    for word in words:
        assert word in message


def test_sample_rate_is_whispers():
    assert SAMPLE_RATE == 16000


def test_load_real_flac_matches_manifest_duration(shared_data_dir: Path):
    folder = shared_data_dir / CLEAN_MINI
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        samples = load_audio(folder / record["audio"])
        assert samples.dtype == np.float32
        assert samples.ndim == 1 and samples.flags["C_CONTIGUOUS"]
        assert abs(len(samples) - round(record["duration"] * SAMPLE_RATE)) <= 1
        assert 0.01 < np.abs(samples).max() <= 1.0  # real speech, not silence or garbage


def test_16k_file_keeps_its_exact_samples(tmp_path: Path):
    pcm = (np.random.default_rng(0).uniform(-0.5, 0.5, 1600) * 32767).astype(np.int16)
    path = tmp_path / "exact.wav"
    sf.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path), pcm.astype(np.float32) / 32768)


def test_48k_stereo_is_downmixed_and_resampled(tmp_path: Path):
    left = _sine(1000, 48000, 1.5)
    right = np.zeros_like(left)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == 24000  # 1.5 s at 16 kHz
    # The mean of a 0.5-amplitude channel and a silent one peaks at 0.25.
    assert np.abs(samples[2000:-2000]).max() == pytest.approx(0.25, abs=0.01)
    assert audio_duration_s(path) == pytest.approx(1.5)


def test_resampling_keeps_frequency(tmp_path: Path):
    path = tmp_path / "tone44k.flac"
    sf.write(path, _sine(1000, 44100, 1.0), 44100)
    samples = load_audio(path)
    assert len(samples) == 16000
    assert _peak_hz(samples, SAMPLE_RATE) == pytest.approx(1000, abs=2)


def test_resampling_removes_content_above_8khz_instead_of_aliasing(tmp_path: Path):
    path = tmp_path / "tone10k.wav"
    sf.write(path, _sine(10000, 48000, 1.0), 48000, subtype="FLOAT")
    samples = load_audio(path)  # a 10 kHz tone cannot exist at 16 kHz; aliased it would be 6 kHz
    rms = np.sqrt(np.mean(samples[1000:-1000] ** 2))
    assert 20 * np.log10(rms / (0.5 / np.sqrt(2)) + 1e-12) < -100


def test_load_at_another_rate(tmp_path: Path):
    path = tmp_path / "tone.wav"
    sf.write(path, _sine(440, 16000, 1.0), 16000)
    samples = load_audio(path, sample_rate=8000)
    assert len(samples) == 8000
    assert _peak_hz(samples, 8000) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("fmt,subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_decode(tmp_path: Path, fmt: str, subtype: str):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot handle {fmt}")
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, _sine(1000, 22050, 1.0), 22050, format=fmt, subtype=subtype)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 1200  # codec padding/priming differs by a few frames
    assert _peak_hz(samples, SAMPLE_RATE) == pytest.approx(1000, abs=3)
    assert audio_duration_s(path) == pytest.approx(1.0, abs=0.08)


def test_to_mono_16k_averages_frames_by_channels():
    stereo = np.stack([np.full(320, 0.2), np.full(320, 0.4)], axis=1)
    mono = to_mono_16k(stereo, 16000)
    assert mono.dtype == np.float32 and mono.shape == (320,)
    np.testing.assert_allclose(mono, 0.3, rtol=1e-6)


def test_to_mono_16k_resamples_and_scales_int16():
    pcm = (_sine(500, 8000, 1.0) * 32767).astype(np.int16)
    mono = to_mono_16k(pcm, 8000)
    assert len(mono) == 16000
    assert np.abs(mono).max() == pytest.approx(0.5, abs=0.02)
    assert _peak_hz(mono, SAMPLE_RATE) == pytest.approx(500, abs=2)


@pytest.mark.parametrize(
    "samples,rate,needle",
    [
        (np.zeros(0, dtype=np.float32), 16000, "audio array is empty"),
        (np.zeros((0, 2), dtype=np.float32), 16000, "audio array is empty"),
        (np.zeros((2, 3, 4), dtype=np.float32), 16000, "1-D or 2-D"),
        (np.array([0.1, np.nan], dtype=np.float32), 16000, "non-finite"),
        (np.array([0.1, 1e30], dtype=np.float32), 16000, "samples up to 1e+30"),
        (np.array([0.1, -17.0]), 16000, "samples up to 17"),
        (np.array(["a", "b"]), 16000, "numbers"),
        (np.zeros(10, dtype=np.float32), 0, "sample rate"),
    ],
)
def test_to_mono_16k_rejects_bad_arrays(samples: np.ndarray, rate: int, needle: str):
    with pytest.raises(InputError) as err:
        to_mono_16k(samples, rate)
    _assert_one_line_naming(err, needle)


def _make_bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"bad_{kind}.wav"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not audio at all\n" * 20)
    elif kind == "zero_frames":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
        assert path.stat().st_size > 0  # a valid header with no frames
    elif kind == "nan":
        sf.write(path, np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000, subtype="FLOAT")
    elif kind == "huge":  # finite but absurd: log-mel features would overflow float32
        sf.write(path, np.array([0.1, 1e30, -0.2], dtype=np.float32), 16000, subtype="FLOAT")
    elif kind == "pcm_scaled":  # int16 values written as float samples
        sf.write(path, np.array([120.0, -32768.0, 30.0], dtype=np.float32), 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("missing", "audio file not found"),
        ("directory", "is a directory"),
        ("empty", "empty file (0 bytes)"),
        ("text", "not a readable audio file (Format not recognised)"),
        ("zero_frames", "zero length"),
        ("nan", "non-finite"),
        ("huge", "samples up to 1e+30, beyond the accepted +-16"),
        ("pcm_scaled", "samples up to 3.28e+04"),
    ],
)
def test_load_audio_errors_name_the_file(tmp_path: Path, kind: str, needle: str):
    path = _make_bad_file(tmp_path, kind)
    with pytest.raises(InputError) as err:
        load_audio(path)
    _assert_one_line_naming(err, path.name, needle)
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("missing", "audio file not found"),
        ("directory", "is a directory"),
        ("empty", "empty file"),
        ("text", "not a readable audio file"),
        ("zero_frames", "zero length"),
    ],
)
def test_audio_duration_errors_name_the_file(tmp_path: Path, kind: str, needle: str):
    path = _make_bad_file(tmp_path, kind)
    with pytest.raises(InputError) as err:
        audio_duration_s(path)
    _assert_one_line_naming(err, path.name, needle)


def test_float_audio_beyond_full_scale_but_within_headroom_loads(tmp_path: Path):
    path = tmp_path / "hot.wav"
    samples = np.array([0.5, -15.9, 3.0, 1.2], dtype=np.float32)  # a mix that clips, not junk
    sf.write(path, samples, 16000, subtype="FLOAT")
    assert np.array_equal(load_audio(path), samples)
    assert np.array_equal(to_mono_16k(samples, 16000), samples)


def test_truncated_flac_is_an_input_error(shared_data_dir: Path, tmp_path: Path):
    source = shared_data_dir / CLEAN_MINI / "audio/1089/1089-134691-0000.flac"
    path = tmp_path / "truncated.flac"
    path.write_bytes(source.read_bytes()[:2000])  # header intact, audio cut off
    with pytest.raises(InputError) as err:
        load_audio(path)
    _assert_one_line_naming(err, path.name, "not a readable audio file")


def test_duration_of_real_flac(shared_data_dir: Path):
    path = shared_data_dir / CLEAN_MINI / "audio/1089/1089-134686-0001.flac"
    assert audio_duration_s(path) == pytest.approx(3.275, abs=1e-3)
