"""weightwise.data.resolve_noise: noise names, files, manifests and named sets in shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from weightwise.audio import SAMPLE_RATE, add_noise, cell_seed, noise_for
from weightwise.data import noise as noise_module
from weightwise.data import resolve_noise
from weightwise.errors import InputError

BABBLE = "noise/babble_librispeech_derived"


def _speech(duration_s: float = 1.0) -> np.ndarray:
    """A 150 Hz tone with a silent start (speech-like enough for an SNR check)."""
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    signal = 0.2 * np.sin(2 * np.pi * 150 * t)
    signal[: SAMPLE_RATE // 4] = 0.0
    return signal.astype(np.float32)


def _snr_db(speech: np.ndarray, mix: np.ndarray) -> float:
    speech64 = speech.astype(np.float64)
    noise64 = mix.astype(np.float64) - speech64
    return float(10 * np.log10(np.mean(speech64**2) / np.mean(noise64**2)))


def _write_clip(path: Path, samples: np.ndarray) -> Path:
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")  # float WAV keeps exact samples
    return path


def test_file_manifest_and_folder_specs(tmp_path: Path):
    folder = tmp_path / "street"
    (folder / "audio").mkdir(parents=True)
    records = []
    for i in range(3):
        samples = np.full(SAMPLE_RATE, 0.1 * (i + 1), dtype=np.float32)
        _write_clip(folder / "audio" / f"c{i}.wav", samples)
        records.append({"id": f"c{i}", "audio": f"audio/c{i}.wav", "kind": "recorded"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    expected = tuple((folder / "audio" / f"c{i}.wav").resolve() for i in range(3))
    for spec in (folder, folder / "manifest.jsonl"):
        source = resolve_noise(str(spec))
        assert (source.name, source.kind, source.paths) == ("street", "recorded", expected)
    single = resolve_noise(str(folder / "audio" / "c1.wav"))
    assert (single.name, single.kind, single.paths) == ("c1", "recorded", (expected[1],))
    drawn = {float(noise_for(source, 100, seed=s)[0]) for s in range(20)}
    assert len(drawn) > 1  # the clip itself is drawn per seed


def test_babble_resolves_to_the_four_shared_clips(shared_data_dir: Path):
    lines = (shared_data_dir / BABBLE / "manifest.jsonl").read_text().splitlines()
    expected = tuple((shared_data_dir / BABBLE / json.loads(x)["audio"]).resolve() for x in lines)
    source = resolve_noise("babble", shared_data_dir)
    assert len(expected) == 4
    assert (source.name, source.kind, source.paths) == ("babble", "derived", expected)
    speech = _speech(1.0)
    assert abs(_snr_db(speech, add_noise(speech, source, 5.0, seed=cell_seed("u", 5))) - 5) < 1e-6


def test_babble_finds_shared_data_from_the_environment(tmp_path: Path, monkeypatch):
    folder = tmp_path / BABBLE
    (folder / "audio").mkdir(parents=True)
    _write_clip(folder / "audio" / "b.wav", np.full(100, 0.1, dtype=np.float32))
    record = {"id": "b", "audio": "audio/b.wav", "kind": "derived"}
    (folder / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    monkeypatch.setenv("WEIGHTWISE_SHARED_DATA", str(tmp_path))
    assert resolve_noise("babble").paths == ((folder / "audio" / "b.wav").resolve(),)


def test_babble_without_shared_data_is_an_input_error(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WEIGHTWISE_SHARED_DATA", raising=False)
    monkeypatch.setattr(noise_module, "_DEFAULT_SHARED_DATA", tmp_path / "missing")
    with pytest.raises(InputError, match="WEIGHTWISE_SHARED_DATA"):
        resolve_noise("babble")


def test_unknown_spec_lists_the_choices():
    with pytest.raises(InputError) as err:
        resolve_noise("traffic")
    for word in ("traffic", "white", "pink", "babble"):
        assert word in str(err.value)


def test_missing_noise_file_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="not found"):
        resolve_noise(str(tmp_path / "nope.wav"))
    with pytest.raises(InputError, match="not found"):
        resolve_noise(str(tmp_path / "manifest.jsonl"))
