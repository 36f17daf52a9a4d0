#!/usr/bin/env bash
# Where does int8's noise robustness go? whisper-tiny.en at fp32, at --precision int8 (torch dynamic
# int8: int8 weights per channel AND each Linear input quantized to int8 with one scale per tensor),
# and with plan int8-channel (the same int8 weights per channel, activations kept in float), on
# clean speech and white/babble noise at 10 and 5 dB; 50 test-other utterances, no peers.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
OUT=benchmarks/results/bench/int8_weight_only.jsonl
weightwise bench --model whisper-tiny.en --precision fp32,int8 --plan benchmarks/plans/int8-channel.json \
  --noise white,babble --snr 10,5 \
  --data "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --limit "${LIMIT:-50}" \
  --device jetson-orin-nano --threads 2 --peers '' --out "$OUT"
weightwise report "$OUT" -o benchmarks/results/bench/int8_weight_only.md
