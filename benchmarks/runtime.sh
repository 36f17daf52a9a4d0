#!/usr/bin/env bash
# Issue 13's measurements, as run (results in benchmarks/results/runtime/; see its README.md).
# 1. kernels by rows per call; 2. int8 in noise vs faster-whisper int8 (interleaved, one process);
# 3. the int4 group-64 plan packed vs fp32 (interleaved), and 4. peak RSS + weights in RAM of fp32
# and of the packed plan, one `weightwise eval` process each.
# 5-7 (second pass): the acceptance runs, every 5-20 dB cell of the full matrix's noises
# (white, babble, recorded) for tiny.en and base, and the committed Orin Nano plan vs fp32.
set -euo pipefail
cd "$(dirname "$0")"
OUT=results/runtime
DATA=../../shared/data/speech/librispeech_test_other_mini/manifest.jsonl
NOISES=white,babble,noise/recorded/manifest.jsonl
python runtime_kernels.py --threads 1 --out "$OUT/kernels.json"
python runtime_int8.py --model whisper-tiny.en --limit 25 --noise babble,white --snr 10 --out "$OUT/int8_tiny.json"
python runtime_int8.py --model whisper-base --limit 10 --noise babble --snr 10 --out "$OUT/int8_base.json"
python runtime_packed.py --model whisper-tiny.en --plan plans/int4-group64.json --limit 8 --skip-simulated \
  --out "$OUT/packed_int4-group64_tiny.json"
weightwise eval --model whisper-tiny.en --data "$DATA" --limit 10 --threads 2 --out "$OUT/eval_tiny_fp32.json"
weightwise eval --model whisper-tiny.en --plan plans/int4-group64.json --data "$DATA" --limit 10 --threads 2 \
  --out "$OUT/eval_tiny_int4-group64.json"
python runtime_int8.py --model whisper-tiny.en --limit "${TINY_LIMIT:-40}" --noise "$NOISES" --snr 20,10,5 --fp32-clean-only \
  --out "$OUT/int8_tiny_matrix.json"
python runtime_packed.py --model whisper-tiny.en --plan plans/whisper-tiny.en-jetson-orin-nano.json --limit 10 \
  --skip-simulated --out "$OUT/packed_orin-plan_tiny.json"
python runtime_int8.py --model whisper-base --limit "${BASE_LIMIT:-25}" --noise "$NOISES" --snr 20,10,5 --fp32-clean-only \
  --out "$OUT/int8_base_matrix.json"
