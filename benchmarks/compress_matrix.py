"""Issue 4 acceptance: WER of whisper-tiny.en under each plan in benchmarks/plans/, on test-other mini.

Each plan's result is its own JSON under --out-dir (written atomically); a rerun skips plans whose
result exists, so an interrupted run resumes without losing work. Calibration audio (for CSP)
needs no transcripts.

    python benchmarks/compress_matrix.py --limit 100 --out-dir benchmarks/results/compress
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from weightwise.compress import Plan, compress_, unique_storage
from weightwise.data import load_manifest
from weightwise.decode import DecodingOptions
from weightwise.evaluate import evaluate
from weightwise.evaluate.runtime import set_threads
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic

from _common import SHARED_SPEECH, benchmark_parser

HERE = Path(__file__).resolve().parent
# openai-whisper's default sample length (n_text_ctx // 2): never reached by a normal <= 30 s
# window, it bounds the cost of a plan that breaks the model into a repetition loop
OPTIONS = DecodingOptions(max_new_tokens=224)


def run_plan(model_name: str, plan_path: Path | None, manifest, calib) -> dict:
    model = load_model(model_name)
    start = time.perf_counter()
    if plan_path is not None:
        compress_(model, Plan.from_json(plan_path), calib)
    compress_s = time.perf_counter() - start
    result = evaluate(model, manifest, OPTIONS)
    sizes = unique_storage(model.network)
    return {
        "plan": plan_path.stem if plan_path else "fp32",
        "wer": result.wer,
        "rtf": result.rtf,
        "compress_s": compress_s,
        "max_new_tokens": OPTIONS.max_new_tokens,
        **sizes,
        "n_utterances": result.n_utterances,
        "utterances": [{"id": u.id, "hyp": u.hyp} for u in result.utterances],
    }


def main() -> None:
    parser = benchmark_parser(__doc__, limit=100)
    calib = SHARED_SPEECH / "librispeech_train_clean_100_untranscribed" / "manifest.jsonl"
    parser.add_argument("--calib", default=str(calib))
    parser.add_argument("--calib-limit", type=int, default=16)
    parser.add_argument("--plans", default="*", help="glob over benchmarks/plans/*.json stems")
    parser.add_argument("--out-dir", default=str(HERE / "results" / "compress"))
    args = parser.parse_args()
    set_threads(args.threads)
    manifest = load_manifest(args.data).head(args.limit)
    calib = load_manifest(args.calib).head(args.calib_limit)
    out = Path(args.out_dir)
    jobs = [None] + sorted((HERE / "plans").glob(f"{args.plans}.json"))
    for plan_path in jobs:
        target = out / f"{plan_path.stem if plan_path else 'fp32'}.json"
        if target.exists():
            continue  # finished in an earlier run
        row = run_plan(args.model, plan_path, manifest, calib)
        write_json_atomic(target, row)
        print(
            f"{row['plan']:26s} WER {100 * row['wer']:6.2f}%  {row['unique_bytes'] / 1e6:7.2f} MB  "
            f"compress {row['compress_s']:.0f} s",
            flush=True,
        )
    print_table(out)


def print_table(out: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    base = next((r for r in rows if r["plan"] == "fp32"), None)
    print("| plan | WER % | vs fp32 (pts) | unique params | stored MB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        delta = f"{100 * (r['wer'] - base['wer']):+.2f}" if base else ""
        print(
            f"| {r['plan']} | {100 * r['wer']:.2f} | {delta} | {r['unique_params']:,} | {r['unique_bytes'] / 1e6:.2f} |"
        )


if __name__ == "__main__":
    main()
