"""Where a compressed model leaves the float model's greedy path, and how close fp32 was to a tie there.

For each utterance the float model (fp32) decodes its first 30 s window greedily. Both models are then
teacher-forced on that token path (`compress.sensitivity.teacher_forced`, with greedy's suppression
masks), and at every step we take the **margin**: the chosen token's log-probability minus the best
other token's (nats; greedy's own choice, so fp32's margins are >= 0 up to kernel rounding). The
variant (`--precision`, default int8, and/or `--plan`) *flips* at the first step where its margin is
negative: greedy would leave fp32's path there and decode another continuation. A flip on a step where
fp32's own margin is a few hundredths of a nat is a near-tie that any small perturbation of the
weights tips; no per-layer choice can be said to cause it. The summary also gives how far the
variant moves the margins at all (median and 90th percentile of |variant - fp32| per step, up to a flip).

    python benchmarks/token_margins.py --limit 100 --threads 2 --out benchmarks/results/runtime/margins_tiny_int8.json
    python benchmarks/token_margins.py --rows 49 --out /tmp/row49.json   # one utterance (0-based row)
    python benchmarks/token_margins.py --int8-only model.decoder. --out d.json   # int8 on one part only
    python benchmarks/token_margins.py --precision fp32 --plan P.json --calib CALIB.jsonl --out g.json   # GPTQ plan
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch

from weightwise.compress.loading import load_model_with_plan
from weightwise.compress.sensitivity import teacher_forced
from weightwise.data import iter_audio, load_manifest
from weightwise.decode import transcribe
from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.decode.search import suppression_masks
from weightwise.decode.transcribe import run_encoder
from weightwise.evaluate.runtime import set_threads
from weightwise.models.precision import apply_precision
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser

#: a step whose fp32 margin is below this many nats counts as a near-tie in the summary
NEAR_TIE_NATS = 0.1


@dataclass(frozen=True)
class Flip:
    """The first step at which the variant's greedy choice differs from fp32's."""

    step: int
    fp32_token: str
    variant_token: str
    fp32_margin_nats: float  # fp32's margin for its own token there
    variant_margin_nats: float  # the variant's margin for fp32's token there (< 0)


@dataclass(frozen=True)
class UtteranceMargins:
    id: str
    fp32_text: str
    n_steps: int  # text tokens + end-of-text
    n_windows: int  # only the first window is compared
    min_fp32_margin_nats: float
    n_near_ties: int  # steps with fp32 margin < NEAR_TIE_NATS
    flip: Flip | None
    abs_shifts_nats: tuple[float, ...]  # |variant margin - fp32 margin| per step, up to the flip


def margins(logprobs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Per step: log p(chosen) - max over the other tokens of log p (logprobs: steps x vocab)."""
    picked = logprobs.gather(1, chosen[:, None])[:, 0]
    others = logprobs.scatter(1, chosen[:, None], float("-inf"))
    return picked - others.amax(1)


def _masked(model, logprobs: torch.Tensor) -> torch.Tensor:
    """The tokens greedy never emits set to -inf (`decode.search.suppression_masks`)."""
    mask, begin_mask = suppression_masks(model.tokens, logprobs.shape[1])
    out = logprobs.masked_fill(mask, float("-inf"))
    out[0] = out[0].masked_fill(begin_mask, float("-inf"))
    return out


def _path_logprobs(model, features: torch.Tensor, ids: torch.Tensor, n_steps: int) -> torch.Tensor:
    encoder_out = run_encoder(model, features.unsqueeze(0).to(model.dtype))
    return _masked(model, teacher_forced(model, ids, encoder_out.to(model.dtype), n_steps))


