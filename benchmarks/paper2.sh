#!/usr/bin/env bash
# Paper 2's design on our data (MISSION.md §2): Whisper tiny/base x FP32/FP16/INT8 on clean speech,
# white noise at 7.5 dB SNR (paper: about 6-9 dB), babble and a real recording (running tap) at the
# same SNR, with faster-whisper peer rows. Resumable: rerun to continue. Then the report + screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
OUT=benchmarks/results/bench/paper2.jsonl
LIMIT=${LIMIT:-50}
weightwise bench --model whisper-tiny.en,whisper-base --precision fp32,fp16,int8 \
  --noise "white,babble,$SHARED/noise/speech_commands_background/audio/running_tap.flac" --snr 7.5 \
  --data "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --limit "$LIMIT" \
  --device jetson-orin-nano --threads 2 --out "$OUT"
weightwise report "$OUT" -o benchmarks/results/bench/paper2.html
weightwise report "$OUT" -o benchmarks/results/bench/paper2.md
if command -v chromium >/dev/null; then
  bash benchmarks/screenshot_report.sh benchmarks/results/bench/paper2.html docs/report_paper2.png
fi
python benchmarks/paper2_findings.py "$OUT" --snr-min 7.5 --snr-max 7.5 -o benchmarks/results/bench/paper2_findings.md
