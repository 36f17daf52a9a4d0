"""`weightwise optimize`: bad input is one line and exit 2 with nothing in --out; a real small run
writes the plan, the compressed model, the summary and the report."""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch import nn

from weightwise.cli import main
from weightwise.profile.devices import DEVICES_DIR

SPACE = {
    "candidates": [
        {"label": "int8", "quant": {"bits": 8}},
        {"label": "int4-g64", "quant": {"bits": 4, "granularity": "group", "group_size": 64}, "groups": ["re:.*fc1"]},
    ],
    "groups": ["re:model\\.decoder\\.layers\\.3\\.fc\\d", "model.decoder.embed_tokens"],
    "uniform": ["int8"],
}


@pytest.fixture(scope="module")
def speech(shared_data_dir) -> dict[str, Path]:
    root = shared_data_dir / "speech"
    return {
        "calib": root / "librispeech_train_clean_100_untranscribed" / "manifest.jsonl",
        "eval": root / "librispeech_test_other_mini" / "manifest.jsonl",
        "tune": root / "arctic_kathleen" / "manifest.jsonl",
    }


def _args(speech, out, *extra, budget="0.5", device="jetson-orin-nano", calib=None, eval_set=None):
    return [
        "optimize",
        "--device",
        str(device),
        "--wer-budget",
        budget,
        "--calib",
        str(calib or speech["calib"]),
        "--eval",
        str(eval_set or speech["eval"]),
        "--out",
        str(out),
        "--limit-calib",
        "2",
        "--limit-eval",
        "2",
        *extra,
    ]


def _one_error_line(capsys, argv, *names) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("weightwise: error: "), err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "budget, words", [("-0.5", "> 0"), ("0", "> 0"), ("nan", "finite"), ("inf", "finite"), ("250", "impossible")]
)
def test_bad_budgets(capsys, tmp_path, speech, budget, words):
    out = tmp_path / "out"
    _one_error_line(capsys, _args(speech, out, budget=budget), "--wer-budget", words)
    assert not out.exists()


def test_device_file_with_a_missing_constant(capsys, tmp_path, speech):
    text = (DEVICES_DIR / "jetson-orin-nano.toml").read_text()
    broken = tmp_path / "board.toml"
    broken.write_text(text.replace("[memory.dram_pj_per_byte]", "[memory.unused]", 1))
    _one_error_line(capsys, _args(speech, tmp_path / "out", device=broken), str(broken))
    assert not (tmp_path / "out").exists()


def test_calibration_manifest_without_audio(capsys, tmp_path, speech):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_error_line(capsys, _args(speech, tmp_path / "out", calib=empty), str(empty))
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"id": "a", "audio": "nowhere.flac", "text": None}) + "\n")
    _one_error_line(capsys, _args(speech, tmp_path / "out", calib=missing), "nowhere.flac")
    assert not (tmp_path / "out").exists()


def test_evaluation_needs_transcripts_and_unseen_audio(capsys, tmp_path, speech):
    _one_error_line(capsys, _args(speech, tmp_path / "out", eval_set=speech["calib"]), "--eval", "transcript")
    _one_error_line(capsys, _args(speech, tmp_path / "out", calib=speech["eval"]), "--calib and --eval share")
    _one_error_line(capsys, _args(speech, tmp_path / "out", "--tune", str(speech["calib"])), "--tune", "transcript")
    _one_error_line(capsys, _args(speech, tmp_path / "out", "--tune", str(speech["eval"])), "--tune and --eval share")
    twice = ["--tune", str(speech["tune"]), "--tune", str(speech["tune"])]  # repeated --tune joins manifests
    _one_error_line(capsys, _args(speech, tmp_path / "out", *twice), "--tune", "duplicate id")
    tiny = ["--tune", str(speech["tune"]), "--limit-tune", "1"]  # 8 words: one is 12.5 points
    _one_error_line(capsys, _args(speech, tmp_path / "out", *tiny), "--tune", "one changed word is", "budget 0.5")


def test_out_must_be_new_empty_or_an_earlier_optimize_output(capsys, tmp_path, speech):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    _one_error_line(capsys, _args(speech, out), "--out", str(out))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_bad_candidate_space(capsys, tmp_path, speech):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"candidates": [{"label": "x", "quant": {"bits": 5}}]}))
    _one_error_line(capsys, _args(speech, tmp_path / "out", "--candidates", str(space)), str(space), "bits")


def test_a_failure_after_validation_leaves_nothing_in_out(capsys, tmp_path, speech):
    out = tmp_path / "out"
    _one_error_line(capsys, _args(speech, out, "--model", str(tmp_path / "no-such-model")), "no-such-model")
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no temporary folder left either


