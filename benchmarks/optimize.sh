#!/usr/bin/env bash
# Issue 11: `weightwise optimize` end to end, the acceptance run. whisper-tiny.en on $DEVICE
# (jetson-orin-nano; mcu-npu for the second plan), WER budget +0.5 points over fp16.
# Calibration: the first 64 utterances of librispeech_train_clean_100_untranscribed (no
# transcripts used); evaluation: the first $LIMIT_EVAL utterances of librispeech_test_other_mini
# (unseen; the acceptance size is all 100: LIMIT_EVAL=100, about 2 h on a shared 2-core machine).
# Candidates (benchmarks/optimize/candidates.json): per decoder/projection weight group fp16 / int8 /
# RTN int4-g64 / GPTQ int4-g64, and for the tied projection screened variants (`screen`: a whitened
# rank-128/192 int8/int4 preview picks 512 or 1,024 tokens whose logits are exact); per encoder layer
# linear fp16 / int8 only (an encoder entry re-runs the encoder and costs ~4x a decoder entry, and
# 4 bits there cost +2.4 points: the candidates' "groups" limit them to the decoder);
# plan runtime settings (simulated in the decode, priced as one group on the tuning audio; $RUNTIME below). Attention is
# assumed fused (score matrices on-chip) for the fp16 baseline, the uniform baselines and the plan alike.
# Then arctic_kathleen (first $LIMIT_ARCTIC utterances, unseen) is measured with the plan file alone
# (`weightwise profile --plan`, which measures WER too; a gptq plan names its calibration manifest)
# next to dense fp16, both at fp16 like the optimizer's evaluation.
# The sensitivity table is cached (resumable): a rerun after a kill skips the finished entries.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
DEVICE=${DEVICE:-jetson-orin-nano}
OUT=${OUT:-benchmarks/results/optimize/whisper-tiny.en-$DEVICE}
CACHE=${CACHE:-benchmarks/results/optimize/cache}
THREADS=${THREADS:-2}
# the first 64 utterances of librispeech_train_clean_100_untranscribed (a file: the plan names it, so
# `--plan` alone rebuilds its GPTQ codes). The closed-loop check needs one changed word to cost well
# under the budget: 4 utterances (~150 words, 0.67 points a word) are refused for a 0.5 budget; the
# run recorded in benchmarks/results/optimize/ used them (CALIB_MANIFEST=..._first4.jsonl) before
# that check existed, and no weight plan passed (see the README).
CALIB_MANIFEST=${CALIB_MANIFEST:-benchmarks/calib/librispeech_train_clean_100_first64.jsonl}
# The closed loop (plan -> measure -> refit) measures each plan's real WER increase on transcribed
# tuning audio (never the evaluation audio). Optional, off by default: arctic_kathleen utterances
# 101-500 (the evaluation below uses arctic's first 100, so the two never meet), mixed with babble
# (derived from train-clean-100) at 12 dB SNR and joined in pairs, written by
# benchmarks/noisy_manifest.py under $WORK: TUNE=benchmarks/calib/arctic_kathleen_tune400.jsonl.
# Why off: decoded alone, those 200 pairs (one speaker) measured the tune11k plan at +0.00 with a
# standard error of 0.49 on 3,594 words, the silver set below +0.34 with 0.20 on 7,945 words;
# joined, the pairs diluted the silver set's evidence and the plan (+0.84 on test-other mini) passed
# (benchmarks/results/optimize/tuning-parts/README.md). Why noisy at all: on clean tuning audio a
# plan with 4-bit decoder linears cost nothing and then +1.0 on test-other. Pseudo-WER on the
# calibration audio (no --tune at all) counts changed words, not errors: uniform int8 changed 0.50
# points of words there and cost +0.21 on test-other, so a 0.5 budget refused plans that held it.
WORK=${WORK:-/tmp/weightwise-optimize}
TUNE=${TUNE-}
TUNE_NOISE=${TUNE_NOISE-babble}
TUNE_SNR_DB=${TUNE_SNR_DB:-12}
# sentences joined in pairs (200 items): arctic's are 3.0 s at the median, test-other's 6.6 s, and
# the decoder's errors grow with the context it carries. Each plan is accepted when the one-sided
# upper bound of its paired WER increase (per item, vs the float model) at $CONFIDENCE fits the budget.
# Each measurement decodes all the tuning items (the encoder is ~40% of an item's time); outputs are reused
# between measurements whose encoder is the same (summary.json: planner.closed_loop.encoder_reuse).
TUNE_JOIN=${TUNE_JOIN:-2}
if [ -n "$TUNE" ] && [ -n "$TUNE_NOISE" ]; then
  python benchmarks/noisy_manifest.py --data "$TUNE" --noise "$TUNE_NOISE" --snr-db "$TUNE_SNR_DB" \
    --join "$TUNE_JOIN" --out "$WORK/tune-$TUNE_NOISE$TUNE_SNR_DB-join$TUNE_JOIN"
  TUNE="$WORK/tune-$TUNE_NOISE$TUNE_SNR_DB-join$TUNE_JOIN/manifest.jsonl"
