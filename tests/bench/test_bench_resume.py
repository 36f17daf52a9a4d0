"""Honest resume: a results file is reused only for the question it answers; a corrupted, foreign,
duplicated or locked `--out` is a one-line error (exit 2) that leaves the file as it was."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from weightwise.bench.row import ROW_VERSION
from weightwise.cli import main
from weightwise.data import sample_manifest

pytestmark = pytest.mark.slow  # the module's finished bench (a fixture) takes ~50 s

REPO = Path(__file__).resolve().parents[2]
JETSON = REPO / "src" / "weightwise" / "profile" / "devices" / "jetson-orin-nano.toml"


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _manifest(folder: Path, text: str | None = None) -> Path:
    """A manifest of the first two samples, their audio copied into `folder`; `text` replaces the
    first reference."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, utt in enumerate(sample_manifest().head(2)):
        shutil.copy(utt.audio_path, folder / utt.audio_path.name)
        ref = text if text is not None and i == 0 else utt.text
        lines.append(json.dumps({"id": utt.id, "audio": utt.audio_path.name, "text": ref}) + "\n")
    (folder / "manifest.jsonl").write_text("".join(lines))
    return folder / "manifest.jsonl"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished bench (clean + a noise file at 10 dB, one utterance): (folder, its args, out)."""
    folder = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    sf.write(folder / "hum.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    data = _manifest(folder / "data")
    out = folder / "r.jsonl"
    args = [
        "bench",
        "--data",
        str(data),
        "--limit",
        "1",
        "--peers",
        "",
        "--noise",
        str(folder / "hum.wav"),
        "--snr",
        "10",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert len(out.read_text().splitlines()) == 2 and not (folder / "r.jsonl.lock").exists()
    return folder, args, out


def _with(args: list[str], **changes: str) -> list[str]:
    args = list(args)
    for flag, value in changes.items():
        flag = "--" + flag.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


@pytest.fixture
def copy_of(finished, tmp_path):
    """A copy of the finished results file, and the args that name it as --out."""
    _, args, out = finished
    copy = tmp_path / "r.jsonl"
    shutil.copy(out, copy)
    return copy, _with(args, out=str(copy))


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _other_device(folder: Path) -> Path:
    text = JETSON.read_text().replace("value = 50.56", "value = 60.0", 1)  # same name, another constant
    assert "value = 60.0" in text
    (folder / "jetson.toml").write_text(text)
    return folder / "jetson.toml"


@pytest.mark.parametrize(
    "change, differ",
    [
        ({"limit": "2"}, "data_sha256, limit"),
        ({"seed": "1"}, "seed"),
        ({"device": "raspberry-pi-5"}, "device, device_sha256"),
        ({"device": "OTHER_DEVICE"}, "device_sha256"),
        ({"beam_size": "2"}, "decoding"),
        ({"threads": "OTHER_THREADS"}, "threads"),
        ({"data": "OTHER_TEXT"}, "data_sha256"),
    ],
)
def test_a_rerun_with_other_inputs_is_refused_and_leaves_the_file(
    copy_of, change, differ, tmp_path, capsys, keep_threads
):
    out, args = copy_of
    before = out.read_bytes()
    value = next(iter(change.values()))
    if value == "OTHER_DEVICE":
        change = {"device": str(_other_device(tmp_path))}
    elif value == "OTHER_THREADS":
        change = {"threads": str(torch.get_num_threads() % 2 + 1)}
    elif value == "OTHER_TEXT":  # the same audio, another reference text
        change = {"data": str(_manifest(tmp_path / "other", text="HE COULD NOT WAIT"))}
    assert main(_with(args, **change)) == 2
    assert _error(capsys).endswith(
        f"r.jsonl:1: holds results for other inputs ({differ} differ); use another "
        "--out, or rerun the command that wrote it"
    )
    assert out.read_bytes() == before and not (tmp_path / "r.jsonl.lock").exists()


def test_the_same_data_in_another_folder_resumes_and_computes_nothing(copy_of, tmp_path, capsys):
    out, args = copy_of
    before = out.read_bytes()
    assert main(_with(args, data=str(_manifest(tmp_path / "moved")))) == 0  # content, not paths, decides
    assert out.read_bytes() == before


def test_a_new_cell_joins_a_file_that_answers_the_same_question(copy_of):
    out, args = copy_of
    before = out.read_bytes()
    assert main(_with(args, snr="10,0")) == 0
    assert out.read_bytes().startswith(before)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["snr_db"] for r in rows] == [None, 10.0, 0.0]
    assert rows[2]["inputs"] == rows[1]["inputs"] and rows[2]["version"] == ROW_VERSION


def test_changed_noise_clip_is_refused(finished, copy_of, capsys):
    folder, _, _ = finished
    out, args = copy_of
    noise, before, rows = folder / "hum.wav", (folder / "hum.wav").read_bytes(), out.read_bytes()
    try:
        sf.write(noise, np.full(32000, 0.05, dtype=np.float32) * np.sign(np.sin(np.arange(32000))), 16000)
        assert main(args) == 2
        assert "r.jsonl:2: holds results for other inputs (noise_sha256 differ)" in _error(capsys)
        assert out.read_bytes() == rows
    finally:
        noise.write_bytes(before)


def test_plans_with_one_name_never_share_rows(tmp_path, capsys):
    for folder, bits in (("a", 8), ("b", 4)):
        (tmp_path / folder).mkdir()
        rule = {"match": "model.decoder.layers.0.fc1", "quant": {"bits": bits}}
        (tmp_path / folder / "p.json").write_text(json.dumps({"rules": [rule]}))
    out = tmp_path / "plan.jsonl"
    args = ["bench", "--data", "samples", "--limit", "1", "--peers", "", "--precision", "", "--out", str(out)]
    assert main(args + ["--plan", str(tmp_path / "a" / "p.json")]) == 0
    before, _ = out.read_bytes(), capsys.readouterr()
    assert main(args + ["--plan", str(tmp_path / "b" / "p.json")]) == 2
    assert "plan.jsonl:1: holds results for other inputs (plan_sha256 differ)" in _error(capsys)
    assert main(args + ["--plan", str(tmp_path / "a" / "p.json"), "--plan", str(tmp_path / "b" / "p.json")]) == 2
    assert _error(capsys).endswith(
        "b/p.json and --plan "
        + str(tmp_path / "a" / "p.json")
        + " are both named 'p' (rows name plans by file stem); rename one"
    )
    assert out.read_bytes() == before


def test_a_version_0_file_is_not_resumed(tmp_path, capsys):
    out = tmp_path / "old.jsonl"
    lines = (REPO / "benchmarks" / "results" / "bench" / "full_matrix.jsonl").read_text().splitlines()[:2]
    out.write_text("\n".join(lines) + "\n")
    assert main(["bench", "--data", "samples", "--limit", "1", "--peers", "", "--out", str(out)]) == 2
    assert _error(capsys).endswith(
        "old.jsonl:1: a version-0 row records none of its inputs, so a resume cannot "
        "tell whether it answers this command; use another --out"
    )


def test_corrupted_line_is_named_by_file_and_line(copy_of, capsys):
    out, args = copy_of
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + '{"cell": "[\\"weightwise\\", tr\n' + lines[1])  # a bad line that ends in \n
    before = out.read_bytes()
    assert main(args) == 2
    assert "r.jsonl:2: not a JSON line (" in _error(capsys)
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    "content, message",
    [
        ("MANIFEST", "manifest.jsonl:1: not a bench row (missing cell, system, model, precision, noise, snr_db, wer)"),
        (
            '{"rules": []}',
            "manifest.jsonl:1: not a bench row (missing cell, system, model, precision, noise, snr_db, wer)",
        ),  # one JSON line without its newline
        ("my notes\nno newline at the end", "manifest.jsonl:1: not a JSON line (Expecting value, column 1)"),
    ],
)
def test_another_tools_file_is_not_a_results_file(tmp_path, capsys, content, message):
    out = tmp_path / "manifest.jsonl"
    if content == "MANIFEST":
        shutil.copy(sample_manifest().source, out)
    else:
        out.write_text(content)
    before = out.read_bytes()
    assert main(["bench", "--data", "samples", "--limit", "1", "--peers", "", "--out", str(out)]) == 2
    assert message in _error(capsys)
    assert out.read_bytes() == before  # not "repaired", not appended to


def test_a_cell_twice_in_the_file_is_refused(copy_of, capsys):
    out, args = copy_of
    first = out.read_text().splitlines(keepends=True)[0]
    with open(out, "a") as handle:
        handle.write(first)
    assert main(args) == 2
    assert "r.jsonl:3: cell" in (err := _error(capsys)) and "is already on line 1" in err


def test_a_second_bench_on_the_same_out_stops_at_once(tmp_path):
    out = tmp_path / "r.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "weightwise",
        "bench",
        "--data",
        "samples",
        "--limit",
        "4",
        "--peers",
        "",
        "--noise",
        "white",
        "--snr",
        "10,5,0",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = tmp_path / "r.jsonl.lock"
        deadline = time.time() + 120
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None, first.stderr.read().decode()
            time.sleep(0.1)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # the first one was still running all along
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"weightwise: error: --out {out} is locked by another bench (pid {first.pid}); "
            "wait for it to finish or use another --out"
        ]
    finally:
        first.kill()
        first.wait()
