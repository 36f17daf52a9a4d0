#!/usr/bin/env bash
# Acceptance of issue 14 (Whisper half): streaming tiny.en (LocalAgreement-2, 1 s chunks) vs offline
# on LibriSpeech test-other mini, 1 thread; then the VAD gate on audio with pauses.
# Writes benchmarks/results/stream/*.json; the README's streaming section is read from these files.
# LIMIT=N runs the first N utterances (default: all 100).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${WEIGHTWISE_SHARED_DATA:-../shared/data}/speech
OUT=benchmarks/results/stream
LIMIT=${LIMIT:-100}
mkdir -p "$OUT"
weightwise stream --model whisper-tiny.en --data "$DATA/librispeech_test_other_mini/manifest.jsonl" \
  --limit "$LIMIT" --chunk-ms 1000 --threads 1 --device jetson-orin-nano \
  --out "$OUT/tiny.en_test_other_1000ms_align.json"
python benchmarks/stream_vad.py --out "$OUT/vad_pauses.json"
