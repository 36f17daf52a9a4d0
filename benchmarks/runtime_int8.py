"""WER and RTF of our int8 (per-row activation scales) vs torch's per-tensor dynamic int8, our fp32
and faster-whisper int8, clean and in noise, all systems interleaved utterance by utterance.

One process, one model: every condition (clean, then each noise at each SNR) runs every system on
the same noisy samples (noise mixed outside the timer, seeded per utterance as `bench` does), with
the system order rotated per utterance so a burst of foreign load on this shared machine hits all
alike. RTF ratios are over all timed calls of a system (every condition it ran) against faster-whisper
int8's calls on the same conditions (`--fp32-clean-only`: our fp32 runs clean only, to save time).

    python benchmarks/runtime_int8.py --model whisper-tiny.en --limit 30 --noise babble,white \
        --snr 10 --out benchmarks/results/runtime/int8_tiny.json

The JSON is rewritten after every condition (a run cut short keeps what it finished) with each
cell's per-utterance word errors (to find utterances that loop), the load average at the start
and at the end, and `acceptance`: issue 13's bars (RTF <= faster-whisper int8's, clean WER within
+0.3 points of our fp32, every noisy cell within 2 points of faster-whisper int8) for
`--precision int8`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from weightwise.audio import SAMPLE_RATE
from weightwise.audio.noise import add_noise, cell_seed
from weightwise.data import iter_audio, load_manifest
from weightwise.data.noise import resolve_noise
from weightwise.decode import transcribe
from weightwise.evaluate.normalize import normalize
from weightwise.evaluate.peer import faster_whisper_runner
from weightwise.evaluate.runtime import set_threads, versions, weight_bytes_resident
from weightwise.evaluate.timing import warm_up_and_time
from weightwise.evaluate.wer import word_errors
from weightwise.models import load_model
from weightwise.models.int8 import quantize_int8
from weightwise.optimize.calibrate import paired_delta
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser


def per_tensor_int8(model_name: str):
    """torch's own dynamic int8 (one 7-bit activation scale per call): what `--precision int8` was."""
    model = load_model(model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        model.network = quantize_dynamic(model.network, {torch.nn.Linear: per_channel_dynamic_qconfig})
    return model


def int8_variant(model_name: str, rowwise: str):
    """int8 Linear layers, activations int8 per row where the layer name matches `rowwise`
    (a prefix; "" = everywhere, "-" = nowhere: weight-only int8 with float activations)."""
    model = load_model(model_name)
    model.network = quantize_int8(model.network, rowwise=lambda name: rowwise != "-" and name.startswith(rowwise))
    return model


VARIANTS = {
    "per-row": lambda m: int8_variant(m, ""),
    "encoder per-row + decoder weight-only": lambda m: int8_variant(m, "model.encoder."),
    "weight-only": lambda m: int8_variant(m, "-"),
    "per-tensor": per_tensor_int8,
}


def systems(model_name: str, threads: int, variants: list[str]) -> tuple[dict, dict]:
    """(name -> callable(samples) -> text, name -> weight bytes resident)."""
    models = {
        "weightwise fp32": load_model(model_name, precision="fp32"),
        "weightwise --precision int8": load_model(model_name, precision="int8"),
        **{f"int8 {v}": VARIANTS[v](model_name) for v in variants},
    }
    runners = {name: (lambda s, m=m: transcribe(m, s).text) for name, m in models.items()}
    resident = {name: weight_bytes_resident(m.network) for name, m in models.items()}
    model_dir = Path(models["weightwise fp32"].info.source)
    runners["faster-whisper int8"] = faster_whisper_runner(model_dir, "int8", threads)
    return runners, resident


def conditions(noises: list[str], snrs: list[float], clean: bool) -> list[tuple[str | None, float | None]]:
    return [(None, None)] * clean + [(n, s) for n in noises for s in snrs]


def _errors(counts) -> int:
    return counts.substitutions + counts.deletions + counts.insertions


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (/proc/loadavg), as `uptime` prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


OURS, FP32, PEER = "weightwise --precision int8", "weightwise fp32", "faster-whisper int8"


def clean_deltas(cells: list[dict], words: list[int]) -> dict:
    """Every system's clean WER minus our fp32's (points) with its paired standard error
    (`paired_delta`: per-utterance errors, same utterances), where both ran clean."""
    clean = {c["system"]: c["utterance_errors"] for c in cells if c["noise"] is None}
    if FP32 not in clean:
        return {}
    deltas = {n: paired_delta(e, clean[FP32], words, 0.0) for n, e in clean.items() if n != FP32}
    return {n: {"points": round(d.points, 3), "se_points": round(d.se_points, 3)} for n, d in deltas.items()}


def acceptance(cells: list[dict], rtf: dict, words: list[int]) -> dict:
    """Issue 13's bars for `--precision int8`, from the cells run so far (points = WER x 100)."""
    wer = {(c["system"], c["noise"], c["snr_db"]): 100 * c["wer"] for c in cells}
    noisy = sorted({(c["noise"], c["snr_db"]) for c in cells if c["noise"]}, key=str)
    gaps = {f"{n} {s:g} dB": round(wer[OURS, n, s] - wer[PEER, n, s], 2) for n, s in noisy}
    clean = round(wer[OURS, None, None] - wer[FP32, None, None], 2) if (FP32, None, None) in wer else None
    ratio = rtf.get(OURS, {}).get("rtf_vs_faster_whisper_int8")
    return {
        "rtf_vs_faster_whisper_int8": ratio,
        "rtf_ok": ratio is not None and ratio <= 1.0,
        "clean_wer_minus_fp32_points": clean,
        "clean_ok": clean is not None and clean <= 0.3,
        "clean_paired_delta_vs_fp32": clean_deltas(cells, words),
        "noisy_wer_minus_faster_whisper_int8_points": gaps,
        "noisy_ok": all(g <= 2.0 for g in gaps.values()),
    }


def main() -> None:
    parser = benchmark_parser(__doc__, limit=30)
    parser.add_argument("--noise", default="babble,white")
    parser.add_argument("--snr", default="10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--no-clean", action="store_true", help="noisy conditions only")
    parser.add_argument(
        "--fp32-clean-only", action="store_true", help="our fp32 runs clean only (the WER bar reference)"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    items = list(iter_audio(load_manifest(args.data).head(args.limit)))
    runners, resident = systems(args.model, args.threads, [v for v in args.variants.split(",") if v])
    noises = [n for n in args.noise.split(",") if n]
    run = {"model": args.model, "data": args.data, "n_utterances": len(items), "threads": args.threads}
    run["load_average_start"] = load_average()
    # per system: its compute, the audio it ran, and faster-whisper int8's compute on the same conditions
    cells, compute_s, audio_s, peer_s = [], dict.fromkeys(runners, 0.0), dict.fromkeys(runners, 0.0), {}
    for noise, snr in conditions(noises, [float(s) for s in args.snr.split(",")], not args.no_clean):
        active = {n: r for n, r in runners.items() if not (args.fp32_clean_only and noise and n == FP32)}
        source = resolve_noise(noise) if noise else None
        noisy = [
            (u, add_noise(s, source, snr, cell_seed(u.id, source.name, snr, args.seed)) if source else s)
            for u, s in items
        ]
        timed = warm_up_and_time({n: lambda s, _id, r=r: r(s) for n, r in active.items()}, noisy)
        refs = [normalize(u.text) for u, _ in noisy]
        condition_audio_s = sum(len(s) for _, s in noisy) / SAMPLE_RATE
        condition_peer_s = sum(t.compute_s for t in timed if t.runner == PEER)
        for name in active:
            calls = [t for t in timed if t.runner == name]
            compute_s[name] += sum(t.compute_s for t in calls)
            audio_s[name] += condition_audio_s
            peer_s[name] = peer_s.get(name, 0.0) + condition_peer_s
            hyps = [normalize(t.output) for t in calls]
            wer = word_errors(refs, hyps).wer
            errors = [_errors(word_errors([r], [h])) for r, h in zip(refs, hyps, strict=True)]
            label = source.name if source else None
            cells.append({"system": name, "noise": label, "snr_db": snr, "wer": wer, "utterance_errors": errors})
            cells[-1]["load_average_after"] = load_average()
            print(f"{label or 'clean':8s} {snr or '':>4} {name:48s} WER {100 * wer:6.2f}%", flush=True)
        rtf = {
            n: {"rtf": s / audio_s[n], "rtf_vs_faster_whisper_int8": s / peer_s[n], "timed_audio_s": audio_s[n]}
            for n, s in compute_s.items()
            if n in peer_s
        }
        run |= {"load_average_end": load_average(), "timed_audio_s": audio_s[PEER], "cells": cells, "rtf": rtf}
        words = [len(r.split()) for r in refs]
        run |= {"acceptance": acceptance(cells, rtf, words), "weight_bytes_resident": resident, "versions": versions()}
        write_json_atomic(Path(args.out), run)
    for name, row in run["rtf"].items():
        print(f"{name:48s} RTF {row['rtf']:.4f}  x{row['rtf_vs_faster_whisper_int8']:.2f} of faster-whisper int8")
    print(f"acceptance: {run['acceptance']}  (load average {run['load_average_start']} -> {run['load_average_end']})")


if __name__ == "__main__":
    main()
