"""The planner's energy model agrees with the profiler: on the table, and on a really compressed model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from weightwise.compress import compress_
from weightwise.compress.candidates import Candidate, CandidateSpace, plan_of, weight_groups
from weightwise.compress.configs import Quant
from weightwise.compress.planner import evaluate, solve
from weightwise.compress.sensitivity import build_reference, sensitivity
from weightwise.optimize.problem import Table, assignment_of, build_problem, dominated_on, predict
from weightwise.profile import analyze, load_device, trace_manifest

INT8, INT4 = Candidate("int8", Quant(8)), Candidate("int4", Quant(4, "group", 64))
SPACE = CandidateSpace(
    (INT8, INT4), groups=("re:model\\.decoder\\.layers\\.3\\..*", "model.decoder.embed_tokens"), uniform=()
)


@pytest.fixture(scope="module")
def setup(tiny_model, samples, weightwise_cache):
    from weightwise.models import load_model

    runtime = load_model("whisper-tiny.en", precision="fp16")
    calib = samples.head(1)  # "He could wait no longer.": the compressed model below decodes it alike
    groups = weight_groups(tiny_model.network)
    reference = build_reference(tiny_model, runtime, calib, [m for g in groups for m in g.modules])
    planned = SPACE.planned(groups)
    entries = sensitivity(tiny_model, reference, planned, SPACE)
    keep_only = CandidateSpace((), uniform=())
    entries.update(sensitivity(tiny_model, reference, [g for g in groups if g not in planned], keep_only))
    return Table(reference.trace, tuple(groups), tuple(planned), SPACE, entries), calib


@pytest.mark.parametrize("device_name", ["jetson-orin-nano", "mcu-npu"])
def test_planner_energy_equals_the_profilers_for_its_plans(setup, device_name):
    table, _calib = setup
    device = load_device(device_name)
    problem, behind = build_problem(table, device, alpha_points_per_nat=50.0)
    assert len(problem.groups) == 11  # decoder layer 3 (10 linears) + the tied embedding/projection
    keep = evaluate(problem, [0] * len(problem.groups))
    # all keep (fp16 storage) is the dense fp16 model's own trace, to the joule
    assert keep.energy_j == pytest.approx(analyze(table.base, device).energy_j_per_audio_s, rel=1e-9)
    for budget in (0.05, 1.0, 50.0):
        best = solve(problem, budget).best
        profile = predict(table, assignment_of(table, behind, best.choice), device)
        assert best.energy_j == pytest.approx(profile.energy_j_per_audio_s, rel=1e-9)
        assert best.offchip_bytes == pytest.approx(profile.offchip_bytes_per_audio_s, rel=1e-9)
        assert best.wer_cost <= budget


def test_prediction_matches_the_trace_of_the_compressed_model(tiny_model, setup):
    """Compress for real (int4 embedding/projection, int8 decoder layer 3), run it at fp16 as deployed,
    trace it on the calibration audio: the table's prediction gives the same energy."""
    from weightwise.models import load_model

    table, calib = setup
    device = load_device("jetson-orin-nano")
    chosen = {
        g: (INT4 if g.name == "model.decoder.embed_tokens" else INT8 if "decoder.layers.3." in g.name else SPACE.keep)
        for g in table.groups
    }
    model = load_model("whisper-tiny.en")
    compress_(model, plan_of(chosen, "test"))
    model.network.to(torch.float16)
    trace, results, _ = trace_manifest(model, calib)
    reference_texts = [r.hyp for r in trace_manifest(load_model("whisper-tiny.en", precision="fp16"), calib)[1]]
    assert [r.hyp for r in results] == reference_texts  # same decode, so the same invocation counts
    measured = analyze(trace, device)
    predicted = predict(table, chosen, device)
    assert predicted.energy_j_per_audio_s == pytest.approx(measured.energy_j_per_audio_s, rel=1e-6)
    assert predicted.offchip_bytes_per_audio_s == pytest.approx(measured.offchip_bytes_per_audio_s, rel=1e-6)
    # the weights' share of the energy falls by more than 30%; the cache and activation traffic does not move
    dense = analyze(table.base, device)
    weights_j = [sum(t.energy_j_per_audio_s for t in p.tensors) for p in (predicted, dense)]
    assert weights_j[0] < 0.7 * weights_j[1]
    for part in ("kv_cache", "activations"):
        assert predicted.component_energy_j_per_audio_s[part] == pytest.approx(
            dense.component_energy_j_per_audio_s[part], rel=1e-9
        )


