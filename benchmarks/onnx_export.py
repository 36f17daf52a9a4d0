"""ONNX export vs our torch runtime on the same harness: tiny.en fp32 export vs our fp32 (identical
transcripts, WER, RTF ratio) and a plan's export vs the same plan in our runtime (WER difference),
all systems interleaved utterance by utterance in one process (`warm_up_and_time`), same features,
search and normalizer. Writes one JSON per run.

Our runtime runs the plan two ways: packed (torch's int4/int8 kernels with bf16 activations, what
`eval --plan` runs) and simulated (the codes dequantized, fp32 activations); the export computes as
the simulated model does (MatMulNBits with fp32 activations), so it is compared with both.

    python benchmarks/onnx_export.py --model whisper-tiny.en --plan benchmarks/plans/int4-group64.json \
        --limit 100 --threads 2 --work /tmp/onnx-exports --out benchmarks/results/runtime/onnx_tiny.json
"""

from __future__ import annotations

import time
from pathlib import Path

from weightwise.audio import SAMPLE_RATE
from weightwise.compress.loading import load_model_with_plan
from weightwise.data import iter_audio, load_manifest
from weightwise.decode import transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.runtime import host, set_threads, versions
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.evaluate.wer import word_errors
from weightwise.export import export_onnx
from weightwise.models.onnx_engine import load_onnx_export
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser, run_header


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = benchmark_parser(__doc__, limit=100)
    parser.add_argument("--plan", required=True, help="the low-bit plan exported beside fp32 (e.g. int4 group 64)")
    parser.add_argument("--work", required=True, help="folder for the two export folders (~180 MB for tiny.en)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    work = Path(args.work)
    exports, export_s = {}, {}
    for label, plan in (("fp32", None), ("plan", args.plan)):
        start = time.perf_counter()
        exports[label] = export_onnx(args.model, work / f"{Path(args.model).name}-{label}", plan=plan)
        export_s[label] = time.perf_counter() - start
    models = {
        "torch fp32": load_model_with_plan(args.model),
        "onnxruntime fp32": load_onnx_export(exports["fp32"].out_dir, args.threads),
        "torch plan (packed)": load_model_with_plan(args.model, plan=args.plan),  # what `eval --plan` runs
        "torch plan (simulated)": load_model_with_plan(args.model, plan=args.plan, pack=False),  # fp32 activations
        "onnxruntime plan": load_onnx_export(exports["plan"].out_dir, args.threads),
    }
    items = list(iter_audio(load_manifest(args.data).head(args.limit)))
    audio_s = sum(len(s) for _, s in items) / SAMPLE_RATE
    load_before = _loadavg()
    timed = warm_up_and_time({n: lambda s, _id, m=m: transcribe(m, s).text for n, m in models.items()}, items)
    load_after = _loadavg()
    refs = [normalize(u.text) for u, _ in items]
    texts = {name: [t.output for t in timed if t.runner == name] for name in models}
    rows = {}
    for name in models:
        calls = [t for t in timed if t.runner == name]
        rows[name] = {
            "rtf": sum(t.compute_s for t in calls) / audio_s,
            "wer": word_errors(refs, [normalize(text) for text in texts[name]]).wer,
        }

    def same(a: str, b: str) -> float:
        return sum(x == y for x, y in zip(texts[a], texts[b], strict=True)) / len(items)

    onnx_plan, torch_plan = rows["onnxruntime plan"], rows["torch plan (packed)"]
    summary = {
        "fp32_identical_fraction": same("onnxruntime fp32", "torch fp32"),
        "fp32_identical_normalized_fraction": sum(
            normalize(x) == normalize(y) for x, y in zip(texts["onnxruntime fp32"], texts["torch fp32"], strict=True)
        )
        / len(items),
        "fp32_rtf_ratio_onnx_over_torch": rows["onnxruntime fp32"]["rtf"] / rows["torch fp32"]["rtf"],
        "plan_identical_fraction": same("onnxruntime plan", "torch plan (packed)"),
        "plan_wer_diff_points_onnx_minus_torch": 100
        * (rows["onnxruntime plan"]["wer"] - rows["torch plan (packed)"]["wer"]),
        "plan_rtf_ratio_onnx_over_torch": onnx_plan["rtf"] / torch_plan["rtf"],
        "plan_identical_fraction_vs_simulated": same("onnxruntime plan", "torch plan (simulated)"),
        "plan_wer_diff_points_onnx_minus_simulated": 100 * (onnx_plan["wer"] - rows["torch plan (simulated)"]["wer"]),
    }
    for name, row in rows.items():
        print(f"{name:22s} WER {100 * row['wer']:.2f}%  RTF {row['rtf']:.4f}")
    for key, value in summary.items():
        print(f"{key}: {value:.4f}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    write_json_atomic(
        Path(args.out),
        {
            **run_header(args, len(items), audio_s),
            "systems": rows,
            "summary": summary,
            "export_s": export_s,
            "export_files_nbytes": {label: result.files_nbytes for label, result in exports.items()},
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "host": host(),
            "versions": versions(),
            "transcripts": {name: dict(zip((u.id for u, _ in items), texts[name], strict=True)) for name in models},
        },
    )


if __name__ == "__main__":
    main()
