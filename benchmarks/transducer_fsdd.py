"""Transducer acceptance on FSDD: WER on isolated test digits and on joined test-split digit strings,
streaming latency with real-time pacing, RTF, per-component invocations and energy (profiler),
parameters, and off-chip bytes per audio-second on a device.

    python benchmarks/transducer_fsdd.py --model transducer-fsdd --out benchmarks/results/transducer/fsdd.json
    python benchmarks/transducer_fsdd.py --model RUN/model --name base800 --strings 50 --out ...

WER here is digit-level (jiwer over the spoken words "zero" ... "nine"): `weightwise eval`'s Whisper
normalizer turns "one two three" into the single token "123", i.e. a whole-string error rate.
Latency: the file is fed in `--chunk-ms` pieces paced in real time (piece k arrives at its end in
the audio); a piece is processed when it has arrived and the previous one is done; a word's latency
= the time its chunk finished processing - the end of its digit clip in the string (strings whose
transcript is right only, so that words and clips pair up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import torch

from weightwise.audio import SAMPLE_RATE
from weightwise.data import Manifest, iter_audio, load_manifest
from weightwise.decode import DecodingOptions, transcribe
from weightwise.models import load_model
from weightwise.models.transducer import count_params
from weightwise.outputs import write_json_atomic
from weightwise.profile import load_device, profile
from weightwise.train.digits import DigitStrings, clips_by_split, make_timed_digit_string, write_digit_strings

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fsdd_digits" / "manifest.jsonl"
STRING_SEED = 1  # test strings: seed 1 (training draws its strings from train-split clips only)


def _wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer(refs, [h if h else "<empty>" for h in hyps])


def word_errors(refs: list[str], hyps: list[str]) -> dict:
    """Word counts, S/D/I and a 95% interval for the WER (percentile bootstrap over utterances)."""
    from scipy.stats import bootstrap

    counts = [jiwer.process_words(r, h if h else "<empty>") for r, h in zip(refs, hyps, strict=True)]
    errors = np.array([c.substitutions + c.deletions + c.insertions for c in counts], dtype=float)
    words = np.array([len(r.split()) for r in refs], dtype=float)
    interval = bootstrap(
        (errors, words),
        lambda e, w, axis: e.sum(axis=axis) / w.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=2000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    return {
        "n_words": int(words.sum()),
        "n_word_errors": int(errors.sum()),
        **{k: int(sum(getattr(c, k) for c in counts)) for k in ("substitutions", "deletions", "insertions")},
        "wer_ci95": [float(interval.low), float(interval.high)],
    }


def isolated(model, manifest: Manifest, beam_size: int = 1) -> dict:
    refs, hyps, compute_s, audio_s = [], [], 0.0, 0.0
    for utt, samples in iter_audio(manifest):
        began = time.perf_counter()
        hyps.append(transcribe(model, samples, DecodingOptions(beam_size=beam_size)).text)
        compute_s += time.perf_counter() - began
        refs.append(utt.text)
        audio_s += len(samples) / SAMPLE_RATE
    return {
        "n": len(refs),
        "wer": _wer(refs, hyps),
        **word_errors(refs, hyps),
        "rtf": compute_s / audio_s,
        "audio_s": audio_s,
    }


def paced(model, audio: np.ndarray, chunk_ms: float, beam_size: int = 1) -> tuple[str, list[float], float]:
    """Stream `audio` with real-time pacing; (text, confirm time of each word, compute seconds)."""
    stream, piece = model.create_stream(beam_size), int(chunk_ms * SAMPLE_RATE / 1000)
    free_at, confirmed, compute_s = 0.0, [], 0.0
    starts = list(range(0, len(audio), piece))
    for start in [*starts, None]:
        arrival = min(start + piece, len(audio)) / SAMPLE_RATE if start is not None else len(audio) / SAMPLE_RATE
        began = time.perf_counter()
        result = stream.accept_waveform(audio[start : start + piece]) if start is not None else stream.finish()
        spent = time.perf_counter() - began
        compute_s += spent
        free_at = max(arrival, free_at) + spent
        confirmed += [free_at] * (len(result.words) - len(confirmed))
    return result.text, confirmed, compute_s


def strings(model, clips, n: int, chunk_ms: float, spec: DigitStrings, noise=(), beam_size: int = 1) -> dict:
    refs, hyps, latencies, compute_s, audio_s = [], [], [], 0.0, 0.0
    for i in range(n):
        text, audio, ends = make_timed_digit_string(clips, spec, STRING_SEED * 1_000_003 + i, noise)
        hyp, confirmed, spent = paced(model, audio, chunk_ms, beam_size)
        refs.append(text)
        hyps.append(hyp)
        compute_s += spent
        audio_s += len(audio) / SAMPLE_RATE
        if hyp == text:
            latencies += [c - e for c, e in zip(confirmed, ends, strict=True)]
    return {
        "n": n,
        "wer": _wer(refs, hyps),
        **word_errors(refs, hyps),
        "string_error_rate": float(np.mean([r != h for r, h in zip(refs, hyps, strict=True)])),
        "rtf": compute_s / audio_s,
        "audio_s": audio_s,
        "chunk_ms": chunk_ms,
        "latency_median_s": statistics.median(latencies) if latencies else None,
        "latency_p90_s": float(np.percentile(latencies, 90)) if latencies else None,
        "n_latency_words": len(latencies),
    }


def energy(model, clips, n: int, device: str, beam_size: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_digit_strings(clips, DigitStrings(), n, STRING_SEED, tmp)
        result = profile(model, load_manifest(path), load_device(device), DecodingOptions(beam_size=beam_size))
    return {
        "device": device,
        "n_strings": n,
        "component_invocations_per_audio_s": result.component_invocations_per_audio_s,
        "component_energy_j_per_audio_s": result.component_energy_j_per_audio_s,
        "component_details": result.component_details,
        "energy_j_per_audio_s": result.energy_j_per_audio_s,
        "offchip_bytes_per_audio_s": result.offchip_bytes_per_audio_s,
        "baseline_offchip_bytes_per_audio_s": result.baseline_offchip_bytes_per_audio_s,
        "weight_offchip_bytes_per_audio_s_streaming": sum(t.bytes_read_per_audio_s for t in result.tensors),
        "model_bytes": result.model_bytes,
        "macs_per_audio_s": result.macs_per_audio_s,
        "decode": result.decode,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="transducer-fsdd", help="registered name or model folder")
    parser.add_argument("--name", default=None, help="label in the results (default: --model)")
    parser.add_argument("--data", default=str(FSDD))
    parser.add_argument("--strings", type=int, default=100, help="test-split digit strings")
    parser.add_argument("--noisy-strings", type=int, default=0, help="also this many strings over noise")
    parser.add_argument("--noise", default=str(FSDD.parents[2] / "noise"))
    parser.add_argument("--chunk-ms", type=float, default=320.0)
    parser.add_argument("--profile-strings", type=int, default=20, help="0 = no profile")
    parser.add_argument("--device", default="jetson-orin-nano")
    parser.add_argument("--isolated-every", type=int, default=1, help="every Nth test clip (1 = all 300)")
    parser.add_argument("--beam-size", type=int, default=1, help="1 = greedy; >1 = modified beam search")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    transcribe(model, np.zeros(SAMPLE_RATE // 2, dtype=np.float32))  # warm-up: lazy imports out of the timings
    manifest = load_manifest(args.data)
    test = Manifest(tuple(u for u in manifest if u.extra.get("split") == "test"), f"{args.data} split=test")
    subset = Manifest(test.utterances[:: args.isolated_every], test.source)
    clips = clips_by_split(test)["test"]
    load_start = os.getloadavg()  # 1/5/15-minute load beside the timings (the CPU is shared)
    row = {
        "name": args.name or args.model,
        "model": args.model,
        "config": model.config.to_dict(),
        "n_params": count_params(model.network),
        "beam_size": args.beam_size,
        "isolated_test": isolated(model, subset, args.beam_size),
        "strings_test": strings(model, clips, args.strings, args.chunk_ms, DigitStrings(), (), args.beam_size),
        "threads": args.threads,
        "loadavg_start": load_start,
        "command": " ".join(["python", *sys.argv]),
    }
    if args.noisy_strings:
        from weightwise.train.digits import load_noise_clips

        spec = DigitStrings(noise_prob=1.0)
        noise = load_noise_clips(args.noise)
        row["noisy_strings_test"] = strings(
            model, clips, args.noisy_strings, args.chunk_ms, spec, noise, args.beam_size
        )
    if args.profile_strings:
        row["profile"] = energy(model, clips, args.profile_strings, args.device, args.beam_size)
    row["loadavg_end"] = os.getloadavg()
    write_json_atomic(args.out, row)
    print(json.dumps({k: row[k] for k in ("name", "n_params", "isolated_test", "strings_test")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
