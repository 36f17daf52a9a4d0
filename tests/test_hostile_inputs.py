"""Hostile but realistic use of the CLI (issue 10), each command in a process of its own.

Every case of `CASES` runs in its own folder holding a user's files (real speech, a manifest, a
plan, results rows, a note, a folder of their own) and must:
  * exit with status 2 and print exactly one stderr line, "weightwise: error: ...", naming the
    file or flag and the problem (the case's needles), and nothing on stdout;
  * leave that folder, and the folder around it, as they were: every input byte-identical,
    nothing deleted, nothing new (no temp files or folders, no half-written output);
  * fail before the model load unless the check needs the model (`loads=True`): the process gets
    its own empty weights cache, which must stay empty (a model load would fill it).
The cases run a few at a time in a module fixture, each in a process forked from a server that
has imported weightwise once (`hostile_kit.run_cli_forked`: `weightwise.cli.main` with the case's
folder, environment and output files; 221 -> 103 s for this file on 2 cores, with no import per
case); the test per case then checks its outcome. `--help` and the reproductions below run the
real `python -m weightwise`. The "right result" reproductions of the
issue (compress twice into its own folder, a fresh-process reload, an identical bench rerun)
follow the table.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from hostile_kit import (  # tests/hostile_kit.py
    INT8_PLAN,
    V0_ROW,
    Case,
    device_toml,
    drop_table,
    fake_saved_model,
    jsonl,
    make_kit,
    poke,
    run_case,
    run_cli,
    set_key,
    speech_variant,
    tree,
    truncated,
    write_json,
)

WORKERS = 3  # processes at a time
TIMEOUT_S = 120  # per case (twice that for `loads`); a check made before the model load takes seconds


def _text(name: str, content: str):
    return lambda w: (w / name).write_text(content)


def _json(name: str, data):
    return lambda w: write_json(w / name, data)


def _lines(name: str, *records):
    return lambda w: jsonl(w / name, *records)


def _manifest_of(audio: str):
    return lambda w: jsonl(w / "bad.jsonl", {"id": "x", "audio": audio, "text": "x"})


def _all(*makers):
    def make(w):
        for maker in makers:
            maker(w)

    return make


def _speech(name: str, index: int, value: float):
    return lambda w: speech_variant(w, name, poke(index, value))


def _held_lock(w: Path):
    """Another bench's lock on r.jsonl: this test process holds the flock until the case ends."""
    fd = os.open(w / "r.jsonl.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return lambda: os.close(fd)


def _bench_append(line: bytes):
    """Append a raw line to the copy of the real bench results."""

    def make(w):
        with open(w / "r.jsonl", "ab") as handle:
            handle.write(line)

    return make


def _bench_dup(w: Path) -> None:
    first = (w / "r.jsonl").read_bytes().splitlines(keepends=True)[0]
    with open(w / "r.jsonl", "ab") as handle:
        handle.write(first)


TOO_MANY = "447"  # tokens per window: the decoder holds 448 positions, 2 go to the prompt
BENCH = "bench --data samples --limit 1 --peers '' --threads 1"
PROFILE = "profile --device jetson-orin-nano --data m.jsonl"
OTHER_P = {"rules": [{"match": "model.decoder.layers.1.fc1", "quant": {"bits": 8}}]}
CSP = {"rules": [{"match": "model.decoder.layers.0.fc1", "prune": {"sparsity": 0.3, "method": "csp"}}]}
PLAN_RULE = "model.decoder.layers.0.fc1"


def _plan(rule: dict):
    return _json("p.json", {"rules": [{"match": PLAN_RULE, **rule}]})


CASES = [
    # ---- 1, 4: output paths, checked before any work; an input is never overwritten, a folder never emptied
    Case("transcribe-out-existing-dir", "transcribe clip.flac --out adir", ("--out adir", "existing directory")),
    Case(
        "transcribe-out-under-a-file",
        "transcribe clip.flac --out notes.txt/t.json",
        ("--out notes.txt/t.json", "notes.txt is a file"),
    ),
    Case("transcribe-out-read-only", "transcribe clip.flac --out /proc/t.json", ("--out /proc/t.json", "/proc")),
    Case("transcribe-out-is-the-input", "transcribe clip.flac --out clip.flac", ("--out clip.flac", "input")),
    Case("eval-out-existing-dir", "eval --data m.jsonl --out adir", ("--out adir", "existing directory")),
    Case("eval-out-read-only", "eval --data m.jsonl --out /sys/e.json", ("--out /sys/e.json", "/sys")),
    Case("eval-out-is-the-manifest", "eval --data m.jsonl --out m.jsonl", ("--out m.jsonl", "input")),
    Case("profile-out-read-only", f"{PROFILE} --out /proc/p.json", ("--out /proc/p.json", "/proc")),
    Case(
        "profile-out-is-the-device-file",
        "profile --device dev.toml --data m.jsonl --out dev.toml",
        ("--out dev.toml", "input"),
        make=lambda w: device_toml(w, "dev.toml", str),
    ),
    Case("profile-plot-same-as-out", f"{PROFILE} --out p.json --plot p.json", ("--plot p.json", "--out")),
    Case("profile-plot-is-the-audio", f"{PROFILE} --out p.json --plot clip.flac", ("--plot clip.flac", "input")),
    Case(
        "profile-plot-under-a-file",
        f"{PROFILE} --out p.json --plot notes.txt/p.png",
        ("--plot notes.txt/p.png", "notes.txt is a file"),
    ),
    Case(
        "compress-out-user-folder",
        "compress --plan int8.json --out adir",
        ("--out adir", "not a weightwise compressed model", "keep.txt"),
    ),
    Case("compress-out-existing-file", "compress --plan int8.json --out notes.txt", ("--out notes.txt", "file")),
    Case("compress-out-under-a-file", "compress --plan int8.json --out notes.txt/c8", ("notes.txt is a file",)),
    Case("compress-out-cwd", "compress --plan int8.json --out .", ("--out .", "current folder")),
    Case("compress-out-parent", "compress --plan int8.json --out ..", ("--out ..", "current folder or one above")),
    Case("compress-out-read-only", "compress --plan int8.json --out /sys/c8", ("--out /sys/c8", "not writable")),
    Case(
        "compress-out-symlink",
        "compress --plan int8.json --out lnk",
        ("--out lnk", "symbolic link"),
        make=lambda w: (w / "lnk").symlink_to("adir"),
    ),
    Case("compress-out-is-the-plan", "compress --plan int8.json --out int8.json", ("--out int8.json", "input")),
    Case(
        "compress-out-is-the-model",
        "compress --model c8 --plan int8.json --out c8",
        ("--out c8", "input c8"),
        make=lambda w: fake_saved_model(w / "c8"),
    ),
    Case(
        "compress-out-model-plus-user-file",
        "compress --plan int8.json --out c8",
        ("--out c8", "README.md"),
        make=lambda w: fake_saved_model(w / "c8", "README.md"),
    ),
    Case("report-out-is-the-results", "report rows.jsonl -o rows.jsonl", ("--output rows.jsonl", "input")),
    Case("report-out-read-only", "report rows.jsonl -o /proc/r.html", ("--output /proc/r.html", "/proc")),
    Case("bench-out-existing-dir", f"{BENCH} --out adir", ("--out adir", "directory")),
    Case("bench-out-under-a-file", f"{BENCH} --out notes.txt/r.jsonl", ("notes.txt is a file",)),
    Case(
        "bench-out-is-the-manifest",
        "bench --data m.jsonl --peers '' --threads 1 --out m.jsonl",
        ("m.jsonl:1", "not a bench row"),
        loads=True,
    ),
    # ---- 6, 7: audio decoded before the model load (corrupt, truncated, NaN, 1e30, not audio)
    Case(
        "audio-is-json-named-mp3",
        "transcribe fake.mp3",
        ("fake.mp3", "not a readable audio file"),
        make=_text("fake.mp3", json.dumps(INT8_PLAN)),
    ),
    Case(
        "audio-zero-frames",
        "transcribe zero.wav",
        ("zero.wav", "zero length"),
        make=lambda w: speech_variant(w, "zero.wav", lambda a: a[:0]),
    ),
    Case(
        "audio-truncated-flac",
        "transcribe clip.flac cut.flac --out t.json",
        ("cut.flac", "not a readable audio"),
        make=lambda w: truncated(w, "cut.flac"),
    ),
    Case(
        "audio-nan", "transcribe clip.flac nan.wav", ("nan.wav", "non-finite"), make=_speech("nan.wav", 500, math.nan)
    ),
    Case("audio-1e30", "transcribe huge.wav --out t.json", ("huge.wav", "1e+30"), make=_speech("huge.wav", 500, 1e30)),
    Case(
        "audio-two-files-one-stem",
        "transcribe clip.flac clip.wav",
        ("clip.wav", "same id"),
        make=_speech("clip.wav", 0, 0.0),
    ),
    Case(
        "eval-audio-truncated",
        "eval --data bad.jsonl --out e.json",
        ("bad.jsonl:1", "cut.flac", "not a readable"),
        make=_all(lambda w: truncated(w, "cut.flac"), _manifest_of("cut.flac")),
    ),
    Case(
        "profile-audio-nan",
        "profile --device jetson-orin-nano --data bad.jsonl --out p.json",
        ("bad.jsonl:1", "non-finite"),
        make=_all(_speech("nan.wav", 9, math.nan), _manifest_of("nan.wav")),
    ),
    # ---- manifests
    Case("manifest-folder-without-one", "eval --data adir --out e.json", ("adir", "not a manifest")),
    Case(
        "manifest-empty",
        "eval --data bad.jsonl --out e.json",
        ("bad.jsonl", "empty manifest"),
        make=_text("bad.jsonl", "\n\n"),
    ),
    Case(
        "manifest-malformed-line",
        "eval --data bad.jsonl --out e.json",
        ("bad.jsonl:2", "malformed"),
        make=_text("bad.jsonl", json.dumps({"id": "a", "audio": "clip.flac"}) + '\n{"id": "b", "audio": \n'),
    ),
    Case(
        "manifest-duplicate-id",
        "eval --data bad.jsonl --out e.json",
        ("bad.jsonl:2", "duplicate id 'a'"),
        make=_lines("bad.jsonl", {"id": "a", "audio": "clip.flac"}, {"id": "a", "audio": "clip.flac"}),
    ),
    Case(
        "manifest-audio-gone",
        "eval --data bad.jsonl --out e.json",
        ("bad.jsonl:1", "gone.flac", "not found"),
        make=_manifest_of("gone.flac"),
    ),
    # ---- 8: plans (JSON booleans are not numbers, ranks within the layer, methods, matches, csp's audio)
    Case(
        "plan-rank-true",
        "compress --plan p.json --out c8",
        ("p.json: rule 0", "lowrank.rank", "True"),
        make=_plan({"lowrank": {"rank": True}}),
    ),
    Case(
        "plan-sparsity-false",
        "eval --data m.jsonl --plan p.json --out e.json",
        ("p.json: rule 0", "sparsity"),
        make=_plan({"prune": {"sparsity": False}}),
    ),
    Case(
        "plan-bits-true",
        "profile --device jetson-orin-nano --data m.jsonl --plan p.json --out p1.json",
        ("p.json: rule 0", "quant.bits"),
        make=_plan({"quant": {"bits": True}}),
    ),
    Case(
        "plan-unknown-method",
        "compress --plan p.json --out c8",
        ("p.json: rule 0", "unknown method 'squash'"),
        make=_plan({"squash": {}}),
    ),
    Case(
        "plan-bad-regex",
        "compress --plan p.json --out c8",
        ("p.json: rule 0", "bad regex"),
        make=_json("p.json", {"rules": [{"match": "re:((", "quant": {}}]}),
    ),
    Case(
        "plan-csp-without-calib",
        "eval --data m.jsonl --plan p.json --out e.json",
        ("--plan p.json", "--calib"),
        make=_json("p.json", CSP),
    ),
    Case("plan-calib-without-csp", "compress --plan int8.json --calib m.jsonl --out c8", ("--calib", "csp")),
    Case(
        "plan-regex-matches-nothing",
        "compress --plan p.json --out c8",
        ("matches no",),
        make=_json("p.json", {"rules": [{"match": "re:.*nothing.*", "quant": {}}]}),
        loads=True,
    ),
    Case(
        "plan-rank-above-layer",
        "compress --plan p.json --out c8",
        ("rank 1000", "maximum rank 384"),
        make=_plan({"lowrank": {"rank": 1000}}),
        loads=True,
    ),
    # ---- device profiles: a missing or bad constant names the file and the key
    Case(
        "device-no-activation-budget",
        "profile --device dev.toml --data m.jsonl --out p.json",
        ("dev.toml", "memory.onchip_activation_bytes"),
        make=lambda w: device_toml(w, "dev.toml", drop_table("memory.onchip_activation_bytes")),
    ),
    Case(
        "device-no-int8-mac",
        "profile --device dev.toml --data m.jsonl --out p.json",
        ("dev.toml", "compute.pj_per_mac.int8"),
        make=lambda w: device_toml(w, "dev.toml", drop_table("compute.pj_per_mac.int8")),
    ),
    Case(
        "device-constant-without-source",
        "profile --device dev.toml --data m.jsonl --out p.json",
        ("dev.toml", "compute.peak_macs_per_s", "source"),
        make=lambda w: device_toml(w, "dev.toml", set_key("compute.peak_macs_per_s", "source", None)),
    ),
    Case(
        "device-negative-constant",
        "profile --device dev.toml --data m.jsonl --out p.json",
        ("dev.toml", "memory.onchip_pj_per_byte.value"),
        make=lambda w: device_toml(w, "dev.toml", set_key("memory.onchip_pj_per_byte", "value", "-4.1")),
    ),
    Case(
        "bench-device-no-activation-budget",
        f"{BENCH} --device dev.toml --out r.jsonl",
        ("dev.toml", "memory.onchip_activation_bytes"),
        make=lambda w: device_toml(w, "dev.toml", drop_table("memory.onchip_activation_bytes")),
    ),
    # ---- 5, 6: every bench input checked before the first cell; the results file
    Case(
        "bench-plan-broken-second",
        f"{BENCH} --plan int8.json --plan p.json --out r.jsonl",
        ("p.json", "not valid JSON"),
        make=_text("p.json", '{"rules": ['),
    ),
    Case(
        "bench-two-plans-one-stem",
        f"{BENCH} --plan a/p.json --plan b/p.json --precision '' --out r.jsonl",
        ("--plan b/p.json", "--plan a/p.json", "'p'"),
        make=_all(_json("a/p.json", INT8_PLAN), _json("b/p.json", OTHER_P)),
    ),
    Case(
        "bench-csp-without-calib",
        f"{BENCH} --plan p.json --precision '' --out r.jsonl",
        ("p.json", "--calib"),
        make=_json("p.json", CSP),
    ),
    Case(
        "bench-noise-not-audio",
        f"{BENCH} --noise white,broken.wav --snr 10 --out r.jsonl",
        ("broken.wav", "not a readable audio file"),
        make=_text("broken.wav", "not audio\n"),
    ),
    Case("bench-snr-nan", f"{BENCH} --noise white --snr nan --out r.jsonl", ("--snr nan", "finite")),
    Case("bench-locked-by-another", f"{BENCH} --out r.jsonl", ("--out r.jsonl", "locked", "pid 4242"), make=_held_lock),
    Case(
        "bench-peer-unsupported",
        "bench --data samples --limit 1 --peers int8,bogus --threads 1 --out r.jsonl",
        ("--peers bogus",),
        loads=True,
    ),
    Case(
        "report-corrupt-line",
        "report bad.jsonl -o r.html",
        ("bad.jsonl:2", "not a JSON line"),
        make=_text("bad.jsonl", json.dumps(V0_ROW) + '\n{"cell": \n'),
    ),
    Case("report-foreign-jsonl", "report m.jsonl -o r.html", ("m.jsonl:1", "not a bench row")),
    Case(
        "report-duplicate-cell",
        "report bad.jsonl -o r.html",
        ("bad.jsonl:2", "already on line 1"),
        make=_lines("bad.jsonl", V0_ROW, V0_ROW),
    ),
    # ---- 3, 5: resuming onto real rows (fp32 + plan a/p.json, from the `bench_rows` fixture) that answer
    # another question, or that a second writer duplicated
    Case("resume-other-limit", f"{BENCH} --limit 2 --out r.jsonl", ("r.jsonl:1", "limit"), loads=True, bench=True),
    Case(
        "resume-other-device",
        f"{BENCH} --device raspberry-pi-5 --out r.jsonl",
        ("r.jsonl:1", "device"),
        loads=True,
        bench=True,
    ),
    Case(
        "resume-other-data",
        "bench --data m.jsonl --peers '' --threads 1 --out r.jsonl",
        ("r.jsonl:1", "data_sha256"),
        loads=True,
        bench=True,
    ),
    Case(
        "resume-other-max-new-tokens",
        f"{BENCH} --max-new-tokens 100 --out r.jsonl",
        ("r.jsonl:1", "decoding"),
        loads=True,
        bench=True,
    ),
    Case(
        "resume-plan-same-stem-other-content",
        f"{BENCH} --plan b/p.json --out r.jsonl",
        ("r.jsonl:2", "plan_sha256"),
        make=_json("b/p.json", OTHER_P),
        loads=True,
        bench=True,
    ),
    Case(
        "resume-corrupt-line",
        f"{BENCH} --plan a/p.json --out r.jsonl",
        ("r.jsonl:3", "not a JSON line"),
        make=_all(_json("a/p.json", INT8_PLAN), _bench_append(b'{"cell": "[\\"weightwise\\"\n')),
        loads=True,
        bench=True,
    ),
    Case(
        "report-duplicate-real-row",
        "report r.jsonl -o r.html",
        ("r.jsonl:3", "already on line 1"),
        make=_bench_dup,
        bench=True,
    ),
    # ---- impossible options, argparse's own errors included (one line, no usage block)
    Case("limit-zero", "eval --data m.jsonl --limit 0 --out e.json", ("--limit", ">= 1")),
    Case("beam-size-zero", "transcribe clip.flac --beam-size 0", ("--beam-size", ">= 1")),
    Case("bench-max-new-tokens-zero", f"{BENCH} --max-new-tokens 0 --out r.jsonl", ("--max-new-tokens", ">= 1")),
    Case(
        "bench-max-new-tokens-above-the-decoder",
        f"{BENCH} --max-new-tokens {TOO_MANY} --out r.jsonl",
        (f"max_new_tokens {TOO_MANY}", "446"),
        loads=True,
    ),
    Case("meter-unknown", f"{PROFILE} --meter bogus --out p.json", ("meter", "bogus")),
    Case(
        "peer-compute-type-unknown",
        "eval --data m.jsonl --peer faster-whisper --peer-compute-type bogus --out e.json",
        ("--peer-compute-type bogus", "not supported"),
    ),
    Case(
        "peer-compute-type-without-peer",
        "eval --data m.jsonl --peer-compute-type int8 --out e.json",
        ("--peer-compute-type", "--peer"),
    ),
    Case("cache-dir-is-a-file", "transcribe clip.flac --cache-dir notes.txt", ("notes.txt", "not a folder")),
    Case("unknown-flag", "transcribe clip.flac --fast", ("--fast",)),
]


def _selected_cases(request) -> list[Case]:
    """The cases of this module's table that pytest will run (all of them, or a -k selection)."""
    chosen = set()
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if spec is not None and Path(str(item.path)) == Path(__file__) and "case" in spec.params:
            chosen.add(spec.params["case"].id)
    return [case for case in CASES if case.id in chosen]


@pytest.fixture(scope="module")
def bench_rows(tmp_path_factory) -> Path:
    """Real results (fp32 and plan a/p.json on one bundled utterance) written by a real bench."""
    folder = tmp_path_factory.mktemp("bench-rows")
    write_json(folder / "a" / "p.json", INT8_PLAN)
    argv = shlex.split(f"{BENCH} --plan a/p.json --out r.jsonl")
    proc = run_cli(argv, folder, dict(os.environ, OMP_NUM_THREADS="1"), timeout_s=600)
    assert proc is not None and proc.returncode == 0, proc and proc.stderr[-2000:]
    assert len((folder / "r.jsonl").read_text().splitlines()) == 2
    return folder / "r.jsonl"


@pytest.fixture(scope="module")
def outcome(request, tmp_path_factory, samples, weightwise_cache):
    """`outcome(case)` -> its Outcome. The selected cases run up front, WORKERS at a time."""
    speech = samples[0]
    kit = partial(make_kit, speech=speech.audio_path, text=speech.text)
    base = tmp_path_factory.mktemp("hostile")
    rows: list[Path | None] = [None]

    def run(case: Case):
        if case.bench and rows[0] is None:
            rows[0] = request.getfixturevalue("bench_rows")
        timeout_s = TIMEOUT_S * (2 if case.loads else 1)
        return run_case(case, base / case.id, kit, rows[0], str(weightwise_cache), timeout_s)

    cases = _selected_cases(request)
    if any(c.bench for c in cases):
        rows[0] = request.getfixturevalue("bench_rows")
    elif any(c.loads for c in cases):
        request.getfixturevalue("tiny_model")  # convert the weights once, not in every process
    with ThreadPoolExecutor(WORKERS) as pool:
        done = dict(zip((c.id for c in cases), pool.map(run, cases), strict=True))
    return lambda case: done[case.id] if case.id in done else run(case)


def _params():
    marks = {True: [pytest.mark.slow], False: []}
    return [pytest.param(case, id=case.id, marks=marks[case.bench]) for case in CASES]


@pytest.mark.parametrize("case", _params())
def test_hostile_input_is_one_line_exit_2_and_touches_nothing(case, outcome):
    result = outcome(case)
    assert result.returncode is not None, f"still running after {result.wall_s:.0f} s"
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    line = lines[0]
    assert line.startswith("weightwise: error: ") and line[len("weightwise: error: ") :].strip(), line
    for needle in case.needles:
        assert needle in line, (needle, line)
    assert result.stdout == ""
    assert result.after == result.before  # inputs byte-identical, nothing new, nothing gone
    assert result.cache_after == [], "loaded the model before failing"


def test_help_still_prints_the_usage():
    proc = run_cli(["eval", "--help"], Path.cwd(), dict(os.environ), timeout_s=TIMEOUT_S)
    assert proc is not None and proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: weightwise eval") and "--max-new-tokens" in proc.stdout


# ---------------------------------------------------------------- the right result


def _ok(argv: str, cwd: Path, **env: str):
    proc = run_cli(shlex.split(argv), cwd, dict(os.environ, OMP_NUM_THREADS="1", **env), timeout_s=600)
    assert proc is not None and proc.returncode == 0, proc and proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_compress_twice_into_its_own_folder_then_reload_in_a_fresh_process(tmp_path, samples):
    """Item 1: a folder that `compress` wrote is replaced, and nothing else is touched; item 2: the
    saved model transcribes in a new interpreter exactly as the model compressed in memory."""
    from weightwise.audio import load_audio
    from weightwise.compress import Plan, compress_
    from weightwise.decode import transcribe
    from weightwise.models import load_model

    speech = samples[0]
    make_kit(tmp_path / "work", speech.audio_path, speech.text)
    work = tmp_path / "work"
    before = tree(work)
    for _ in range(2):
        _ok("compress --plan int8.json --out c8 --threads 1", work)
        assert sorted(p.name for p in (work / "c8").iterdir()) == ["compressed.json", "model.safetensors"]
        assert {k: v for k, v in tree(work).items() if not k.startswith("c8")} == before
    heard = _ok("transcribe --model c8 clip.flac --threads 1", work).stdout

    model = load_model("whisper-tiny.en")
    compress_(model, Plan.from_dict(INT8_PLAN))
    assert heard.splitlines() == [f"clip.flac\t{transcribe(model, load_audio(speech.audio_path)).text}"]


@pytest.mark.slow
def test_the_same_bench_again_resumes_without_computing(tmp_path, bench_rows):
    """Item 3's other side: the command that wrote the rows reuses every one of them."""
    write_json(tmp_path / "a" / "p.json", INT8_PLAN)
    (tmp_path / "r.jsonl").write_bytes(bench_rows.read_bytes())
    before = tree(tmp_path)
    proc = _ok(f"{BENCH} --plan a/p.json --out r.jsonl", tmp_path)
    assert proc.stderr.splitlines()[-1] == "2 cells in r.jsonl"
    assert tree(tmp_path) == before  # no row added, no lock file left


@pytest.mark.slow
def test_a_truncated_weights_cache_is_rebuilt(tmp_path, samples, weightwise_cache, tiny_greedy):
    """Item 8: a cut-short cached conversion is converted again, not a SafetensorError."""
    cache = tmp_path / "cache"
    (hf,) = (weightwise_cache / "hf").glob("whisper-tiny.en-*")
    (cache / "hf").mkdir(parents=True)
    target = cache / "hf" / hf.name
    target.mkdir()
    for item in hf.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    speech = samples[0]
    heard = _ok(f"transcribe {speech.audio_path} --threads 1", tmp_path, WEIGHTWISE_CACHE=str(cache)).stdout
    assert heard.splitlines() == [f"{speech.audio_path.name}\t{tiny_greedy[speech.id].text}"]
    assert weights.read_bytes() == (hf / "model.safetensors").read_bytes()
