"""A plan's model on packed low-bit kernels vs the same plan simulated in float vs fp32: RTF (all
three interleaved utterance by utterance in one process), WER, and weights resident in RAM next to
the bytes the plan stores. Peak RSS needs one process per model: `runtime_packed.sh` runs
`weightwise eval` for that.

    python benchmarks/runtime_packed.py --model whisper-tiny.en --plan benchmarks/plans/int4-group64.json \
        --limit 30 --out benchmarks/results/runtime/packed_int4-group64_tiny.json
"""

from __future__ import annotations

from pathlib import Path

from weightwise.audio import SAMPLE_RATE
from weightwise.compress.loading import load_model_with_plan
from weightwise.compress.share import unique_storage
from weightwise.data import iter_audio, load_manifest
from weightwise.decode import transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.runtime import set_threads, versions, weight_bytes_resident
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.evaluate.wer import word_errors
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser, run_header


def main() -> None:
    parser = benchmark_parser(__doc__, limit=30)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--skip-simulated", action="store_true", help="time fp32 and packed only")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    models = {"fp32": load_model_with_plan(args.model)}
    if not args.skip_simulated:
        models["plan simulated"] = load_model_with_plan(args.model, plan=args.plan, pack=False)
    models["plan packed"] = load_model_with_plan(args.model, plan=args.plan)
    items = list(iter_audio(load_manifest(args.data).head(args.limit)))
    audio_s = sum(len(s) for _, s in items) / SAMPLE_RATE
    timed = warm_up_and_time({n: lambda s, _id, m=m: transcribe(m, s).text for n, m in models.items()}, items)
    refs = [normalize(u.text) for u, _ in items]
    rows = {}
    for name, model in models.items():
        calls = [t for t in timed if t.runner == name]
        rows[name] = {
            "rtf": sum(t.compute_s for t in calls) / audio_s,
            "wer": word_errors(refs, [normalize(t.output) for t in calls]).wer,
            "weight_bytes_resident": weight_bytes_resident(model.network),
            "weight_bytes_stored": unique_storage(model.network)["unique_bytes"],
        }
    texts = {name: [t.output for t in timed if t.runner == name] for name in models}
    simulated = texts.get("plan simulated")
    same = None if simulated is None else sum(a == b for a, b in zip(simulated, texts["plan packed"], strict=True))
    for name, row in rows.items():
        row["rtf_vs_fp32"] = row["rtf"] / rows["fp32"]["rtf"]
        row["resident_vs_stored"] = row["weight_bytes_resident"] / row["weight_bytes_stored"]
        print(
            f"{name:15s} RTF {row['rtf']:.4f} x{row['rtf_vs_fp32']:.2f} of fp32  WER {100 * row['wer']:.2f}%  "
            f"weights {row['weight_bytes_resident'] / 2**20:.1f} MiB in RAM, {row['weight_bytes_stored'] / 2**20:.1f} "
            f"MiB stored (x{row['resident_vs_stored']:.2f})"
        )
    if same is not None:
        print(f"packed and simulated give the same text on {same}/{len(items)} utterances")
    write_json_atomic(
        Path(args.out),
        {
            **run_header(args, len(items), audio_s),
            "systems": rows,
            "same_text_packed_vs_simulated": same,
            "load_average_start": load_start,
            "load_average_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "versions": versions(),
        },
    )


if __name__ == "__main__":
    main()
