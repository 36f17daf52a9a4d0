"""The closed loop's encoder memo, off vs on, on a small `optimize` run (whisper-tiny.en).

    python benchmarks/encoder_memo.py --tune-items 8 --out /tmp/encmemo.json
    python benchmarks/encoder_memo.py --per-item 10 --out /tmp/encmemo-items.json  # hit vs fresh only

Runs the same small optimize twice (`encoder_memo_signatures` 0, then 2; the sensitivity cache
shared, so the second run skips the sweep) and writes, per run, the encoder's real forward calls
(all steps; a global module hook), the loop's `planner.closed_loop.encoder_reuse`, the step
timings and whether the two runs chose the same plan with the same measured points. The space is
the end-to-end test's (decoder layer 3's FFN and the tied projection, int8 / int4), plus int8 on
encoder layer 3's fc1 with `--encoder-group` (plans then differ in an encoder group: misses).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from weightwise import CandidateSpace, OptimizeOptions, optimize, set_threads
from weightwise.compress.candidates import Candidate
from weightwise.compress.configs import Quant
from weightwise.models.runtime import RuntimeSettings

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"


def space(encoder_group: bool) -> CandidateSpace:
    groups = ["re:model\\.decoder\\.layers\\.3\\.fc\\d", "model.decoder.embed_tokens"]
    return CandidateSpace(
        (
            Candidate("int8", Quant(bits=8)),
            Candidate("int4-g64", Quant(bits=4, granularity="group", group_size=64), ("re:.*decoder.*fc1",)),
        ),
        groups=(*groups, *(["model.encoder.layers.3.fc1"] if encoder_group else [])),
        uniform=("int8",),
    )


def run_once(args, signatures: int, cache: Path, out: Path) -> dict:
    calls = {"n": 0}

    def count(module, _inputs, _output):
        if type(module).__name__ == "WhisperEncoder":
            calls["n"] += 1

    options = OptimizeOptions(
        space=space(args.encoder_group),
        limit_calib=2,
        limit_eval=1,
        tune=SPEECH / "arctic_kathleen" / "manifest.jsonl",
        limit_tune=args.tune_items,
        cache_dir=str(cache),
        rounds=args.rounds,
        uniform=False,
        runtime=RuntimeSettings(kv_precision="int8", fused_attention=True),
        encoder_memo_signatures=signatures,
    )
    handle = torch.nn.modules.module.register_module_forward_hook(count)
    started = time.perf_counter()
    try:
        result = optimize(
            "whisper-tiny.en",
            "jetson-orin-nano",
            args.budget,
            SPEECH / "librispeech_train_clean_100_untranscribed" / "manifest.jsonl",
            SPEECH / "librispeech_test_other_mini" / "manifest.jsonl",
            out,
            options,
        )
    finally:
        handle.remove()
    planner = result.summary["planner"]
    return {
        "encoder_memo_signatures": signatures,
        "encoder_calls": calls["n"],
        "encoder_reuse": planner["closed_loop"]["encoder_reuse"],
        "timings_s": result.summary["timings_s"],
        "wall_s": time.perf_counter() - started,
        "points": [(p["name"], p["pseudo_wer_points"], p["upper_points"]) for p in planner["calibration_points"]],
        "runtime_measured": planner["runtime"]["measured"],
        "choices": {c["group"]: c["candidate"] for c in result.summary["choices"]},
    }


def per_item(n: int) -> dict:
    """Decode time of arctic_kathleen utterances 101..100+n by the float model: every encoder
    output from the memo (hits) vs the encoder run afresh, interleaved twice."""
    from weightwise.data import Manifest, load_manifest
    from weightwise.models import load_model
    from weightwise.optimize.calibrate import utterance_errors
    from weightwise.optimize.encoder_memo import EncoderMemo
    from weightwise.optimize.pipeline import DECODING

    model = load_model("whisper-tiny.en")
    full = load_manifest(SPEECH / "arctic_kathleen" / "manifest.jsonl")
    items = Manifest(full.utterances[100 : 100 + n], full.source)
    memo, times = EncoderMemo(), {"hit_s": [], "fresh_s": []}
    with memo.bound(model, {}) as encoder:
        first = utterance_errors(model, items, DECODING, encoder)
    for _ in range(2):
        with memo.bound(model, {}) as encoder:
            started = time.perf_counter()
            hit = utterance_errors(model, items, DECODING, encoder)
            times["hit_s"].append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh = utterance_errors(model, items, DECODING)
        times["fresh_s"].append(time.perf_counter() - started)
        assert hit == fresh == first
    return {"items": n, **times, "encoder_reuse": memo.stats()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-items", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--encoder-group", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-item", type=int, default=0, help="time N items' decodes only (hit vs fresh)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.per_item:
        result = per_item(args.per_item)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{result['items']} items: hit {result['hit_s']} s, fresh {result['fresh_s']} s")
        return 0
    with tempfile.TemporaryDirectory(prefix="encmemo-") as tmp:
        runs = [run_once(args, n, Path(tmp) / "cache", Path(tmp) / f"opt{n}") for n in (0, 2)]
    same = all(runs[0][k] == runs[1][k] for k in ("points", "runtime_measured", "choices"))
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "same_results": same}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in runs:
        reuse = r["encoder_reuse"] or {}
        print(
            f"memo {r['encoder_memo_signatures']}: encoder calls {r['encoder_calls']}, loop hits {reuse.get('hits')} "
            f"misses {reuse.get('misses')}, plan_s {r['timings_s']['plan_s']:.1f}, wall_s {r['wall_s']:.1f}"
        )
    print(f"same plan and measured points: {same}", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