def test_dominated_candidates_are_those_no_plan_would_pick(setup):
    table, _calib = setup
    skip = dominated_on(load_device("jetson-orin-nano"), table.base)
    group = next(g for g in table.planned if g.name == "model.decoder.layers.3.fc1")
    keep = table.entry(group, SPACE.keep).tensors
    assert not skip(group, keep, table.entry(group, INT8).tensors)
    assert skip(group, keep, keep)  # equal bytes and energy: nothing to gain
    doubled = tuple(t.__class__(**{**t.__dict__, "nbytes": 2 * t.nbytes, "bytes_read": 2 * t.bytes_read}) for t in keep)
    assert skip(group, keep, doubled)


def test_runtime_settings_are_priced_on_the_calibration_audio_and_charged_by_the_planner(setup):
    """Settings that fit the budget are kept together; over it, added cheapest first while the
    measured whole stays within half the budget; the planner's energy then charges the int8 cache
    (fewer joules than the float cache)."""
    from weightwise.models.runtime import RuntimeSettings
    from weightwise.optimize.run import _runtime_group

    table, _calib = setup
    keep_all = {g: table.space.keep for g in table.groups}
    requested = RuntimeSettings(kv_precision="int8", activation_precision="int8", fused_attention=True)
    costs = {"kv_precision": 0.05, "activation_precision": 0.9, "fused_attention": 0.0}
    calls = []

    def measure(assignment, settings):
        assert assignment == keep_all
        calls.append(settings)
        return sum(costs[k] for k in settings.to_dict())

    kept, cost, tried = _runtime_group(requested, 0.5, keep_all, measure)
    assert kept == RuntimeSettings(kv_precision="int8", fused_attention=True) and cost == pytest.approx(0.05)
    # together, each alone, then fused + kv and fused + kv + activations (refused)
    assert [t["pseudo_wer_points"] for t in tried][0] == pytest.approx(0.95) and len(calls) == 6
    assert _runtime_group(requested, 2.0, keep_all, measure)[0] == requested  # all fit: one measurement
    assert _runtime_group(None, 0.5, keep_all, measure) == (None, 0.0, [])
    device = load_device("jetson-orin-nano")
    plain = predict(table, keep_all, device)
    cached = predict(dataclasses.replace(table, runtime=kept), keep_all, device)
    assert cached.kv_dtype == "int8" and cached.fused_attention and plain.kv_dtype != "int8"
    assert cached.energy_j_per_audio_s < plain.energy_j_per_audio_s
    problem, _ = build_problem(dataclasses.replace(table, runtime=kept), device, 10.0)
    assert problem.extra_j == pytest.approx(
        cached.energy_j_per_audio_s - sum(r.energy_j_per_audio_s for r in cached.tensors), rel=1e-6
    )


def test_calibration_audio_must_hold_more_words_than_one_budget_step():
    """On 4 utterances (~150 words) one changed word is 0.67 points: a 0.5 budget could only keep
    the dense weights, so optimize stops with one line before the sweep."""
    from types import SimpleNamespace

    from weightwise.errors import InputError
    from weightwise.optimize.calibrate import check_calib_words

    reference = SimpleNamespace(transcripts=(("a", "The cat sat."), ("b", "On a mat")))
    assert check_calib_words(reference, 25.0, "c.jsonl") == 6
    with pytest.raises(
        InputError, match=r"c.jsonl: the float model says 6 words, .* 16.67 WER points, more than --wer-budget 0.5"
    ):
        check_calib_words(reference, 0.5, "c.jsonl")