fi
# The tuning audio by default: the silver transcripts (whisper-base fp32 greedy,
# benchmarks/silver_manifest.py) of all 251 train-clean-100 utterances (251 speakers, 7,860 words;
# 14 s at the median), mixed with recorded background noise (speech_commands_background; not babble,
# which is built from these very utterances) at 15 dB. tiny.en fp32 against these transcripts
# (first 40): 15.2% clean, 16.7% at 15 dB, 20.9% at 10 dB. The calibration utterances (the first
# 64) are among them: calibration fits GPTQ and the KL table without transcripts, tuning checks WER.
# With TUNE set too, both are joined (summary.json then gives each one's increase apart).
TUNE_SILVER=${TUNE_SILVER-benchmarks/calib/librispeech_train_clean_100_silver_base.jsonl}
TUNE_SILVER_NOISE=${TUNE_SILVER_NOISE-$SHARED/noise/speech_commands_background/manifest.jsonl}
TUNE_SILVER_SNR_DB=${TUNE_SILVER_SNR_DB:-15}
TUNES=()
[ -n "$TUNE" ] && TUNES+=(--tune "$TUNE")
if [ -n "$TUNE_SILVER" ]; then
  python benchmarks/noisy_manifest.py --data "$TUNE_SILVER" --noise "$TUNE_SILVER_NOISE" \
    --snr-db "$TUNE_SILVER_SNR_DB" --out "$WORK/silver-recorded$TUNE_SILVER_SNR_DB"
  TUNES+=(--tune "$WORK/silver-recorded$TUNE_SILVER_SNR_DB/manifest.jsonl")
fi
# Runtime settings the planner may add: the int8 key/value cache and fused attention (scores on-chip,
# an energy-model setting that changes no number). int8 activations and encoder context "auto" were
# refused in both earlier runs (+0.47 each alone on the arctic pairs); each extra setting costs up to
# three more decodes of the tuning audio. RUNTIME="--kv-precision int8 --activation-precision int8
# --encoder-context auto --fused-attention" asks for all four.
RUNTIME=${RUNTIME:---kv-precision int8 --fused-attention}
start=$(date +%s)
weightwise optimize --model whisper-tiny.en --device "$DEVICE" --wer-budget "${BUDGET:-0.5}" \
  --calib "$CALIB_MANIFEST" \
  --eval "$SHARED/speech/librispeech_test_other_mini/manifest.jsonl" --limit-eval "${LIMIT_EVAL:-20}" --rounds "${ROUNDS:-5}" --confidence "${CONFIDENCE:-0.9}" \
  --candidates "${CANDIDATES:-benchmarks/optimize/candidates.json}" $RUNTIME \
  ${NO_UNIFORM:+--no-uniform} "${TUNES[@]}" \
  --sensitivity-cache "$CACHE" --threads "$THREADS" --out "$OUT"
echo "optimize: $(( $(date +%s) - start )) s wall (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
# the committed plan: its calibration manifest re-pointed relative to its new folder, and its
# calibrated state (GPTQ codes, screen factors) copied beside it, so `--plan` alone rebuilds the
# weights without the calibration audio (`make demo` runs without ../shared)
python - "$OUT/plan.json" "benchmarks/plans/whisper-tiny.en-$DEVICE.json" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1:]
plan = json.load(open(src))
if "calib" in plan:
    plan["calib"] = os.path.relpath(os.path.join(os.path.dirname(src), plan["calib"]), os.path.dirname(dst))
if "state" in plan:
    state = os.path.splitext(os.path.basename(dst))[0] + ".state.safetensors"
    shutil.copyfile(os.path.join(os.path.dirname(src), plan["state"]), os.path.join(os.path.dirname(dst), state))
    plan["state"] = state
open(dst, "w").write(json.dumps(plan, indent=2) + "\n")
PY
if [ -n "${LIMIT_ARCTIC:-20}" ] && [ "${LIMIT_ARCTIC:-20}" != 0 ]; then
  ARCTIC="$SHARED/speech/arctic_kathleen/manifest.jsonl"
  weightwise profile --model whisper-tiny.en --precision fp16 --device "$DEVICE" --fused-attention \
    --data "$ARCTIC" --limit "${LIMIT_ARCTIC:-20}" --threads "$THREADS" --out "$OUT/arctic-fp16.json"
  weightwise profile --model whisper-tiny.en --precision fp16 --device "$DEVICE" --plan "$OUT/plan.json" \
    --data "$ARCTIC" --limit "${LIMIT_ARCTIC:-20}" --threads "$THREADS" --out "$OUT/arctic-plan.json"
fi
