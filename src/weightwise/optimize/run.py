"""The steps of `optimize` once its inputs are checked (see `weightwise.optimize.pipeline`)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from weightwise.compress.api import CompressContext, compress_
from weightwise.compress.candidates import Candidate, Group, applied, plan_of, weight_groups
from weightwise.compress.io import save_compressed
from weightwise.compress.planner import PlannerResult, solve
from weightwise.compress.sensitivity import SensitivityCache, build_reference, cache_file, sensitivity
from weightwise.compress.state import save_plan_state
from weightwise.errors import InputError
from weightwise.evaluate.normalize import normalizer_for
from weightwise.executors import open_executor
from weightwise.models.runtime import RuntimeSettings, runtime_applied
from weightwise.optimize.calibrate import (
    DEFAULT_ALPHA,
    SATURATED_KL,
    AlphaSearch,
    CalibPoint,
    Delta,
    UtteranceErrors,
    all_applied,
    check_calib_words,
    fit_alpha,
    pseudo_errors,
    utterance_errors,
    z_of,
)
from weightwise.optimize.encoder_memo import EncoderMemo
from weightwise.optimize.problem import Table, assignment_of, build_problem, dominated_on, predict, uniform_assignment
from weightwise.profile.profile import ModelProfile, profile

STATE_FILE = "plan.state.safetensors"  # the plan's calibrated tensors, beside DIR/plan.json
FRONTIER_BUDGETS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # WER points, for the predicted curve


def _bar(progress, total: int):
    return progress(total) if progress is not None else None


def _sized_bar(progress):
    if progress is None:
        return None
    return lambda items, label: progress(len(items))(items, label)


def _sweep(model, reference, groups, planned, space, inputs, options, context, progress) -> tuple[dict, str]:
    """Sensitivity of the planned groups (cached on disk), plus keep's counts for the others."""
    from weightwise.models.registry import default_cache_dir

    root = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    cache = SensitivityCache(cache_file(root, model, reference))
    skip = dominated_on(inputs.device, reference.trace)
    with open_executor(options.executor) as executor:  # a local Ray cluster lives for the sweep only
        entries = sensitivity(model, reference, planned, space, cache, skip, _sized_bar(progress), context, executor)
    others = [g for g in groups if g not in planned]
    if others:  # their keep tensors only
        keep_only = dataclasses.replace(space, candidates=(), uniform=())
        entries.update(sensitivity(model, reference, others, keep_only, cache, skip, None, context))
    return entries, str(cache.path)


