"""`weightwise stream`: a file streamed (unpaced), a manifest evaluated, and one-line errors."""

from __future__ import annotations

import importlib.util
import json

import pytest

from weightwise.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code, out, err, *names):
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("weightwise: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0]


@pytest.fixture(scope="module")
def arctic(samples):
    return next(u for u in samples if u.id.startswith("arctic_a0240"))


def test_stream_file_prints_partials_and_writes_words(capsys, tmp_path, arctic):
    out = tmp_path / "words.json"
    code, printed, err = _run(
        capsys, "stream", str(arctic.audio_path), "--chunk-ms", "400", "--no-pace", "--out", str(out)
    )
    assert code == 0, err
    lines = printed.splitlines()
    assert lines[-1].lower().endswith("wash your hands of me.")  # the final line: all words confirmed
    words = json.loads(out.read_text())["words"]
    assert [w["word"]["text"].lower() for w in words] == ["wash", "your", "hands", "of", "me."]
    assert all(w["word"]["end_s"] <= w["confirmed_at_audio_s"] + 1e-6 for w in words)


@pytest.mark.parametrize(
    "argv, names",
    [
        (["stream"], ["FILE", "--mic", "--data"]),
        (["stream", "--data", "samples"], ["--out"]),
        (["stream", "nope.wav", "--no-pace"], ["nope.wav"]),
        (["stream", "x.wav", "--chunk-ms", "5"], ["--chunk-ms"]),
        (["stream", "x.wav", "--encoder-context", "half"], ["--encoder-context"]),
        (["stream", "x.wav", "--encoder-context", "0"], ["--encoder-context"]),
        (["stream", "--data", "samples", "--out", "o.json", "--device", "no-such-device"], ["no-such-device"]),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, monkeypatch, argv, names):
    monkeypatch.chdir(tmp_path)
    _one_error_line(*_run(capsys, *argv), *names)


@pytest.mark.skipif(importlib.util.find_spec("sounddevice") is not None, reason="sounddevice is installed")
def test_mic_without_sounddevice_is_one_line_exit_2(capsys):
    _one_error_line(*_run(capsys, "stream", "--mic", "--no-pace"), "--mic", "sounddevice")


def test_stream_manifest_writes_the_contract_fields(capsys, tmp_path):
    out = tmp_path / "stream.json"
    code, printed, err = _run(
        capsys, "stream", "--data", "samples", "--limit", "1", "--chunk-ms", "1000", "--out", str(out)
    )
    assert code == 0, err
    result = json.loads(out.read_text())
    for key in ("wer", "offline_wer", "latency_median_s", "latency_p90_s", "rtf", "energy_j_per_audio_s"):
        assert isinstance(result[key], float), key
    assert (
        result["model"] == "whisper-tiny.en" and result["chunk_ms"] == 1000 and result["device"] == "jetson-orin-nano"
    )
    assert result["ids"] == ["1089-134691-0000"] and result["wer"] == 0.0
    # re-decoding every second costs more per audio-second than one offline window
    assert result["decodes_per_audio_s"] > result["offline_windows_per_audio_s"]
    assert result["energy_j_per_audio_s"] > result["offline_energy_j_per_audio_s"]
    assert 0 < result["algorithmic_latency_median_s"] <= result["latency_median_s"]
