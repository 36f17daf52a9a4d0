"""Milliseconds per 30 s window of the Whisper encoder: fp32, and `--precision int8` built both ways
this CPU could run it (`WEIGHTWISE_INT8_GEMM`): "fp32" = encoder Linears on fbgemm's int8 GEMM with
per-row activation scales (every CPU), "amx-bf16" = weight-only int8 with bf16 GEMMs on the codes
and bf16 attention (what a CPU with AMX gets). The variants run interleaved, repeat by repeat, on
one real window (the first test-other mini utterance, zero-padded to 30 s); the fastest call of
each is reported (on a shared machine a median mostly measures other processes).

    python benchmarks/runtime_encoder.py --model whisper-tiny.en --out benchmarks/results/runtime/encoder_amx.json
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from weightwise.data import iter_audio, load_manifest
from weightwise.decode.features import log_mel_spectrogram, split_windows
from weightwise.evaluate.runtime import set_threads, versions
from weightwise.models import load_model
from weightwise.models.int8 import INT8_GEMM_ENV, bf16_matrix_unit
from weightwise.outputs import write_json_atomic

from _common import benchmark_parser


def int8_model(name: str, gemm: str):
    """`--precision int8` as built when `WEIGHTWISE_INT8_GEMM=gemm`."""
    before = os.environ.get(INT8_GEMM_ENV)
    os.environ[INT8_GEMM_ENV] = gemm
    bf16_matrix_unit.cache_clear()
    try:
        return load_model(name, precision="int8")
    finally:
        if before is None:
            os.environ.pop(INT8_GEMM_ENV)
        else:
            os.environ[INT8_GEMM_ENV] = before


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], limit=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    set_threads(args.threads)
    _utt, audio = next(iter_audio(load_manifest(args.data).head(1)))
    features = split_windows(log_mel_spectrogram(audio))[0].features[None]
    models = {
        "fp32": load_model(args.model),
        "int8, fbgemm per-row activations": int8_model(args.model, "fp32"),
        "int8, AMX bf16 GEMMs + bf16 attention": int8_model(args.model, "amx-bf16"),
    }
    # the int8 layers read the choice at call time too: pin it to each model's while it runs
    gemm = {name: ("amx-bf16" if "AMX" in name else "fp32") for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(args.repeats + 1):  # the first round warms up
            for name, model in models.items():
                os.environ[INT8_GEMM_ENV] = gemm[name]
                bf16_matrix_unit.cache_clear()
                start = time.perf_counter()
                model.network.model.encoder(features)
                times[name].append(1e3 * (time.perf_counter() - start))
    os.environ.pop(INT8_GEMM_ENV)
    bf16_matrix_unit.cache_clear()
    best = {name: min(t[1:]) for name, t in times.items()}
    for name, ms in best.items():
        print(f"{name:40s} {ms:8.1f} ms per window", flush=True)
    capabilities = {k: v for k, v in torch.cpu.get_capabilities().items() if k.startswith(("amx", "avx512_bf16"))}
    result = {
        "model": args.model,
        "threads": args.threads,
        "repeats": args.repeats,
        "statistic": "fastest of the repeats, variants interleaved",
        "ms_per_window": best,
        "cpu_capabilities": capabilities,
        "versions": versions(),
    }
    write_json_atomic(Path(args.out), result)


if __name__ == "__main__":
    main()
