"""Helpers for tests/test_hostile_inputs.py: a user's folder of real files, bad variants of them,
and running the CLI in a process of its own there while watching what it touches.

Everything here is test scaffolding; nothing stands in for the model or the data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from weightwise.profile.devices import DEVICES_DIR

INT8_PLAN = {"rules": [{"match": "model.decoder.layers.0.fc1", "quant": {"bits": 8}}]}
V0_ROW = {
    "cell": json.dumps(["weightwise", "whisper-tiny.en", "fp32", None, None, None]),
    "system": "weightwise",
    "model": "whisper-tiny.en",
    "precision": "fp32",
    "plan": None,
    "noise": None,
    "snr_db": None,
    "wer": 0.1,
}


@dataclass(frozen=True)
class Case:
    """One hostile command line and what its one error line must name.

    Attributes:
        id: the pytest id.
        argv: arguments after `python -m weightwise`, shell-quoted; run in the case's folder.
        needles: substrings of the one error line.
        make: builds the case's own files in the folder (after the common kit); what it returns,
            if callable, is called once the process has ended (e.g. to release a lock).
        loads: the check needs the model (plan resolution, layer shapes, peers, bench inputs):
            it may load it; every other case must fail before the model load.
        bench: needs the real bench results of the module fixture (`bench_rows`).
    """

    id: str
    argv: str
    needles: tuple[str, ...]
    make: Callable[[Path], Any] | None = None
    loads: bool = False
    bench: bool = False


# ---------------------------------------------------------------- the user's folder


def make_kit(work: Path, speech: Path, text: str) -> None:
    """What a user keeps beside the command: real speech, its manifest, a plan, a results file of
    rows, a note and a folder of their own."""
    work.mkdir(parents=True)
    (work / "clip.flac").write_bytes(speech.read_bytes())
    jsonl(work / "m.jsonl", {"id": "clip", "audio": "clip.flac", "text": text})
    write_json(work / "int8.json", INT8_PLAN)
    jsonl(work / "rows.jsonl", V0_ROW)
    (work / "notes.txt").write_text("keep me\n")
    (work / "adir").mkdir()
    (work / "adir" / "keep.txt").write_text("mine\n")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def jsonl(path: Path, *records: Any) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def speech_variant(work: Path, name: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    """`name`: clip.flac's real speech, edited, as a 32-bit float WAV (keeps NaN, inf, 1e30)."""
    audio, rate = sf.read(work / "clip.flac", dtype="float32")
    sf.write(work / name, edit(audio.copy()), rate, subtype="FLOAT")


