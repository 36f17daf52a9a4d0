#!/usr/bin/env bash
# Issue 11: `weightwise optimize` end to end, the acceptance run. whisper-tiny.en on $DEVICE
# (jetson-orin-nano; mcu-npu for the second plan), WER budget +0.5 points over fp16.
# Calibration: the first 8 of librispeech_train_clean_100_untranscribed (no
# transcripts used); evaluation: all 100 utterances of librispeech_test_other_mini (unseen).
# Candidates (benchmarks/optimize/candidates.json): per weight group fp16 / int8 / RTN int4-g64 /
# GPTQ int4-g64; plan runtime settings (simulated in the decode, priced as one group on the
# calibration audio): int8 key/value cache, int8 activations, encoder context "auto". Attention is
# assumed fused (score matrices on-chip) for the fp16 baseline, the uniform baselines and the plan alike.
# Then arctic_kathleen (first $LIMIT_ARCTIC utterances, unseen) is measured with the plan file alone
# (`weightwise profile --plan`, which measures WER too) next to dense fp16.
# The sensitivity table is cached (resumable): a rerun after a kill skips the finished entries.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
DEVICE=${DEVICE:-jetson-orin-nano}
OUT=${OUT:-benchmarks/results/optimize/whisper-tiny.en-$DEVICE}
CACHE=${CACHE:-benchmarks/results/optimize/cache}
THREADS=${THREADS:-2}
# the first 8 utterances of librispeech_train_clean_100_untranscribed (a file, so that the plan's
# GPTQ codes can be rebuilt from it: `--plan ... --calib` with the same manifest)
CALIB_MANIFEST=${CALIB_MANIFEST:-benchmarks/calib/librispeech_train_clean_100_first8.jsonl}
start=$(date +%s)
weightwise optimize --model whisper-tiny.en --device "$DEVICE" --wer-budget "${BUDGET:-0.5}" \
  --calib "$CALIB_MANIFEST" \
  --eval "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --limit-eval "${LIMIT_EVAL:-100}" \
  --candidates benchmarks/optimize/candidates.json --kv-precision int8 --activation-precision int8 \
  --encoder-context auto --fused-attention ${NO_UNIFORM:+--no-uniform} \
  --sensitivity-cache "$CACHE" --threads "$THREADS" --out "$OUT"
echo "optimize: $(( $(date +%s) - start )) s wall (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
cp "$OUT/plan.json" "benchmarks/plans/whisper-tiny.en-$DEVICE.json"
if [ -n "${LIMIT_ARCTIC:-100}" ] && [ "${LIMIT_ARCTIC:-100}" != 0 ]; then
  ARCTIC="$SHARED/speech/arctic_kathleen/manifest.jsonl"
  weightwise profile --model whisper-tiny.en --precision fp16 --device "$DEVICE" --fused-attention \
    --data "$ARCTIC" --limit "${LIMIT_ARCTIC:-100}" --threads "$THREADS" --out "$OUT/arctic-fp16.json"
  CALIB=()
  if grep -q '"gptq"' "$OUT/plan.json"; then CALIB=(--calib "$CALIB_MANIFEST"); fi
  weightwise profile --model whisper-tiny.en --device "$DEVICE" --plan "$OUT/plan.json" "${CALIB[@]}" \
    --data "$ARCTIC" --limit "${LIMIT_ARCTIC:-100}" --threads "$THREADS" --out "$OUT/arctic-plan.json"
fi