def _plan(table: Table, inputs, options, measure) -> tuple[dict, dict[str, Any], Table]:
    """Closed loop on the calibration audio: probes, then plan -> measure -> refit (see calibrate).

    The uniform probes are measured on the weights alone (they fit KL -> WER); the runtime settings
    (`options.runtime`) are priced first, as one fixed group: their measured cost comes off the
    weights' budget (a cost measured below zero frees none: that is noise, not room), and every plan
    is then measured with them on. A plan holds the budget when the upper bound of its paired
    interval does (`Delta.upper_points`; a bare number from `measure` is taken as exact)."""
    points: list[CalibPoint] = []
    keep_all = {g: table.space.keep for g in table.groups}
    runtime, runtime_points, runtime_tried = _runtime_group(options.runtime, inputs.budget, keep_all, measure)
    table = dataclasses.replace(table, runtime=runtime)  # the planner prices the settings kept
    # the solver needs a positive budget: settings that spend it all leave the weights next to nothing
    weight_budget = max(0.01 * inputs.budget, inputs.budget - max(0.0, runtime_points))
    for label in table.space.uniform:
        assignment = uniform_assignment(table, table.space.by_label(label))
        kl = table.kl_sum(assignment)
        if kl is not None and 0 < kl <= SATURATED_KL:  # no KL: nothing applied; above: saturated
            points.append(_point(f"uniform:{label}", kl, Delta.of(measure(assignment))))
    search = AlphaSearch(fit_alpha(points) or DEFAULT_ALPHA)
    tried: list[tuple[dict, PlannerResult, CalibPoint]] = []
    for round_ in range(options.rounds):
        alpha = search.alpha
        problem, behind = build_problem(table, inputs.device, alpha)
        result = solve(problem, weight_budget, options.bins)
        assignment = assignment_of(table, behind, result.best.choice)
        same = next((t for t in tried if t[0] == assignment), None)
        labels = _changes(table, assignment)
        name, kl = f"plan:{round_}", table.kl_sum(assignment)
        point = (
            dataclasses.replace(same[2], name=name)
            if same
            else _point(name, kl, Delta.of(measure(assignment, runtime)), alpha, labels)
        )
        points.append(point)
        if same is None:
            tried.append((assignment, result, point))
        if search.update(point.upper_points, inputs.budget) is None:
            break
    feasible = [t for t in tried if t[2].upper_points <= inputs.budget]
    if feasible:
        assignment, result, point = min(feasible, key=lambda t: t[1].best.energy_j)
    else:  # no plan held the budget on the calibration audio: fp16 everywhere
        assignment, result, point = keep_all, None, CalibPoint("keep", 0.0, 0.0, upper_points=0.0)
    final_alpha = point.alpha or search.alpha
    problem, _ = build_problem(table, inputs.device, final_alpha)
    frontier = [
        {"budget_points": b, "energy_j_per_audio_s": s.best.energy_j, "wer_delta_points": s.best.wer_cost}
        for b in FRONTIER_BUDGETS
        for s in [solve(problem, b, options.bins)]
    ]
    info = {
        "runtime": {
            "requested": options.runtime.to_dict() if options.runtime else {},
            "settings": runtime.to_dict() if runtime else {},
            "measured": runtime_tried,
            "calib_pseudo_wer_points": runtime_points,
            "weight_budget_points": weight_budget,
        },
        "alpha_points_per_nat": final_alpha,
        "alpha_pooled_fit": fit_alpha(points),
        "calibration_points": [dataclasses.asdict(p) for p in points],
        "rounds": len(tried),
        "chosen_round": point.name,
        "predicted_wer_delta_points": runtime_points + final_alpha * (table.kl_sum(assignment) or 0.0),
        "calib_pseudo_wer_points": point.pseudo_wer_points,
        "calib_upper_points": point.upper_points,
        "confidence": options.confidence,
        "frontier": frontier,
        "solvers": None
        if result is None
        else {
            name: {
                "energy_j_per_audio_s": s.energy_j,
                "wer_delta_points": s.wer_cost,
                "offchip_bytes_per_audio_s": s.offchip_bytes,
                "steps": s.steps,
                "order": [[problem.groups[g], problem.options[g][o].label] for g, o in s.order],  # greedy's moves
            }
            for name, s in (("greedy", result.greedy), ("exact", result.exact))
        },
        "solver": None if result is None else result.best.method,
    }
    return assignment, info, table


def _point(name: str, kl: float, delta: Delta, alpha: float | None = None, labels: dict | None = None) -> CalibPoint:
    return CalibPoint(name, kl, delta.points, alpha, labels, delta.upper_points, delta.parts_dict())


def _runtime_group(requested, budget: float, keep_all: dict, measure):
    """The runtime settings kept, their measured cost in the closed loop, and what was measured.

    All requested settings together if the upper bound of their cost fits half the budget; else
    each alone, then added cheapest first, each addition measured with the ones kept and kept while
    the whole's upper bound stays within half the budget (the weights get what is left). Costs do
    not add up: on the tuning audio the int8 cache, int8 activations and the encoder context each
    measured below zero alone and +0.96 together; an equal share each (the rule before) then kept
    none of them."""
    if not requested:
        return None, 0.0, []

    def record(settings: dict, delta: Delta) -> dict:
        record = {"settings": settings, "pseudo_wer_points": delta.points, "upper_points": delta.upper_points}
        return {**record, "parts": delta.parts_dict()} if delta.parts else record

    together = Delta.of(measure(keep_all, requested))
    tried = [record(requested.to_dict(), together)]
    if together.upper_points <= budget / 2:
        return requested, together.points, tried
    costs: dict[str, Delta] = {}
    for key, value in requested.to_dict().items():
        costs[key] = Delta.of(measure(keep_all, RuntimeSettings(**{key: value})))
        tried.append(record({key: value}, costs[key]))
    kept, cost = {}, 0.0
    for key in sorted(costs, key=lambda k: costs[k].upper_points):
        trial = {**kept, key: requested.to_dict()[key]}
        measured = costs[key] if not kept else Delta.of(measure(keep_all, RuntimeSettings(**trial)))
        if kept:
            tried.append(record(trial, measured))
        if measured.upper_points <= budget / 2:
            kept, cost = trial, measured.points
    return (RuntimeSettings(**kept), cost, tried) if kept else (None, 0.0, tried)


