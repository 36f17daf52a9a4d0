"""`optimize`: profile -> sensitivity -> plan -> compress -> evaluate, written atomically to one folder.

    optimize("whisper-tiny.en", "jetson-orin-nano", 0.5, calib="calib/", eval_set="test/", out="opt/")

Every input is checked before any work starts (budget, device file, manifests, the output folder);
the outputs are written in a temporary folder beside `out` and renamed into place at the end, so a
failure leaves nothing half-written in `out`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightwise.compress.candidates import CandidateSpace
from weightwise.compress.planner import check_budget
from weightwise.data import Manifest, load_manifest, sample_manifest
from weightwise.decode import DecodingOptions
from weightwise.errors import InputError
from weightwise.executors import ExecutorConfig
from weightwise.models.runtime import RuntimeSettings
from weightwise.optimize.calibrate import check_words
from weightwise.profile.device import DeviceSpec, load_device

SUMMARY_KIND = "weightwise-optimize"
# openai-whisper's default sample length (n_text_ctx // 2): bounds the cost of a candidate that
# breaks the model into a repetition loop; never reached by a normal <= 30 s window
DECODING = DecodingOptions(max_new_tokens=224)
ProgressFactory = Callable[[int], Callable[[Iterable, str], Iterable]]


@dataclass(frozen=True)
class OptimizeOptions:
    """How `optimize` works (the inputs themselves are `optimize`'s arguments)."""

    space: CandidateSpace = field(default_factory=CandidateSpace)
    limit_calib: int | None = None
    limit_eval: int | None = None
    # transcribed tuning audio for the closed loop (real WER increase instead of pseudo-WER on the
    # calibration audio; see `weightwise.optimize.calibrate`); never the evaluation audio
    # several manifests (a list) are concatenated in order
    tune: Manifest | str | Path | Sequence[Manifest | str | Path] | None = None
    limit_tune: int | None = None
    cache_dir: str | None = None  # sensitivity cache root; default: the model cache
    rounds: int = 4  # plan -> measure -> refit rounds on the calibration audio
    # a plan holds the budget when its measured increase's upper bound at this one-sided confidence
    # does (paired over the closed loop's utterances; 0.5: the point value, the rule before)
    confidence: float = 0.9
    bins: int = 2000  # WER-budget units of the exact solver
    uniform: bool = True  # also measure the uniform baselines on the evaluation audio
    decoding: DecodingOptions = DECODING
    runtime_precision: str = "fp16"  # the dense baseline, and how compressed models run (activations)
    encoder_windows: int | None = 8  # encoder groups' KL on the first N calibration windows (None: all)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where sensitivity candidates run
    # runtime settings the plan carries (kv-cache / activation precision, encoder context), simulated in
    # every decode of the plan; `fused_attention` is applied to the baselines' profiles too
    runtime: RuntimeSettings | None = None
    # the closed loop's encoder outputs are reused for this many encoder states (LRU, at most
    # `encoder_memo.DEFAULT_MAX_BYTES` in all; 0: every plan re-runs the encoder on every item)
    encoder_memo_signatures: int = 2


@dataclass(frozen=True)
class OptimizeResult:
    out_dir: Path
    plan: Any  # weightwise.compress.Plan
    summary: dict[str, Any]


@dataclass(frozen=True)
class Inputs:
    model: str
    device: DeviceSpec
    budget: float
    calib: Manifest
    eval_set: Manifest
    out: Path
    tune: Manifest | None = None
    # (source, utterance ids) of each --tune manifest when several were joined (per-part increases)
    tune_parts: tuple[tuple[str, frozenset[str]], ...] = ()


def _manifest(value: Manifest | str | Path | Sequence, limit: int | None, flag: str) -> Manifest:
    if isinstance(value, list | tuple):  # several manifests, concatenated (ids must not repeat)
        parts = [_manifest(v, None, flag) for v in value]
        try:
            manifest = Manifest.concat(parts)
        except InputError as err:
            raise InputError(f"{flag} {err}") from None
    else:
        manifest = _open(value)
    if limit is not None:
        manifest = manifest.head(limit)
    if not len(manifest):
        raise InputError(f"{flag} {manifest.source}: no utterances (no audio to run)")
    manifest.check_files()
    return manifest


def _open(value: Manifest | str | Path) -> Manifest:
    """One manifest: as given, the bundled "samples", or read from a file or folder."""
    if isinstance(value, Manifest):
        return value
    return sample_manifest() if str(value) == "samples" else load_manifest(value)


def check_out_dir(out: Path) -> None:
    """`out` may be absent, an empty folder, or an earlier optimize output (replaced at the end)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            kind = json.loads((out / "summary.json").read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind != SUMMARY_KIND:
            raise InputError(
                f"--out {out}: a non-empty folder that is not an earlier optimize output; choose a new or empty folder"
            )


def validate(
    model: str, device: str | Path, wer_budget: float, calib, eval_set, out, options: OptimizeOptions
) -> Inputs:
    """Check every input before any work: one-line InputError naming the flag on the first problem."""
    budget = check_budget(wer_budget)
    spec = load_device(device)
    calib_manifest = _manifest(calib, options.limit_calib, "--calib")
    eval_manifest = _manifest(eval_set, options.limit_eval, "--eval")
    if not eval_manifest.has_text:
        raise InputError(f"--eval {eval_manifest.source}: every utterance needs a transcript to measure WER")
    tune = None if options.tune is None else _manifest(options.tune, options.limit_tune, "--tune")
    if tune is not None and not tune.has_text:
        raise InputError(f"--tune {tune.source}: every utterance needs a transcript (the closed loop measures WER)")
    if tune is not None:
        check_words([u.text or "" for u in tune], budget, f"--tune {tune.source}")
    parts = _parts(options.tune, tune)
    for flag, seen in (("--calib", calib_manifest), ("--tune", tune)):
        overlap = {u.id for u in seen or ()} & {u.id for u in eval_manifest}
        if overlap:
            raise InputError(
                f"{flag} and --eval share utterance {min(overlap)!r}: evaluate on audio the optimizer never saw"
            )
    if options.runtime_precision not in ("fp32", "fp16", "bf16"):
        raise InputError(f"runtime precision must be fp32, fp16 or bf16, got {options.runtime_precision!r}")
    if options.encoder_windows is not None and options.encoder_windows < 1:
        raise InputError(f"encoder_windows must be >= 1 or None, got {options.encoder_windows}")
    if not 0.5 <= options.confidence < 1:
        raise InputError(f"--confidence must be in [0.5, 1), got {options.confidence:g}")
    if options.rounds < 1 or options.bins < 10:
        raise InputError(f"rounds must be >= 1 and bins >= 10, got {options.rounds} and {options.bins}")
    if options.encoder_memo_signatures < 0:
        raise InputError(f"encoder_memo_signatures must be >= 0, got {options.encoder_memo_signatures}")
    out_dir = Path(out)
    check_out_dir(out_dir)
    return Inputs(str(model), spec, budget, calib_manifest, eval_manifest, out_dir, tune, parts)


def _parts(value, joined: Manifest | None) -> tuple[tuple[str, frozenset[str]], ...]:
    """(source, ids kept in `joined`) of each manifest of a list `value`; () for a single one."""
    if joined is None or not isinstance(value, list | tuple) or len(value) < 2:
        return ()
    kept = {u.id for u in joined}
    parts = (_open(v) for v in value)
    return tuple((m.source, frozenset(u.id for u in m if u.id in kept)) for m in parts)


def optimize(
    model: str,
    device: str | Path,
    wer_budget: float,
    calib,
    eval_set,
    out: str | Path,
    options: OptimizeOptions = OptimizeOptions(),
    progress: ProgressFactory | None = None,
) -> OptimizeResult:
    """Find the plan with the least modeled energy on `device` whose WER increase stays within
    `wer_budget` points (0.5 = +0.5 percentage points over the fp16 baseline), compress, evaluate.

    Args:
        model: a registered name (e.g. "whisper-tiny.en") or a checkpoint path. A transducer
            ("transducer-fsdd") is scored by its joiner's KL along its own greedy alignment,
            runs at fp32 and is measured on its vocabulary words (digit-level WER).
        device: bundled device profile name or a TOML file.
        wer_budget: allowed WER increase in percentage points.
        calib: calibration audio (a manifest path, a Manifest or "samples"); no transcripts needed.
        eval_set: transcribed audio the optimizer never saw (WER and energy are measured there).
        out: output folder: plan.json, model/, summary.json, report.html, profiles/, sensitivity.json.
        options: candidate space, limits, cache, solver settings.
        progress: factory `progress(total)(iterable, label)` for progress bars (e.g. the CLI's).

    Example:
        >>> optimize("whisper-tiny.en", "jetson-orin-nano", 0.5, "calib/", "test/", "opt/")  # doctest: +SKIP
    """
    started = time.perf_counter()
    inputs = validate(model, device, wer_budget, calib, eval_set, out, options)
    tmp = inputs.out.with_name(f".{inputs.out.name}.optimize-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        from weightwise.optimize.run import run

        summary, plan = run(inputs, options, tmp, progress)
        summary["wall_s"] = time.perf_counter() - started
        from weightwise.optimize.report import write_outputs

        write_outputs(tmp, summary)
        _replace(tmp, inputs.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return OptimizeResult(inputs.out, plan, summary)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an earlier optimize output there is removed."""
    old = out.with_name(f".{out.name}.optimize-old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["DECODING", "OptimizeOptions", "OptimizeResult", "check_out_dir", "optimize", "validate"]