def test_uniform_baselines_cover_every_group_the_method_applies_to(setup, tiny_model):
    """Unplanned groups get the uniform candidate too; one whose shape the method refuses keeps
    (int4 group 64 on conv1's 80 x 3 = 240 inputs)."""
    from weightwise.optimize.run import _uniform

    table, _calib = setup
    chosen = _uniform(table, INT4, tiny_model, None)
    kept = sorted(g.name for g, c in chosen.items() if c == table.space.keep)
    assert kept == ["model.encoder.conv1"] and len(chosen) == len(table.groups)


def test_closed_loop_skips_saturated_uniform_probes_and_keeps_a_plan_that_holds_the_budget(setup):
    """A uniform probe whose summed KL is above SATURATED_KL (a model that no longer transcribes) is
    never decoded; the others are; the plan kept is one whose measured cost fits the budget."""
    from types import SimpleNamespace

    from weightwise.optimize.calibrate import SATURATED_KL
    from weightwise.optimize.pipeline import OptimizeOptions
    from weightwise.optimize.run import _plan

    table, _calib = setup
    broken = {
        k: dataclasses.replace(e, kl=2 * SATURATED_KL) if k[1] == INT4.key else e for k, e in table.entries.items()
    }
    table = dataclasses.replace(table, entries=broken, space=dataclasses.replace(SPACE, uniform=("int8", "int4")))
    measured = []

    def measure(assignment, runtime=None):
        labels = {c.label for c in assignment.values()}
        assert "int4" not in labels or len(measured) > 1  # the int4 probe is never measured
        measured.append(sorted(labels))
        return 0.1 * ("int8" in labels)

    inputs = SimpleNamespace(budget=0.5, device=load_device("jetson-orin-nano"))
    assignment, info, _ = _plan(table, inputs, OptimizeOptions(rounds=2), measure)
    assert measured[0] == ["fp16", "int8"] and [p["name"] for p in info["calibration_points"]][0] == "uniform:int8"
    assert not any(p["name"] == "uniform:int4" for p in info["calibration_points"])
    assert info["calib_pseudo_wer_points"] <= 0.5 and "int8" in {c.label for c in assignment.values()}


def test_a_plan_is_accepted_on_its_upper_bound_and_a_negative_runtime_cost_frees_no_budget(setup):
    """A plan whose point value fits the budget but whose paired upper bound does not is refused
    (the old rule took it); runtime settings measured below zero leave the weights the budget as is."""
    from types import SimpleNamespace

    from weightwise.models.runtime import RuntimeSettings
    from weightwise.optimize.calibrate import Delta
    from weightwise.optimize.pipeline import OptimizeOptions
    from weightwise.optimize.run import _plan

    table, _calib = setup
    int4_plans = []

    def measure(assignment, runtime=None):
        labels = {c.label for c in assignment.values()}
        if labels == {"fp16"}:  # the runtime settings alone: a lucky draw below zero
            return Delta(-0.4, 0.1, 1.28)
        if "int4" in labels:
            int4_plans.append(labels)
            return Delta(0.3, 0.4, 1.28)  # point 0.3 fits 0.5; upper 0.81 does not
        return Delta(0.1, 0.05, 1.28)

    inputs = SimpleNamespace(budget=0.5, device=load_device("jetson-orin-nano"))
    options = OptimizeOptions(rounds=4, runtime=RuntimeSettings(kv_precision="int8"))
    assignment, info, _ = _plan(table, inputs, options, measure)
    assert info["runtime"]["weight_budget_points"] == 0.5  # not 0.9
    assert int4_plans, "the solver never proposed an int4 plan: the test exercises nothing"
    assert "int4" not in {c.label for c in assignment.values()}
    assert info["calib_upper_points"] <= 0.5 and info["confidence"] == 0.9
    assert all("upper_points" in p for p in info["calibration_points"])
