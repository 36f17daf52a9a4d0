#!/usr/bin/env bash
# Acceptance of the foundation issue: weightwise fp32 vs faster-whisper float32 on the same
# CTranslate2 weights and audio (greedy, no timestamps, no conditioning), 2 threads.
# Writes benchmarks/results/wer_<model>_<set>.json; the README table is read from these files.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${WEIGHTWISE_SHARED_DATA:-../shared/data}/speech
OUT=benchmarks/results
run() {  # model set limit
  weightwise eval --model "$1" --data "$DATA/$2/manifest.jsonl" --limit "$3" --precision fp32 \
    --threads 2 --peer faster-whisper --out "$OUT/wer_${1}_${2}.json"
}
run whisper-tiny.en librispeech_test_other_mini 100
run whisper-tiny.en arctic_kathleen 100
run whisper-base librispeech_test_other_mini 100
python benchmarks/summarize.py "$OUT"/wer_*.json
