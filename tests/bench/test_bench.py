"""The benchmark matrix: cells, resumable JSONL (kill + restart), noise rows and peer rows."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from weightwise.bench import BenchConfig, run_bench
from weightwise.bench.file import append_row, repair_tail
from weightwise.bench.row import BenchRow, read_rows


def test_cells_enumerate_the_matrix():
    config = BenchConfig(
        models=("a", "b"),
        data="x",
        precisions=("fp32", "int8"),
        plans=("p.json",),
        noises=("white", "pink"),
        snrs_db=(10.0, 0.0),
        peers=("int8",),
    )
    cells = config.cells()
    conditions = 1 + 2 * 2
    assert len(cells) == 2 * (3 + 1) * conditions
    assert len({c.key for c in cells}) == len(cells)
    assert sum(c.system == "faster-whisper" for c in cells) == 2 * conditions
    assert {c.precision for c in cells if c.plan} == {"fp32"}
    twice = BenchConfig(
        models=("a", "a"), data="x", precisions=("fp32", "fp32"), noises=("white",), snrs_db=(10.0, 10.0), peers=()
    )
    assert [c.key for c in twice.cells()] == [
        c.key for c in BenchConfig(models=("a",), data="x", noises=("white",), snrs_db=(10.0,), peers=()).cells()
    ]  # one cell each


def _row(noise=None, snr=None, wer=0.1):
    return BenchRow("weightwise", "m", "fp32", None, noise, snr, wer)


def test_torn_last_line_is_dropped_and_a_whole_unterminated_row_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, _row().to_dict())
    with open(path, "ab") as handle:
        handle.write(b'{"cell": "b", "we')  # killed mid-write
    repair_tail(path)
    assert [row.noise for _, row in read_rows(path)] == [None]
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().count(b"\n") == 1
    append_row(path, _row("white", 10.0).to_dict())
    assert [row.noise for _, row in read_rows(path)] == [None, "white"]
    with open(path, "ab") as handle:  # a whole row whose newline is missing (edited by hand)
        handle.write(json.dumps(_row("white", 0.0).to_dict()).encode())
    repair_tail(path)
    append_row(path, _row("pink", 0.0).to_dict())
    assert [row.snr_db for _, row in read_rows(path)] == [None, 10.0, 0.0, 0.0]


def _bench_cmd(out):
    return [
        sys.executable,
        "-m",
        "weightwise",
        "bench",
        "--model",
        "whisper-tiny.en",
        "--data",
        "samples",
        "--limit",
        "2",
        "--noise",
        "white",
        "--snr",
        "10,0",
        "--peers",
        "",
        "--out",
        str(out),
    ]


@pytest.mark.slow
def test_killed_bench_resumes_without_recomputing_or_losing_cells(tmp_path, tiny_model):
    out = tmp_path / "results.jsonl"
    proc = subprocess.Popen(_bench_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 1):
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = out.read_bytes()
    assert first.count(b"\n") >= 1
    with open(out, "ab") as handle:
        handle.write(b'{"cell": "torn')  # as if killed in the middle of a write
    assert (tmp_path / "results.jsonl.lock").read_text().strip() == str(proc.pid)  # stale: its owner is dead
    done = subprocess.run(_bench_cmd(out), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert not (tmp_path / "results.jsonl.lock").exists()  # taken over, then removed on a clean exit
    final = out.read_bytes()
    assert final.startswith(first)  # finished rows untouched, none recomputed in place
    rows = [json.loads(line) for line in final.decode().splitlines()]
    assert len(rows) == 3 and len({r["cell"] for r in rows}) == 3  # clean, white@10, white@0
    assert {(r["noise"], r["snr_db"]) for r in rows} == {(None, None), ("white", 10.0), ("white", 0.0)}
    for row in rows:
        for key in (
            "model",
            "precision",
            "plan",
            "noise",
            "snr_db",
            "wer",
            "substitutions",
            "deletions",
            "insertions",
            "rtf",
            "peak_rss_mb",
            "energy_j_per_audio_s",
            "measured_energy_j",
            "model_bytes",
        ):
            assert key in row, key
        assert row["energy_j_per_audio_s"] > 0 and row["model_bytes"] == 4 * tiny_model.info.n_params
        assert {"kv_cache", "activations"} <= set(row["components"])  # traffic that is not weights
        # the meter's name, why it measured nothing (or null), and its energy are separate fields
        assert row["meter"] in ("jetson", "nvml", "rapl", "null")
        assert (row["measured_energy_j"] is None) == isinstance(row["meter_reason"], str)
    clean = next(r for r in rows if r["noise"] is None)
    noisy = next(r for r in rows if r["snr_db"] == 0.0)
    assert noisy["wer"] >= clean["wer"]


@pytest.mark.slow
def test_peer_rows(tmp_path):
    out = tmp_path / "peer.jsonl"
    rows = run_bench(BenchConfig(models=("whisper-tiny.en",), data="samples", peers=("int8",), limit=2), out)
    peer = next(r for r in rows if r.system == "faster-whisper")
    ours = next(r for r in rows if r.system == "weightwise")
    assert peer.precision == "int8" and peer.energy_j_per_audio_s is None
    assert peer.audio_s == pytest.approx(ours.audio_s)
    assert 0 <= peer.wer <= 0.3
    assert peer.inputs == ours.inputs and peer.version == ours.version == 3  # the same question
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.slow
def test_plan_rows_carry_the_plan_and_its_smaller_weights(tmp_path):
    plan = Path(__file__).resolve().parents[2] / "benchmarks" / "plans" / "int4-group64.json"
    out = tmp_path / "plan.jsonl"
    rows = run_bench(
        BenchConfig(models=("whisper-tiny.en",), data="samples", plans=(str(plan),), peers=(), limit=2), out
    )
    fp32 = next(r for r in rows if r.plan is None)
    planned = next(r for r in rows if r.plan == "int4-group64")
    assert planned.precision == "fp32" and planned.system == "weightwise"
    assert planned.model_bytes < 0.3 * fp32.model_bytes  # int4 codes + scales, not float weights
    assert planned.energy_j_per_audio_s < 0.5 * fp32.energy_j_per_audio_s
    assert planned.wer <= 0.5  # still transcribes the samples
    assert planned.inputs["plan_sha256"] and fp32.inputs["plan_sha256"] is None
