#!/usr/bin/env bash
# Issue 11 items 2-4: `weightwise optimize` end to end. whisper-tiny.en on jetson-orin-nano, WER
# budget +0.5 points over fp16; calibration: the first 20 utterances of
# librispeech_train_clean_100_untranscribed (no transcripts used); evaluation: the first 50
# utterances of librispeech_test_other_mini. Then the sensitivity check against real WER
# (benchmarks/sensitivity_validation.py: Spearman rank correlation between a candidate's KL and
# the WER it adds on test-other utterances 51-70, which neither step above saw).
# The sensitivity table is cached (resumable): a rerun after a kill skips the finished entries.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
DEVICE=${DEVICE:-jetson-orin-nano}
OUT=${OUT:-benchmarks/results/optimize/whisper-tiny.en-$DEVICE}
CACHE=${CACHE:-benchmarks/results/optimize/cache}
start=$(date +%s)
weightwise optimize --model whisper-tiny.en --device "$DEVICE" --wer-budget "${BUDGET:-0.5}" \
  --calib "$SHARED/speech/librispeech_train_clean_100_untranscribed/manifest.jsonl" --limit-calib "${LIMIT_CALIB:-20}" \
  --eval "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --limit-eval "${LIMIT_EVAL:-50}" \
  --sensitivity-cache "$CACHE" --threads "${THREADS:-2}" --out "$OUT"
echo "optimize: $(( $(date +%s) - start )) s wall" >&2
python benchmarks/sensitivity_validation.py --summary "$OUT/summary.json" \
  --data "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --skip 50 --limit 20 \
  --threads "${THREADS:-2}" --out "$OUT/sensitivity_validation.json"