def _closed_loop(model, inputs, options, memo: EncoderMemo | None) -> dict[str, Any]:
    """What the closed loop measures plans on: pseudo-WER on the calibration audio, or (with
    `--tune`) the WER increase over the float model on the transcribed tuning audio."""
    gate = {"confidence": options.confidence, "z": z_of(options.confidence)}
    if inputs.tune is None:
        return {"metric": "pseudo_wer_points", "source": inputs.calib.source, **gate}
    with _bound(memo, model, {}) as encoder:  # reused only by a measurement whose encoder is the float one
        float_errors = utterance_errors(model, inputs.tune, options.decoding, encoder)
    return {
        "metric": "wer_delta_points",
        "source": inputs.tune.source,
        "ids": [u.id for u in inputs.tune],
        "float_wer_points": float_errors.wer_points,
        "parts": [
            {"source": source, "utterances": len(ids), "float_wer_points": _part_wer(float_errors, ids)}
            for source, ids in inputs.tune_parts
        ],
        **gate,
        "float_errors": float_errors,  # per utterance, for the paired interval (not written out)
    }


def _part_wer(errors: UtteranceErrors, ids: frozenset[str]) -> float:
    rows = [i for i, utt in enumerate(errors.ids) if utt in ids]
    words = sum(errors.words[i] for i in rows)
    return 100.0 * sum(errors.errors[i] for i in rows) / words if words else 0.0


def _bound(memo: EncoderMemo | None, model, assignment):
    """`memo` bound to `model`'s present encoder (`EncoderMemo.bound`), or no memo."""
    return memo.bound(model, assignment) if memo is not None else contextlib.nullcontext()


def _changes(table: Table, assignment: dict[Group, Candidate]) -> dict[str, int]:
    """How many planned groups got each candidate label."""
    counts: dict[str, int] = {}
    for group in table.planned:
        label = assignment[group].label
        counts[label] = counts.get(label, 0) + 1
    return counts


def _measured(p: ModelProfile) -> dict[str, Any]:
    return {
        "wer": p.wer,
        "energy_j_per_audio_s": p.energy_j_per_audio_s,
        "offchip_bytes_per_audio_s": p.offchip_bytes_per_audio_s,
    }


def _predicted(p: ModelProfile) -> dict[str, Any]:
    return {"energy_j_per_audio_s": p.energy_j_per_audio_s, "offchip_bytes_per_audio_s": p.offchip_bytes_per_audio_s}


def _evaluate(model, inputs, options, progress, name: str, tmp: Path) -> ModelProfile:
    """Measured WER and modeled energy on the evaluation audio (a plan's runtime settings are
    simulated and charged; fused attention, when the plan assumes it, is assumed for every variant)."""
    fused = bool(options.runtime and options.runtime.fused_attention)  # never dropped: it costs no words
    result = profile(
        model,
        inputs.eval_set,
        inputs.device,
        options.decoding,
        progress=_bar(progress, len(inputs.eval_set)),
        fused_attention=fused,
    )
    result.save(tmp / "profiles" / f"{name}.json")
    return result


def at_runtime(model, options):
    """`model` (compressed at float32) run as deployed: float tensors and activations at the
    runtime precision, as the dense baseline runs (the compressed storage is unchanged)."""
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[options.runtime_precision]
    model.network.to(dtype)
    model.info = dataclasses.replace(model.info, precision=options.runtime_precision)
    return model


def _uniform(table: Table, candidate: Candidate, model, context) -> dict[Group, Candidate]:
    """A uniform baseline: `candidate` on every group where it applies, planned or not (a group the
    sweep did not score is tried on `model`: one whose shape the method refuses keeps)."""
    out = {}
    for g in table.groups:
        entry = table.entry(g, candidate)
        if entry is not None:
            out[g] = candidate if entry.applicable else table.space.keep
            continue
        try:
            with applied(model.network, g, candidate.config, context):
                out[g] = candidate
        except InputError:  # e.g. a group size that does not divide the conv's 240 inputs
            out[g] = table.space.keep
    return out


def _compressed(inputs, assignment: dict[Group, Candidate], name: str, runtime=None):
    from weightwise.models import load_model

    model = load_model(inputs.model)
    compress_(model, dataclasses.replace(plan_of(assignment, name), runtime=runtime), inputs.calib)
    return model


