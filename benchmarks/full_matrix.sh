#!/usr/bin/env bash
# Issue 5 acceptance matrix: whisper-tiny.en and whisper-base x fp32/fp16/int8 x (clean + white,
# babble, recorded field noise x 20/10/5/0 dB SNR) on librispeech_test_other_mini (100 utterances),
# plus faster-whisper int8/float32 peer rows, 2 threads. Resumable: rerun to continue.
# Wall time per cell is in each row (`wall_s`); the run's start/end go to full_matrix.log.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
OUT=benchmarks/results/bench/full_matrix.jsonl
LIMIT=${LIMIT:-100}
echo "start $(date -u +%FT%TZ) limit=$LIMIT" >> benchmarks/results/bench/full_matrix.log
weightwise bench --model whisper-tiny.en,whisper-base --precision fp32,fp16,int8 \
  --noise white,babble,benchmarks/noise/recorded/manifest.jsonl --snr 20,10,5,0 \
  --data "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --limit "$LIMIT" \
  --device jetson-orin-nano --threads 2 --out "$OUT"
echo "end $(date -u +%FT%TZ)" >> benchmarks/results/bench/full_matrix.log
weightwise report "$OUT" -o benchmarks/results/bench/full_matrix.html
weightwise report "$OUT" -o benchmarks/results/bench/full_matrix.md
python benchmarks/paper2_findings.py "$OUT" --snr-min 5 --snr-max 10 -o benchmarks/results/bench/full_matrix_paper2_findings.md
