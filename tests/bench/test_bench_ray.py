"""`bench --executor ray`: the local executor's rows, a killed worker retried, a killed driver resumed,
bad input the same one-line error. One local 2-CPU cluster serves every test (`ray_cluster`)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from weightwise.bench import BenchConfig, run_bench
from weightwise.evaluate.runtime import set_threads, threads
from weightwise.executors import ExecutorConfig, open_executor
from weightwise.report.bench_report import write_report

pytestmark = pytest.mark.slow  # Ray workers import torch and load the model: ~1 min for the module

CONFIG = BenchConfig(models=("whisper-tiny.en",), data="samples", noises=("white",), snrs_db=(10.0,), peers=(), limit=1)


def _cell_task_pids() -> list[int]:
    """Ray worker processes running a bench cell now (Ray titles them ray::<task name>)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_cell_task"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _kill_one_worker(killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        pids = _cell_task_pids()
        if pids:
            time.sleep(1.0)  # mid-cell: loading the model or transcribing
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.05)


def _by_cell(rows):
    return {r.cell: r for r in rows}


def test_ray_rows_equal_local_rows_with_a_worker_killed_mid_cell(ray_cluster, tmp_path, tiny_model):
    before = threads()
    set_threads(1)
    try:
        local = _by_cell(run_bench(CONFIG, tmp_path / "local.jsonl"))
        killed, stop = [], threading.Event()
        killer = threading.Thread(target=_kill_one_worker, args=(killed, stop))
        killer.start()
        try:
            with open_executor(ExecutorConfig("ray", threads=1)) as executor:
                ray = _by_cell(run_bench(CONFIG, tmp_path / "ray.jsonl", executor=executor))
        finally:
            stop.set()
            killer.join()
    finally:
        set_threads(before)
    assert len(killed) == 1  # a worker died mid-cell, and Ray ran its cell again
    lines = (tmp_path / "ray.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["cell"] for line in lines) == sorted(local)  # every cell once
    for key, row in local.items():
        assert (ray[key].wer, ray[key].utterances, ray[key].inputs) == (row.wer, row.utterances, row.inputs)
        assert ray[key].energy_j_per_audio_s == row.energy_j_per_audio_s
        assert (row.executor, row.tasks_on_node, ray[key].executor) == ("local", 1, "ray")
        assert ray[key].tasks_on_node in (1, 2)  # 2 CPUs, 1 thread per task
    shares = "/".join(str(n) for n in sorted({r.tasks_on_node for r in ray.values()}))
    report = write_report(tmp_path / "ray.jsonl", tmp_path / "ray.html").read_text()
    assert f"{shares} bench tasks per machine while timed" in report


def _cmd(out, *extra):
    bench = ["bench", "--data", "samples", "--limit", "1", "--peers", "", "--noise", "white", "--snr", "10"]
    return [sys.executable, "-m", "weightwise", *bench, "--out", str(out), *extra]


def test_killed_driver_resumes_without_recomputing_a_cell(ray_cluster, tmp_path):
    out = tmp_path / "r.jsonl"
    # 2 threads per task on the 2-CPU cluster: one cell at a time, so the second is unfinished at the kill
    cmd = _cmd(out, "--threads", "2", "--executor", "ray", "--ray-address", ray_cluster)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 1):
        time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = out.read_bytes()
    assert first.count(b"\n") == 1
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    final = out.read_bytes()
    assert final.startswith(first)  # the finished rows are kept as written
    cells = [json.loads(line)["cell"] for line in final.decode().splitlines()]
    assert len(cells) == len(set(cells)) == 2  # no finished cell computed again


def test_bad_input_is_the_local_one_line_error(ray_cluster, tmp_path):
    missing = tmp_path / "none.jsonl"
    errors = []
    for extra in ((), ("--executor", "ray", "--ray-address", ray_cluster)):
        cmd = [c if c != "samples" else str(missing) for c in _cmd(tmp_path / "r.jsonl", *extra)]
        done = subprocess.run(cmd, capture_output=True, timeout=120)
        errors.append((done.returncode, done.stderr.decode().strip().splitlines()))
    assert errors[0] == errors[1] and errors[0][0] == 2 and len(errors[0][1]) == 1
    assert str(missing) in errors[0][1][0]