@torch.inference_mode()
def utterance_margins(base, variant, utt_id: str, audio) -> UtteranceMargins:
    """fp32's greedy path on the first window of `audio`, and where `variant` first leaves it."""
    out = transcribe(base, audio, file_id=utt_id)
    windows = split_windows(log_mel_spectrogram(audio, base.n_mels))
    text = list(out.tokens[: out.windows[0].n_tokens])
    chosen = torch.tensor(text + [base.tokens.eot])
    ids = torch.tensor([list(base.tokens.prompt) + text])
    variant_logprobs = _path_logprobs(variant, windows[0].features, ids, len(chosen))
    fp32 = margins(_path_logprobs(base, windows[0].features, ids, len(chosen)), chosen)
    var = margins(variant_logprobs, chosen)
    flip = None
    negative = (var < 0).nonzero()
    if len(negative):
        step = int(negative[0, 0])
        flip = Flip(
            step,
            base.tokenizer.decode([int(chosen[step])]),
            base.tokenizer.decode([int(variant_logprobs[step].argmax())]),
            float(fp32[step]),
            float(var[step]),
        )
    return UtteranceMargins(
        utt_id,
        out.text,
        len(chosen),
        len(out.windows),
        float(fp32.min()),
        int((fp32 < NEAR_TIE_NATS).sum()),
        flip,
        tuple(round(float(d), 4) for d in (var - fp32).abs()[: None if flip is None else flip.step + 1]),
    )


def summarize(rows: list[UtteranceMargins]) -> dict:
    """How many utterances flip, and how close fp32 was to a tie where they do."""
    flips = [r.flip for r in rows if r.flip is not None]
    steps = sum(r.n_steps for r in rows)
    shifts = sorted(d for r in rows for d in r.abs_shifts_nats)
    return {
        "n_utterances": len(rows),
        "n_flipped": len(flips),
        "n_steps": steps,
        "near_tie_nats": NEAR_TIE_NATS,
        "fp32_near_tie_step_fraction": sum(r.n_near_ties for r in rows) / max(steps, 1),
        "fp32_margin_at_flips_nats": sorted(f.fp32_margin_nats for f in flips),
        "median_fp32_margin_at_flips_nats": statistics.median(f.fp32_margin_nats for f in flips) if flips else None,
        "median_abs_shift_nats": statistics.median(shifts) if shifts else None,
        "p90_abs_shift_nats": shifts[int(0.9 * (len(shifts) - 1))] if shifts else None,
    }


def main() -> None:
    parser = benchmark_parser(__doc__, limit=100)
    parser.add_argument("--precision", default="int8", help="the variant's precision (default int8)")
    parser.add_argument("--plan", default=None, help="a plan applied to the variant")
    parser.add_argument("--calib", default=None, help="calibration audio manifest for the plan's gptq / csp rules")
    parser.add_argument(
        "--int8-only",
        default="",
        metavar="PREFIX",
        help="with --precision int8: quantize only the layers whose name starts with PREFIX (e.g. model.decoder.,"
        " proj_out), by --precision int8's own rules; the rest stay fp32",
    )
    parser.add_argument("--rows", default="", help="comma-separated 0-based manifest rows (default: all)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.int8_only and args.precision != "int8":  # before the slow loads
        parser.error("--int8-only needs --precision int8")
    set_threads(args.threads)
    base = load_model_with_plan(args.model)
    if args.int8_only:  # fp32 first, then int8 on the chosen part only
        variant = load_model_with_plan(args.model, plan=args.plan, calib=args.calib)
        apply_precision(variant.network, "int8", int8_only=args.int8_only)
    else:
        variant = load_model_with_plan(args.model, args.precision, plan=args.plan, calib=args.calib)
    wanted = {int(r) for r in args.rows.split(",") if r.strip()}
    manifest = load_manifest(args.data)
    n = max(wanted) + 1 if wanted else args.limit
    rows = []
    for index, (utt, audio) in enumerate(iter_audio(manifest.head(n))):
        if wanted and index not in wanted:
            continue
        row = utterance_margins(base, variant, utt.id, audio)
        rows.append(row)
        if row.flip is not None:
            f = row.flip
            print(
                f"row {index} {utt.id}: step {f.step} fp32 {f.fp32_token!r} (margin {f.fp32_margin_nats:.3f})"
                f" -> {f.variant_token!r} ({f.variant_margin_nats:.3f})",
                flush=True,
            )
    summary = summarize(rows)
    print(summary)
    header = {
        "model": args.model,
        "precision": args.precision,
        "int8_only": args.int8_only or None,
        "plan": args.plan,
        "calib": args.calib,
        "data": args.data,
    }
    write_json_atomic(args.out, {**header, "summary": summary, "utterances": [asdict(r) for r in rows]})


if __name__ == "__main__":
    main()