def test_a_kill_mid_run_leaves_nothing_beside_or_in_out(tmp_path, speech):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "weightwise", *_args(speech, out, budget="5")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp = tmp_path / ".out.optimize-tmp"
    deadline = time.monotonic() + 120
    while not tmp.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tmp.exists(), "the run never started"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "weightwise: interrupted"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_real_small_optimize_end_to_end(tmp_path, speech, weightwise_cache):
    from weightwise.compress import Plan
    from weightwise.models import load_model

    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    out = tmp_path / "opt"
    # 2 calibration utterances hold ~23 words: one changed word is ~4.3 points, so a budget of 5
    argv = _args(
        speech,
        out,
        "--candidates",
        str(space),
        "--sensitivity-cache",
        str(tmp_path / "cache"),
        "--threads",
        "2",
        budget="5",
    )
    argv += ["--kv-precision", "int8", "--fused-attention", "--rounds", "2"]
    argv += ["--tune", str(speech["tune"]), "--limit-tune", "3"]  # 3 transcribed arctic utterances, ~27 words
    run = subprocess.run([sys.executable, "-m", "weightwise", *argv], capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr
    assert "below fp16" in run.stdout and "Traceback" not in run.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "model",
        "plan.json",
        "profiles",
        "report.html",
        "sensitivity.json",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "jetson-orin-nano" and summary["baseline"]["precision"] == "fp16"
    for part in ("baseline", "optimized"):
        assert 0 <= summary[part]["wer"] < 1 and summary[part]["energy_j_per_audio_s"] > 0
    assert summary["optimized"]["offchip_bytes_per_audio_s"] > 0
    assert [u["name"] for u in summary["uniform"]] == ["fp16", "int8"]
    assert summary["uniform"][0]["energy_j_per_audio_s"] == summary["baseline"]["energy_j_per_audio_s"]
    opt = summary["optimized"]
    beaten = [
        u["name"]
        for u in summary["uniform"]
        if (u["wer"], u["energy_j_per_audio_s"]) != (opt["wer"], opt["energy_j_per_audio_s"])
        and u["wer"] <= opt["wer"]
        and u["energy_j_per_audio_s"] <= opt["energy_j_per_audio_s"]
    ]
    assert opt["dominated_by"] == beaten
    assert len(summary["calib_ids"]) == 2 and len(summary["eval_ids"]) == 2 and summary["wall_s"] > 0
    assert not set(summary["calib_ids"]) & set(summary["eval_ids"])
    # the plan is an ordinary plan: it loads, claims every weight group, and matches the saved model
    plan = Plan.from_json(out / "plan.json")
    # the runtime settings are priced on the calibration audio; kept ones ride in the plan, and fused
    # attention is assumed for the baseline's profile as for the plan's
    runtime = summary["planner"]["runtime"]
    assert runtime["requested"] == {"kv_precision": "int8", "fused_attention": True}
    assert plan.to_dict().get("runtime", {}) == runtime["settings"] and runtime["settings"]["fused_attention"]
    for name in ("baseline-fp16", "optimized"):
        assert json.loads((out / "profiles" / f"{name}.json").read_text())["fused_attention"] is True
    for handlers in ("lowrank", "prune", "quantize", "share"):  # compressed kinds register on import
        importlib.import_module(f"weightwise.compress.{handlers}")
    model = load_model(str(out / "model"))
    assert model.plan.to_dict() == plan.to_dict()
    fresh = load_model("tiny.en", cache_dir=weightwise_cache).network
    weight_modules = {n for n, m in fresh.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Embedding))}
    assert set(plan.resolve(fresh)) == {n for n in weight_modules if "embed_positions" not in n}  # 67 groups
    chosen = {c["group"]: c["candidate"] for c in summary["choices"]}
    assert set(chosen) == {"model.decoder.layers.3.fc1", "model.decoder.layers.3.fc2", "model.decoder.embed_tokens"}
    assert summary["optimized"]["predicted"]["wer_delta_points"] <= 5 + 1e-9
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "optimized" in html
    # 3 planned groups x int8, int4 only where its "groups" match (fc1), keep for all
    assert summary["sensitivity"]["scored"] == 3 + 1 + 67
    # the closed loop measured real WER increases on the tuning audio, never the evaluation audio
    loop = summary["planner"]["closed_loop"]
    assert loop["metric"] == "wer_delta_points" and len(loop["ids"]) == 3 == len(summary["tune_ids"])
    assert not set(loop["ids"]) & set(summary["eval_ids"]) and 0 <= loop["float_wer_points"] < 100
    # only decoder groups are planned: every plan (kv int8 on) reuses the encoder of the runtime probe
    reuse = loop["encoder_reuse"]
    assert reuse["hits"] >= 3 and (reuse["hits"] + reuse["misses"]) % 3 == 0
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary folder left


def test_several_tune_manifests_are_joined_and_each_is_recorded_as_a_part(tmp_path, speech, shared_data_dir):
    from weightwise.optimize.pipeline import OptimizeOptions, validate

    clean = shared_data_dir / "speech" / "librispeech_test_clean_mini" / "manifest.jsonl"
    options = OptimizeOptions(tune=[speech["tune"], clean], limit_calib=2, limit_eval=2)
    inputs = validate(
        "whisper-tiny.en", "jetson-orin-nano", 0.5, speech["calib"], speech["eval"], tmp_path / "o", options
    )
    sources = [source for source, _ in inputs.tune_parts]
    assert sources == [str(speech["tune"]), str(clean)] and inputs.tune.source == " + ".join(sources)
    sizes = [len(ids) for _, ids in inputs.tune_parts]
    assert sum(sizes) == len(inputs.tune) and sizes[1] == 4
    assert set().union(*(ids for _, ids in inputs.tune_parts)) == {u.id for u in inputs.tune}
    one = validate(
        "whisper-tiny.en",
        "jetson-orin-nano",
        0.5,
        speech["calib"],
        speech["eval"],
        tmp_path / "o",
        OptimizeOptions(tune=speech["tune"], limit_calib=2, limit_eval=2),
    )
    assert one.tune_parts == ()