def family_options(model, options):
    """`options` for `model`'s family: a transducer runs at fp32 only (its loader refuses other
    precisions), so its dense baseline and the runtime of its compressed variants are fp32."""
    if model.info.family == "transducer" and options.runtime_precision != "fp32":
        return dataclasses.replace(options, runtime_precision="fp32")
    return options


def run(inputs, options, tmp: Path, progress) -> tuple[dict[str, Any], Any]:
    from weightwise.models import load_model

    clock, timings = time.perf_counter(), {}

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step], clock = now - clock, now

    model = load_model(inputs.model)
    options = family_options(model, options)
    groups = weight_groups(model.network)
    planned = options.space.planned(groups)
    runtime = load_model(inputs.model, precision=options.runtime_precision)
    reference = build_reference(
        model,
        runtime,
        inputs.calib,
        [m for g in groups for m in g.modules],
        options.decoding,
        _bar(progress, len(inputs.calib)),
        options.encoder_windows,
    )
    if inputs.tune is None:  # before the sweep, not after it (--tune's words are checked with the inputs)
        check_calib_words(reference, inputs.budget, inputs.calib.source, normalizer_for(model))
    lap("reference_s")
    context = CompressContext(model, inputs.calib, cache_hessians=True)
    entries, cache_path = _sweep(model, reference, groups, planned, options.space, inputs, options, context, progress)
    lap("sensitivity_s")
    table = Table(reference.trace, tuple(groups), tuple(planned), options.space, entries, options.runtime)

    memo = EncoderMemo(options.encoder_memo_signatures) if options.encoder_memo_signatures else None
    loop = _closed_loop(model, inputs, options, memo)

    def measure(assignment, runtime=None) -> Delta:
        with all_applied(model, assignment, context):
            with runtime_applied(model, runtime) if runtime else contextlib.nullcontext():
                with _bound(memo, model, assignment) as encoder:  # outputs reused while the encoder is unchanged
                    if inputs.tune is None:  # against the float model's transcripts: its errors are 0
                        errors = pseudo_errors(model, inputs.calib, reference, options.decoding, encoder)
                        return errors.delta(None, loop["z"])
                    errors = utterance_errors(model, inputs.tune, options.decoding, encoder)
                    return errors.delta(loop["float_errors"], loop["z"], inputs.tune_parts)

    assignment, planner, table = _plan(table, inputs, options, measure)
    planner["closed_loop"] = {k: v for k, v in loop.items() if k != "float_errors"}
    planner["closed_loop"]["encoder_reuse"] = memo.stats() if memo is not None else None
    lap("plan_s")
    plan = dataclasses.replace(plan_of(assignment, "optimized"), runtime=table.runtime)
    final = _compressed(inputs, assignment, "optimized", table.runtime)
    save_compressed(final, tmp / "model")
    if save_plan_state(final, plan, tmp / STATE_FILE) is not None:  # --plan DIR/plan.json needs no audio
        plan = dataclasses.replace(plan, state=STATE_FILE)
    lap("compress_s")
    base = _evaluate(runtime, inputs, options, progress, f"baseline-{options.runtime_precision}", tmp)
    opt = _evaluate(at_runtime(final, options), inputs, options, progress, "optimized", tmp)
    uniform = [
        {
            "name": options.runtime_precision,
            **_measured(base),
            "predicted": _predicted(predict(table, {g: options.space.keep for g in groups}, inputs.device)),
        }
    ]
    for label in options.space.uniform if options.uniform else ():
        chosen = _uniform(table, options.space.by_label(label), model, context)
        variant = at_runtime(_compressed(inputs, chosen, label), options)
        measured = _evaluate(variant, inputs, options, progress, f"uniform-{label}", tmp)
        scored = all(table.entry(g, c) is not None for g, c in chosen.items())
        predicted = _predicted(predict(table, chosen, inputs.device)) if scored else None
        uniform.append({"name": label, **_measured(measured), "predicted": predicted})
    lap("evaluate_s")
    from weightwise.optimize.report import build_summary

    summary = build_summary(inputs, options, table, assignment, planner, base, opt, uniform, timings, cache_path)
    if plan.state is not None:
        summary["plan"]["state"] = plan.state
    return summary, plan
