"""`weightwise optimize` on the shipped transducer, end to end on a few real FSDD digit strings: the
plan it writes loads and decodes, WER is digit-level, and the per-component ranking is reported."""

from __future__ import annotations

import json

import jiwer
import pytest
import torch

from weightwise.cli import main
from weightwise.compress import Plan
from weightwise.compress.loading import load_model_with_plan
from weightwise.data import iter_audio

SPACE = {
    "candidates": [
        {"label": "int8", "quant": {"bits": 8, "granularity": "channel"}},
        {"label": "int4", "quant": {"bits": 4, "granularity": "channel"}},
    ],
    "groups": ["joiner.out", "joiner.pred_proj", "predictor.gates", "encoder.blocks.1.ffn2.fc1"],
    "uniform": ["int8"],
}


@pytest.fixture(scope="module")
def run(fsdd_strings, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("transducer-optimize")
    calib = fsdd_strings(root / "calib", "train", 3, seed=5)
    evaluation = fsdd_strings(root / "eval", "test", 3, seed=1)
    (root / "space.json").write_text(json.dumps(SPACE))
    out = root / "opt"
    args = ["optimize", "--model", "transducer-fsdd", "--device", "mcu-npu", "--wer-budget", "30"]
    args += ["--calib", calib.source, "--eval", evaluation.source, "--out", str(out), "--rounds", "1"]
    args += ["--candidates", str(root / "space.json"), "--sensitivity-cache", str(root / "cache"), "--threads", "1"]
    assert main(args) == 0
    return out, evaluation


@pytest.mark.slow
def test_writes_a_plan_that_loads_and_decodes(run):
    out, evaluation = run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "transducer-fsdd" and summary["baseline"]["precision"] == "fp32"
    plan = Plan.from_json(out / "plan.json")
    planned = {m for rule in plan.rules for m in rule.match}
    assert {c["group"] for c in summary["choices"]} <= planned
    assert {c["component"] for c in summary["choices"]} == {"encoder", "predictor", "joiner"}
    model = load_model_with_plan("transducer-fsdd", plan=out / "plan.json")
    hyps, refs = [], []
    for utt, samples in iter_audio(evaluation):
        hyps.append(model.decode_audio(samples).text)
        refs.append(utt.text)
    # the optimizer's WER is digit-level (one word per spoken digit), as jiwer counts it here
    assert summary["optimized"]["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert (out / "report.html").read_text().count("<table>") >= 3


@pytest.mark.slow
def test_reports_which_components_first(run):
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    ordering = summary["ordering"]
    assert set(ordering["component_invocations_per_audio_s"]) == {"encoder", "predictor", "joiner"}
    invocations = ordering["component_invocations_per_audio_s"]
    assert invocations["joiner"] > invocations["encoder"] and invocations["joiner"] > invocations["predictor"]
    for label in ("int8", "int4"):
        rows = ordering["by_candidate"][label]
        assert {r["component"] for r in rows} == {"encoder", "predictor", "joiner"}
        ratios = [r["saved_j_per_nat"] for r in rows]
        assert ratios == sorted(ratios, reverse=True) and all(r["energy_saved_j_per_audio_s"] > 0 for r in rows)
    order = summary["planner"]["solvers"]["greedy"]["order"]
    assert len(order) == summary["planner"]["solvers"]["greedy"]["steps"]
    first = {}
    for step, (group, _label) in enumerate(order):
        first.setdefault(group.split(".")[0], step)
    assert first == ordering["greedy_first_step"]
