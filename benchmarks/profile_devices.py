"""Issue 3 acceptance: whisper-tiny.en over test-other mini, fp32/fp16/int8, on every device profile.

Traces each precision once on the real decode, then models energy, placement (knapsack vs
streaming) and the roofline on every bundled device. Writes one summary JSON, full profiles for
jetson-orin-nano and mcu-npu, and their plots.

    python benchmarks/profile_devices.py --limit 100 --out-dir benchmarks/results/profile
"""

from __future__ import annotations

from pathlib import Path

from weightwise.data import load_manifest
from weightwise.evaluate.evaluate import score
from weightwise.evaluate.runtime import set_threads, versions
from weightwise.models import load_model
from weightwise.outputs import write_json_atomic
from weightwise.profile import analyze, available_devices, load_device, trace_manifest
from weightwise.report.plots import plot_profile

from _common import benchmark_parser

DETAILED = ("jetson-orin-nano", "mcu-npu")


def summary_row(p) -> dict:
    return {
        "energy_j_per_audio_s": p.energy_j_per_audio_s,
        "dram_j_per_audio_s": p.dram_j_per_audio_s,
        "onchip_j_per_audio_s": p.onchip_j_per_audio_s,
        "compute_j_per_audio_s": p.compute_j_per_audio_s,
        "baseline_energy_j_per_audio_s": p.baseline_energy_j_per_audio_s,
        "offchip_bytes_per_audio_s": p.offchip_bytes_per_audio_s,
        "baseline_offchip_bytes_per_audio_s": p.baseline_offchip_bytes_per_audio_s,
        "onchip_bytes_used": p.onchip_bytes_used,
        "model_bytes": p.model_bytes,
        "components": p.components,
        "component_energy_j_per_audio_s": p.component_energy_j_per_audio_s,
        "component_offchip_bytes_per_audio_s": p.component_offchip_bytes_per_audio_s,
        "kv_dtype": p.kv_dtype,
        "onchip_activation_bytes": p.onchip_activation_bytes,
        "roofline": p.roofline,
        "wer": p.wer,
    }


def main() -> None:
    parser = benchmark_parser(__doc__, limit=100)
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--out-dir", default="benchmarks/results/profile")
    args = parser.parse_args()
    set_threads(args.threads)
    out = Path(args.out_dir)
    manifest = load_manifest(args.data).head(args.limit)
    summary = {
        "model": args.model,
        "data": args.data,
        "n_utterances": len(manifest),
        "rows": {},
        "versions": versions(),
    }
    for precision in args.precisions.split(","):
        trace, results, _ = trace_manifest(load_model(args.model, precision=precision), manifest)
        counts = score(results)
        for device_name in available_devices():
            p = analyze(trace, load_device(device_name), manifest.source, counts.wer if counts else None)
            summary["rows"][f"{precision}/{device_name}"] = summary_row(p)
            if device_name in DETAILED:
                p.save(out / f"{args.model}_{precision}_{device_name}.json")
                plot_profile(p, out / f"{args.model}_{precision}_{device_name}.png")
        print(f"{precision}: traced {trace.audio_s:.1f} s, {trace.n_tokens} tokens, WER {counts.wer:.4f}")
    write_json_atomic(out / f"summary_{args.model}.json", summary)
    print_summary(summary)


def print_summary(summary: dict) -> None:
    print(
        "| precision | device | mJ/audio-s | vs fp32 | off-chip MB/audio-s | streaming MB/audio-s | "
        "encoder | decoder | tok emb/proj | KV cache | activations | roofline RTF |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = summary["rows"]
    for key, r in rows.items():
        precision, device = key.split("/")
        ref = rows.get(f"fp32/{device}")
        c = r["components"]
        print(
            f"| {precision} | {device} | {1e3 * r['energy_j_per_audio_s']:.2f} | "
            f"{r['energy_j_per_audio_s'] / ref['energy_j_per_audio_s']:.2f} | "
            f"{r['offchip_bytes_per_audio_s'] / 1e6:.1f} | {r['baseline_offchip_bytes_per_audio_s'] / 1e6:.1f} | "
            f"{100 * c.get('encoder', 0):.0f}% | {100 * c.get('decoder', 0):.0f}% | "
            f"{100 * c.get('token_embedding_projection', 0):.0f}% | {100 * c.get('kv_cache', 0):.0f}% | "
            f"{100 * c.get('activations', 0):.0f}% | {r['roofline']['rtf_lower_bound']:.4f} |"
        )


if __name__ == "__main__":
    main()
