"""weightwise.cli: the command-line contract, run in-process (plus one real `python -m` run).

Bad input must exit with status 2 and print exactly one stderr line, "weightwise: error: ...",
that names the file (and the manifest line), never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jiwer
import numpy as np
import pytest
import soundfile as sf
from whisper_normalizer.english import EnglishTextNormalizer

from weightwise.cli import main

CONTRACT_KEYS = {"model", "precision", "n_utterances", "audio_s", "wer", "rtf", "peak_rss_mb", "utterances", "peer"}


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
    code, out, err = _run(
        capsys, "eval", "--model", "whisper-tiny.en", "--data", "samples", "--limit", "2", "--out", str(out_file)
    )
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
    assert json.loads(out) == ["transducer-fsdd", "whisper-base", "whisper-tiny.en"]


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "weightwise", "models"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["transducer-fsdd", "whisper-base", "whisper-tiny.en"]
    bad = subprocess.run(
        [sys.executable, "-m", "weightwise", "transcribe", "/nonexistent/x.wav"],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
    rows = [
        {"id": "a", "audio": str(samples[0].audio_path), "text": "x"},
        {"id": "b", "audio": str(samples[1].audio_path), "text": "y"},
        {"id": "c", "audio": "gone.flac", "text": "z"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(capsys, "eval", "--data", str(manifest), "--out", str(tmp_path / "r.json"))
    _assert_one_error_line(code, out, err, f"{manifest}:3", tmp_path / "gone.flac")


def test_missing_manifest(capsys, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    code, out, err = _run(capsys, "eval", "--data", str(missing), "--out", str(tmp_path / "r.json"))
    _assert_one_error_line(code, out, err, missing)


@pytest.mark.parametrize(
    "option, argv",
    [
        ("--limit", ["eval", "--data", "samples", "--limit", "0", "--out", "x.json"]),
        ("--limit", ["eval", "--data", "samples", "--limit", "-3", "--out", "x.json"]),
        ("--beam-size", ["transcribe", "a.wav", "--beam-size", "0"]),
        ("--precision", ["transcribe", "a.wav", "--precision", "fp8"]),
    ],
)
def test_bad_options_exit_2(capsys, option, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    (line,) = err.splitlines()  # one line: no usage block
    assert line.startswith("weightwise: error: argument ") and option in line
    assert line.endswith(f"(see weightwise {argv[0]} --help)")


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
    rows = [
        {"id": "a", "audio": str(samples[0].audio_path), "text": "x"},
        {"id": "b", "audio": "junk.flac", "text": "y"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(capsys, "eval", "--data", str(manifest), "--out", str(tmp_path / "r.json"))
    assert code == 2 and f"{manifest}:2" in err and str(junk) in err  # this part already holds
    _assert_one_error_line(code, "", err, f"{manifest}:2", junk)
    # and it is found before the model load (an unknown model would fail first otherwise)
    for command in (["eval"], ["profile", "--device", "jetson-orin-nano"]):
        code, out, err = _run(
            capsys, *command, "--data", str(manifest), "--model", "whisper-gigantic", "--out", str(tmp_path / "r.json")
        )
        _assert_one_error_line(code, out, err, f"{manifest}:2", junk, "not a readable audio file")


# ---------------------------------------------------------------- outputs and inputs checked before the work
# Each case names an unknown model too: the error must be about the path, which proves the check ran
# before the model load. The folder must hold exactly what it held (no temp file, inputs untouched).


def _folder_state(folder):
    return {
        p.relative_to(folder): (p.is_dir(), p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def workdir(tmp_path, samples, monkeypatch):
    """A folder with a WAV, a manifest of it, a results JSONL, an existing folder and a plain file."""
    wav = tmp_path / "clip.wav"
    audio, rate = sf.read(samples[0].audio_path, dtype="float32")
    sf.write(wav, audio, rate)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "clip.wav", "text": "x"}) + "\n")
    (tmp_path / "r.jsonl").write_text('{"system": "weightwise"}\n')
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep me\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _locked():
    return "/proc/weightwise-out" if os.geteuid() == 0 else None  # root writes through chmod 555


UNKNOWN = ["--model", "whisper-gigantic"]
PROFILE = ["profile", "--device", "jetson-orin-nano", "--data", "m.jsonl", *UNKNOWN]


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["transcribe", "clip.wav", "--out", "clip.wav", *UNKNOWN], ["--out clip.wav", "is also an input"]),
        (["transcribe", "clip.wav", "--out", "adir", *UNKNOWN], ["--out adir", "existing directory"]),
        (["transcribe", "clip.wav", "--out", "afile/t.json", *UNKNOWN], ["--out afile/t.json", "afile is a file"]),
        (["transcribe", "clip.wav", "--out", "", *UNKNOWN], ["--out: empty output path"]),
        (["transcribe", "clip.wav", "--out", "/dev/null", *UNKNOWN], ["--out /dev/null", "not a regular file"]),
        (["eval", "--data", "m.jsonl", "--out", "m.jsonl", *UNKNOWN], ["--out m.jsonl", "is also an input"]),
        (["eval", "--data", "m.jsonl", "--out", "clip.wav", *UNKNOWN], ["--out clip.wav", "is also an input"]),
        (["eval", "--data", "m.jsonl", "--out", "adir", *UNKNOWN], ["--out adir", "existing directory"]),
        (["eval", "--data", "m.jsonl", "--out", "afile/e.json", *UNKNOWN], ["afile is a file, not a directory"]),
        ([*PROFILE, "--out", "m.jsonl"], ["--out m.jsonl", "is also an input"]),
        ([*PROFILE, "--out", "adir"], ["--out adir", "existing directory"]),
        ([*PROFILE, "--out", "p.json", "--plot", "p.json"], ["--plot p.json", "same path as --out"]),
        ([*PROFILE, "--out", "p.json", "--plot", "clip.wav"], ["--plot clip.wav", "is also an input"]),
        ([*PROFILE, "--out", "p.json", "--plot", "afile/p.png"], ["--plot afile/p.png", "afile is a file"]),
        ([*PROFILE, "--out", "p.json", "--plot", "adir"], ["--plot adir", "existing directory"]),
        (["report", "r.jsonl", "-o", "r.jsonl"], ["--output r.jsonl", "is also an input"]),
        (["report", "r.jsonl", "-o", "adir"], ["--output adir", "existing directory"]),
        (["report", "r.jsonl", "-o", "afile/r.html"], ["--output afile/r.html", "afile is a file"]),
    ],
)
def test_unwritable_outputs_fail_first(capsys, workdir, argv, needles):
    before = _folder_state(workdir)
    _assert_one_error_line(*_run(capsys, *argv), *needles)
    assert _folder_state(workdir) == before


@pytest.mark.skipif(_locked() is None, reason="needs a location root cannot write (/proc)")
@pytest.mark.parametrize(
    "command", [["transcribe", "clip.wav"], ["eval", "--data", "m.jsonl"], PROFILE, ["report", "r.jsonl"]]
)
def test_read_only_output_location_fails_first(capsys, workdir, command):
    out = f"{_locked()}/r.json"
    flag = "--output" if command[0] == "report" else "--out"
    argv = [*command, "-o" if command[0] == "report" else "--out", out]
    argv += UNKNOWN if command[0] in ("transcribe", "eval") else []
    _assert_one_error_line(*_run(capsys, *argv), f"{flag} {out}", "cannot create files in /proc")


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("truncated", "not a readable audio file"),  # the FLAC header is whole: only decoding finds it
        ("nan", "non-finite samples"),
        ("huge", "samples up to 1e+30, beyond the accepted +-16"),
    ],
)
def test_transcribe_decodes_every_file_before_the_model_load(capsys, workdir, samples, kind, needle):
    bad = workdir / f"{kind}.wav"
    if kind == "truncated":
        bad = workdir / "truncated.flac"
        data = samples[0].audio_path.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        audio = np.full(16000, 0.1, dtype=np.float32)
        audio[100] = np.nan if kind == "nan" else 1e30
        sf.write(bad, audio, 16000, subtype="FLOAT")
    before = _folder_state(workdir)
    code, out, err = _run(capsys, "transcribe", "clip.wav", str(bad), *UNKNOWN, "--out", "t.json")
    _assert_one_error_line(code, out, err, bad, needle)
    assert _folder_state(workdir) == before


def test_max_new_tokens_and_stop_reasons(capsys, workdir, tiny_model, tiny_greedy, samples):
    code, out, err = _run(capsys, "transcribe", "clip.wav", "--max-new-tokens", "3", "--out", "t.json")
    assert code == 0, err
    data = json.loads((workdir / "t.json").read_text())
    row = data["transcripts"][0]
    assert row["n_tokens"] == 3 and row["stop_reasons"] == ["max_new_tokens"]
    assert row["text"] == tiny_model.decode_text(list(tiny_greedy[samples[0].id].tokens[:3]))
    assert data["decoding"]["max_new_tokens"] == 3 and data["decoding"]["repetition_stop_repeats"] == 4
    assert err.splitlines() == [
        "weightwise: note: clip.wav: 1 of 1 windows stopped before end-of-text (0 on repetition, 1 at the token limit)"
    ]
    _assert_one_error_line(
        *_run(capsys, "transcribe", "clip.wav", "--max-new-tokens", "447"),
        "max_new_tokens 447",
        "446 = 448 decoder positions - 2 prompt tokens",
    )


@pytest.mark.slow  # two evals of a pruned model (load, compress, warm-up, decode)
def test_eval_counts_windows_the_guard_stopped(capsys, tmp_path, broken_plan, looping_audio):
    plan = tmp_path / "broken.json"
    plan.write_text(json.dumps(broken_plan))
    utt = looping_audio[0]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": utt.id, "audio": str(utt.audio_path), "text": utt.text}) + "\n")
    results = {}
    for name, extra in (("on", []), ("off", ["--no-repetition-guard"])):
        out = tmp_path / f"{name}.json"
        code, _, err = _run(
            capsys,
            "eval",
            "--data",
            str(manifest),
            "--plan",
            str(plan),
            "--max-new-tokens",
            "48",
            "--out",
            str(out),
            *extra,
        )
        assert code == 0, err
        results[name] = json.loads(out.read_text())
    on, off = results["on"], results["off"]
    assert (off["n_windows_repetition_stopped"], off["n_windows_limit_stopped"]) == (0, 1)
    assert off["utterances"][0]["n_tokens"] == 48 and off["decoding"]["compression_ratio_threshold"] is None
    assert (on["n_windows_repetition_stopped"], on["n_windows_limit_stopped"]) == (1, 0)
    assert on["utterances"][0]["n_windows_repetition_stopped"] == 1
    assert on["utterances"][0]["n_tokens"] < 48 and on["wer"] < off["wer"]  # fewer looping insertions