def poke(index: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def edit(audio: np.ndarray) -> np.ndarray:
        audio[index] = value
        return audio

    return edit


def truncated(work: Path, name: str) -> None:
    """The first half of clip.flac: the header is whole, the data stops mid-frame."""
    data = (work / "clip.flac").read_bytes()
    (work / name).write_bytes(data[: len(data) // 2])


def fake_saved_model(folder: Path, *others: str) -> None:
    """A folder shaped like `weightwise compress` output (its manifest keys), plus `others`."""
    folder.mkdir()
    write_json(folder / "compressed.json", {"format_version": 1, "base_model": "whisper-tiny.en", "modules": {}})
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    for name in others:
        (folder / name).write_text("mine\n")


def device_toml(work: Path, name: str, edit: Callable[[str], str]) -> None:
    """The bundled jetson-orin-nano profile, edited."""
    (work / name).write_text(edit((DEVICES_DIR / "jetson-orin-nano.toml").read_text()))


def drop_table(header: str) -> Callable[[str], str]:
    """Remove the table `[header]` and its lines."""

    def edit(text: str) -> str:
        out, skipping = [], False
        for line in text.splitlines(keepends=True):
            if line.startswith("["):
                skipping = line.strip() == f"[{header}]"
            if not skipping:
                out.append(line)
        assert len(out) < len(text.splitlines()), header
        return "".join(out)

    return edit


def set_key(header: str, key: str, value: str | None) -> Callable[[str], str]:
    """Set `key = value` in table `[header]` (None: drop the key)."""

    def edit(text: str) -> str:
        block = re.search(rf"^\[{re.escape(header)}\]\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
        assert block, header
        body = re.sub(
            rf"^{key} = .*\n",
            "" if value is None else f"{key} = {value}\n",
            block.group(1),
            count=1,
            flags=re.MULTILINE,
        )
        assert body != block.group(1), (header, key)
        return text[: block.start(1)] + body + text[block.end(1) :]

    return edit


# ---------------------------------------------------------------- running one case


def tree(root: Path) -> dict[str, Any]:
    """Every path under `root` -> "dir", ("link", target) or the file's sha256 (links not followed)."""
    state: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = "dir"
            else:
                state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@dataclass
class Outcome:
    """What a case did: exit status, output, and the folders before and after."""

    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    before: dict[str, Any]
    after: dict[str, Any]
    cache_after: list[str]  # what the process put in its (empty) weights cache
    wall_s: float


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            [sys.executable, "-m", "weightwise", *argv],
            check=False,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return None


def _forked_cli(argv: list[str], cwd: str, env: dict[str, str], out_path: str, err_path: str) -> None:
    """The body of a process forked from the server in `run_cli_forked`: ``python -m weightwise``
    with this `cwd`, environment and output files, in an interpreter that has imported it already."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    import torch  # imported by the server already: this only applies the case's thread count

    torch.set_num_threads(int(env.get("OMP_NUM_THREADS", "1")))
    from weightwise.cli import main

    sys.exit(main(argv))


@functools.cache
def _server() -> multiprocessing.context.BaseContext:
    """A forkserver context whose server has imported weightwise (and torch) once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["weightwise", "weightwise.cli"])
    return context


def run_cli_forked(
    argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess | None:
    """`run_cli` in a process forked from a server that has imported weightwise already: the same
    command line, folder, environment, exit status and output, without paying ~2-3 s of imports
    per case (torch, transformers' config). None when it is still running after `timeout_s`."""
    with tempfile.TemporaryDirectory(prefix="hostile-io-") as io:
        out_path, err_path = os.path.join(io, "stdout"), os.path.join(io, "stderr")
        proc = _server().Process(target=_forked_cli, args=(argv, str(cwd), env, out_path, err_path))
        proc.start()
        proc.join(timeout_s)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            return None
        with open(out_path) as out, open(err_path) as err:
            return subprocess.CompletedProcess(argv, proc.exitcode, out.read(), err.read())


def run_case(
    case: Case, root: Path, kit: Callable[[Path], None], bench_rows: Path | None, shared_cache: str, timeout_s: float
) -> Outcome:
    """Build the case's folder under `root`, run it in a fresh process, and record the result.

    `root` holds the working folder (`work`, the process's cwd), a file outside it, and, for
    cases that must fail before the model load, the process's own empty weights cache.
    """
    work = root / "work"
    kit(work)
    (root / "outside.txt").write_text("beside the working folder\n")
    if case.bench:
        assert bench_rows is not None
        (work / "r.jsonl").write_bytes(bench_rows.read_bytes())
    release = case.make(work) if case.make is not None else None
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cache = root / "cache"
    if case.loads:
        env["WEIGHTWISE_CACHE"] = shared_cache
    else:
        cache.mkdir()
        env["WEIGHTWISE_CACHE"] = str(cache)
    before = tree(root)
    start = time.perf_counter()
    try:
        proc = run_cli_forked(shlex.split(case.argv), work, env, timeout_s)
    finally:
        if callable(release):
            release()
    wall_s = time.perf_counter() - start
    after = tree(root)
    cache_after = sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []
    if proc is None:
        return Outcome(None, "", "", before, after, cache_after, wall_s)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, before, after, cache_after, wall_s)
