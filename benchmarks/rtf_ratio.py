"""RTF of weightwise fp32/int8 vs faster-whisper int8/float32, measured side by side in one run.

Systems run interleaved, utterance by utterance, with the order rotated each utterance, so a
burst of foreign load on this shared 2-core machine hits every system alike. Timed: from 16 kHz
samples in memory to text (features included), after one untimed warm-up per system.

    python benchmarks/rtf_ratio.py --model whisper-tiny.en --limit 30 --threads 2 \
        --out benchmarks/results/rtf_ratio_tiny.json
"""

from __future__ import annotations

from pathlib import Path

from weightwise.audio import SAMPLE_RATE
from weightwise.data import iter_audio, load_manifest
from weightwise.decode import transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.peer import faster_whisper_runner
from weightwise.evaluate.runtime import set_threads, versions
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.evaluate.wer import word_errors
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser


def systems(model_name: str, threads: int) -> dict:
    """name -> callable(samples) -> text."""
    runners = {}
    for precision in ("fp32", "int8"):
        model = load_model(model_name, precision=precision)
        runners[f"weightwise {precision}"] = lambda s, m=model: transcribe(m, s).text
    model_dir = Path(model.info.source)
    for compute_type in ("int8", "float32"):
        runners[f"faster-whisper {compute_type}"] = faster_whisper_runner(model_dir, compute_type, threads)
    return runners


def measure(runners: dict, items: list) -> dict:
    """Warm every system up, then time each utterance through all of them, rotating the order."""
    timed = warm_up_and_time({name: lambda samples, _id, run=run: run(samples) for name, run in runners.items()}, items)
    compute_s = dict.fromkeys(runners, 0.0)
    hyps = {name: [] for name in runners}
    for call in timed:
        compute_s[call.runner] += call.compute_s
        hyps[call.runner].append(call.output)
    return {"compute_s": compute_s, "hyps": hyps}


def main() -> None:
    parser = benchmark_parser(__doc__, limit=30)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    manifest = load_manifest(args.data).head(args.limit)
    items = list(iter_audio(manifest))
    audio_s = sum(len(s) for _, s in items) / SAMPLE_RATE
    measured = measure(systems(args.model, args.threads), items)
    refs = [normalize(u.text) for u, _ in items]
    rows = {}
    for name, seconds in measured["compute_s"].items():
        wer = word_errors(refs, [normalize(h) for h in measured["hyps"][name]]).wer
        rows[name] = {"rtf": seconds / audio_s, "compute_s": seconds, "wer": wer}
    base = rows["faster-whisper int8"]["rtf"]
    for row in rows.values():
        row["rtf_vs_faster_whisper_int8"] = row["rtf"] / base
    write_json_atomic(
        Path(args.out),
        {
            "model": args.model,
            "data": args.data,
            "n_utterances": len(items),
            "audio_s": audio_s,
            "threads": args.threads,
            "systems": rows,
            "versions": versions(),
        },
    )
    print(f"{args.model}, {len(items)} utterances, {audio_s:.1f} s audio, {args.threads} threads")
    for name, row in rows.items():
        print(
            f"{name:24s} RTF {row['rtf']:.4f}  x{row['rtf_vs_faster_whisper_int8']:.2f} of fw-int8  "
            f"WER {100 * row['wer']:.2f}%"
        )


if __name__ == "__main__":
    main()
