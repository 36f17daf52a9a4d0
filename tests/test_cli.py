"""weightwise.cli: the command-line contract, run in-process (plus one real `python -m` run).

Bad input must exit with status 2 and print exactly one stderr line, "weightwise: error: ...",
that names the file (and the manifest line), never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jiwer
import numpy as np
import pytest
import soundfile as sf
from whisper_normalizer.english import EnglishTextNormalizer

from weightwise.cli import main

CONTRACT_KEYS = {"model", "precision", "n_utterances", "audio_s", "wer", "rtf", "peak_rss_mb",
                 "utterances", "peer"}


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(code, out, err, *names):
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("weightwise: error: ")
    for name in names:
        assert str(name) in lines[0]
    assert out == ""


# ---------------------------------------------------------------- success paths


def test_eval_writes_the_contract_json(capsys, tmp_path, samples):
    out_file = tmp_path / "f.json"
    code, out, err = _run(capsys, "eval", "--model", "whisper-tiny.en", "--data", "samples",
                          "--limit", "2", "--out", str(out_file))
    assert code == 0
    assert "Traceback" not in err and f"wrote {out_file}" in err
    data = json.loads(out_file.read_text())
    assert CONTRACT_KEYS <= data.keys()
    assert data["model"] == "whisper-tiny.en" and data["precision"] == "fp32"
    assert data["n_utterances"] == 2 and data["peer"] is None
    assert [u["id"] for u in data["utterances"]] == [u.id for u in samples.head(2)]
    assert all({"id", "ref", "hyp"} <= u.keys() for u in data["utterances"])
    assert data["audio_s"] == pytest.approx(sum(u.duration_s for u in samples.head(2)), abs=1e-3)
    norm = EnglishTextNormalizer()
    refs = [norm(u["ref"]) for u in data["utterances"]]
    hyps = [norm(u["hyp"]) for u in data["utterances"]]
    assert data["wer"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert data["rtf"] > 0 and data["peak_rss_mb"] > 0
    assert "whisper-tiny.en" in out  # the results table


def test_transcribe_prints_name_and_text(capsys, tmp_path, samples, tiny_greedy):
    utt = samples[1]
    out_file = tmp_path / "t.json"
    code, out, err = _run(capsys, "transcribe", str(utt.audio_path), "--out", str(out_file))
    assert code == 0 and "Traceback" not in err
    expected = tiny_greedy[utt.id].text  # the Python API on the same file
    assert out.splitlines() == [f"{utt.audio_path.name}\t{expected}"]
    data = json.loads(out_file.read_text())
    assert data["model"] == "whisper-tiny.en"
    assert [(r["file"], r["text"]) for r in data["transcripts"]] == [(str(utt.audio_path), expected)]
    assert data["transcripts"][0]["audio_s"] == sf.info(utt.audio_path).frames / 16000


def test_models_lists_the_registry(capsys):
    code, out, _ = _run(capsys, "models", "--json")
    assert code == 0
    assert json.loads(out) == ["whisper-base", "whisper-tiny.en"]


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "weightwise", "models"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["whisper-base", "whisper-tiny.en"]
    bad = subprocess.run([sys.executable, "-m", "weightwise", "transcribe", "/nonexistent/x.wav"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["weightwise: error: /nonexistent/x.wav: audio file not found"]


# ---------------------------------------------------------------- bad input: exit 2, one line


def test_missing_audio_file(capsys, tmp_path):
    missing = tmp_path / "missing.wav"
    _assert_one_error_line(*_run(capsys, "transcribe", str(missing)), missing, "not found")


def test_empty_file(capsys, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _assert_one_error_line(*_run(capsys, "transcribe", str(empty)), empty, "0 bytes")


def test_non_audio_bytes(capsys, tmp_path):
    junk = tmp_path / "notes.flac"
    junk.write_bytes(b"these are not the audio bytes you are looking for\n" * 20)
    _assert_one_error_line(*_run(capsys, "transcribe", str(junk)), junk, "not a readable audio file")


def test_zero_length_audio(capsys, tmp_path):
    silent = tmp_path / "zero.wav"
    sf.write(silent, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    assert sf.info(silent).frames == 0 and silent.stat().st_size > 0  # a valid, empty WAV
    _assert_one_error_line(*_run(capsys, "transcribe", str(silent)), silent, "zero length")


def test_bad_file_among_good_ones(capsys, tmp_path, samples):
    missing = tmp_path / "second.wav"
    code, out, err = _run(capsys, "transcribe", str(samples[0].audio_path), str(missing))
    _assert_one_error_line(code, out, err, missing)  # checked before any transcription


def test_unknown_model_name(capsys, samples):
    code, out, err = _run(capsys, "transcribe", str(samples[0].audio_path), "--model", "whisper-gigantic")
    _assert_one_error_line(code, out, err, "whisper-gigantic", "unknown model")


def test_malformed_manifest_line(capsys, tmp_path, samples):
    manifest = tmp_path / "m.jsonl"
    good = json.dumps({"id": "a", "audio": str(samples[0].audio_path), "text": "x"})
    manifest.write_text(good + "\n" + '{"id": "b", "audio": \n')
    code, out, err = _run(capsys, "eval", "--data", str(manifest), "--out", str(tmp_path / "r.json"))
    _assert_one_error_line(code, out, err, f"{manifest}:2", "malformed")
    assert not (tmp_path / "r.json").exists()


def test_manifest_entry_with_missing_audio(capsys, tmp_path, samples):
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": "a", "audio": str(samples[0].audio_path), "text": "x"},
            {"id": "b", "audio": str(samples[1].audio_path), "text": "y"},
            {"id": "c", "audio": "gone.flac", "text": "z"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(capsys, "eval", "--data", str(manifest), "--out", str(tmp_path / "r.json"))
    _assert_one_error_line(code, out, err, f"{manifest}:3", tmp_path / "gone.flac")


def test_missing_manifest(capsys, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    code, out, err = _run(capsys, "eval", "--data", str(missing), "--out", str(tmp_path / "r.json"))
    _assert_one_error_line(code, out, err, missing)


@pytest.mark.parametrize("option, argv", [
    ("--limit", ["eval", "--data", "samples", "--limit", "0", "--out", "x.json"]),
    ("--limit", ["eval", "--data", "samples", "--limit", "-3", "--out", "x.json"]),
    ("--beam-size", ["transcribe", "a.wav", "--beam-size", "0"]),
    ("--precision", ["transcribe", "a.wav", "--precision", "fp8"]),
])
def test_bad_options_exit_2(capsys, option, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"weightwise {argv[0]}: error: ")  # argparse's own one-line error
    assert option in last


# ---------------------------------------------------------------- regressions (found in review)


def test_wav_of_a_few_samples(capsys, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(10, 0.01, dtype=np.float32), 16000)
    code = main(["transcribe", str(short)])
    assert code in (0, 2)


def test_undecodable_file_found_mid_run(capsys, tmp_path, samples):
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"not audio" * 100)
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": "a", "audio": str(samples[0].audio_path), "text": "x"},
            {"id": "b", "audio": "junk.flac", "text": "y"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(capsys, "eval", "--data", str(manifest), "--out", str(tmp_path / "r.json"))
    assert code == 2 and f"{manifest}:2" in err and str(junk) in err  # this part already holds
    _assert_one_error_line(code, "", err, f"{manifest}:2", junk)
