"""Every input of a bench is checked before its first cell: a bad one is one line, exit 2, and no
results file (no cell ran). A csp plan runs with --calib."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from weightwise.cli import main
from weightwise.data import sample_manifest

CSP = {"rules": [{"match": "model.decoder.layers.0.self_attn.q_proj", "prune": {"sparsity": 0.3, "method": "csp"}}]}
GOOD = {"rules": [{"match": "model.decoder.layers.0.fc1", "quant": {"bits": 8}}]}
NO_MATCH = {"rules": [{"match": "model.decoder.layers.99.fc1", "quant": {"bits": 8}}]}


@pytest.fixture
def files(tmp_path):
    """Plans, noise files and a folder of bad inputs, by name."""
    for name, plan in (("csp", CSP), ("good", GOOD), ("nomatch", NO_MATCH)):
        (tmp_path / f"{name}.json").write_text(json.dumps(plan))
    (tmp_path / "broken.json").write_text('{"rules": [')
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "out").mkdir()
    return tmp_path


# (extra args, the end of the one-line error); {d} is the test's folder
CASES = [
    (["--plan", "{d}/good.json", "--plan", "{d}/broken.json"], "broken.json: not valid JSON"),
    (
        ["--plan", "{d}/nomatch.json"],
        "--plan {d}/nomatch.json on --model whisper-tiny.en: plan nomatch rule 0 "
        "(('model.decoder.layers.99.fc1',)) matches no Linear/Conv1d/Embedding module",
    ),
    (
        ["--plan", "{d}/csp.json"],
        "--plan {d}/csp.json prunes with csp or quantizes with gptq, which needs calibration audio (--calib MANIFEST)",
    ),
    (["--calib", "samples"], "--calib is used only by csp pruning and gptq plans, and no --plan has either"),
    (
        ["--peers", "int8,bogus"],
        "--peers bogus with --model whisper-tiny.en: peer compute type 'bogus' is not "
        "supported on this CPU (supported: ",
    ),
    (["--noise", "white,{d}/broken.wav", "--snr", "10"], "{d}/broken.wav: not a readable audio file"),
    (["--noise", "white,{d}/silent.wav", "--snr", "10"], "noise silent: {d}/silent.wav is empty, silent or not finite"),
    (["--noise", "white", "--snr", "nan"], "--snr nan: an SNR must be a finite number of dB"),
    (["--snr", "10"], "--snr needs --noise (e.g. --noise white)"),
    (["--model", "whisper-tiny.en,nope"], "unknown model 'nope': not one of "),
    (["--precision", "fp32,fp64"], "--precision 'fp64': choose from fp32, fp16, bf16, int8"),
    (["--out", "{d}/out"], "--out {d}/out: is a directory, not a results file"),
    (["--out", "{d}/a_file/r.jsonl"], "--out {d}/a_file/r.jsonl: {d}/a_file is a file, not a folder"),
    (["--out", "{d}/missing/r.jsonl"], "--out {d}/missing/r.jsonl: folder {d}/missing does not exist"),
]


@pytest.mark.parametrize("extra, message", CASES, ids=[" ".join(c[0]).replace("{d}/", "") for c in CASES])
def test_bad_input_stops_the_bench_before_any_cell(files, extra, message, capsys):
    out = files / "r.jsonl"
    args = ["bench", "--data", "samples", "--limit", "1", "--peers", "", "--out", str(out)]
    args += [a.replace("{d}", str(files)) for a in extra]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weightwise: error: "), lines
    expected = message.replace("{d}", str(files))
    assert expected in lines[0]
    assert not out.exists() and not (files / "r.jsonl.lock").exists()  # no cell ran, nothing left behind


@pytest.mark.slow
def test_a_csp_plan_runs_with_calibration_audio(files):
    utt = sample_manifest()[1]  # calibrate on another utterance than the one transcribed
    shutil.copy(utt.audio_path, files / utt.audio_path.name)
    (files / "calib.jsonl").write_text(json.dumps({"id": utt.id, "audio": utt.audio_path.name}) + "\n")
    out = files / "r.jsonl"
    assert (
        main(
            [
                "bench",
                "--data",
                "samples",
                "--limit",
                "1",
                "--peers",
                "",
                "--precision",
                "",
                "--plan",
                str(files / "csp.json"),
                "--calib",
                str(files / "calib.jsonl"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["plan"] == "csp" and row["inputs"]["calib_sha256"] and row["wer"] <= 0.5
