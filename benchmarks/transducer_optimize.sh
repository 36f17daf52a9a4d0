#!/usr/bin/env bash
# Issue 14 item 4: `weightwise optimize` on the shipped FSDD transducer (transducer-fsdd), at a WER
# budget of +$BUDGET points over its fp32 baseline, on jetson-orin-nano and mcu-npu.
# Calibration: $N_CALIB digit strings joined from TRAIN-split clips (no transcripts; seed 2);
# evaluation: the first $N_EVAL test-split strings of benchmarks/transducer_fsdd.py (seed 1).
# Candidates (benchmarks/optimize/transducer_candidates.json): every weight group fp16 (keep) /
# int8 / int4-g32 / int4 per channel. The sensitivity table is cached in $WORK/cache and shared by
# the two devices (it is device-independent). model/ (rebuilt by plan.json) is not kept.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/weightwise-transducer-optimize}
OUT=${OUT:-benchmarks/results/transducer/optimize}
BUDGET=${BUDGET:-1.0}
THREADS=${THREADS:-1}
N_CALIB=${N_CALIB:-60}
N_EVAL=${N_EVAL:-100}
[ -f "$WORK/eval/manifest.jsonl" ] || python benchmarks/transducer_optimize_data.py --calib "$N_CALIB" --eval "$N_EVAL" --out "$WORK"
for DEVICE in ${DEVICES:-jetson-orin-nano mcu-npu}; do
  start=$(date +%s)
  weightwise optimize --model transducer-fsdd --device "$DEVICE" --wer-budget "$BUDGET" \
    --calib "$WORK/calib/manifest.jsonl" --eval "$WORK/eval/manifest.jsonl" \
    --candidates benchmarks/optimize/transducer_candidates.json --sensitivity-cache "$WORK/cache" \
    --threads "$THREADS" --out "$OUT/$DEVICE"
  echo "optimize $DEVICE: $(( $(date +%s) - start )) s wall (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  rm -rf "$OUT/$DEVICE/model"
done
