#!/usr/bin/env bash
# Train the FSDD digits transducers (the shipped one + sharing / recurrent variants) with the recipe,
# then measure each one: bash benchmarks/transducer_fsdd.sh [RUNS_DIR]
# Every training is 1 thread; a killed run continues when the same line is run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${WEIGHTWISE_SHARED_DATA:-../shared/data}
FSDD=$SHARED/speech/fsdd_digits/manifest.jsonl
RUNS=${1:-runs/transducer}
OUT=benchmarks/results/transducer
train() {  # name steps [weightwise train-transducer flags...]
  local name=$1 steps=$2; shift 2
  weightwise train-transducer --data "$FSDD" --out "$RUNS/$name" --steps "$steps" --noise "$SHARED/noise" --threads 1 "$@"
}
# the shipped model (src/weightwise/models/transducer/weights/fsdd is $RUNS/fsdd_ft4/model): 1200 steps,
# then fine-tuning with more repeated digits (see weights/fsdd/RECIPE.md)
train fsdd1200 1200
train fsdd_ft 400 --repeat-prob 0.3 --lr 5e-4 --warmup-steps 20 --init "$RUNS/fsdd1200/model"
train fsdd_ft2 800 --repeat-prob 0.4 --lr 1e-3 --warmup-steps 20 --init "$RUNS/fsdd_ft/model"
train fsdd_ft3 1500 --repeat-prob 0.3 --lr 1e-3 --warmup-steps 20 --init "$RUNS/fsdd_ft2/model"
train fsdd_ft4 1500 --repeat-prob 0.3 --lr 5e-4 --warmup-steps 20 --init "$RUNS/fsdd_ft3/model"
# parameters vs WER: the same recipe at 800 steps, plain and with paper 4's sharing
train base800 800
train repeat800 800 --model-config '{"n_unique_layers": 1}'
train lowrank800 800 --model-config '{"lowrank_rank": 24, "shared_factor": "in"}'
# paper 3: early time reduction (80 ms frames) + element-wise recurrence, batched matmuls
train recurrent800 800 --encoder recurrent --model-config '{"stack_frames": 8, "chunk_frames": 4, "n_layers": 3}'

# the shipped model and the earlier steps of its chain: 300 test strings (seed 1), greedy and beam 4
python benchmarks/transducer_fsdd.py --model transducer-fsdd --name transducer-fsdd --strings 300 --noisy-strings 100 \
  --profile-strings 20 --out $OUT/transducer-fsdd.json
python benchmarks/transducer_fsdd.py --model transducer-fsdd --name transducer-fsdd --strings 300 --noisy-strings 100 \
  --profile-strings 20 --beam-size 4 --out $OUT/transducer-fsdd_beam4.json
python benchmarks/transducer_fsdd.py --model "$RUNS/fsdd_ft3/model" --name fsdd_ft3 --strings 100 --noisy-strings 50 \
  --profile-strings 20 --out $OUT/fsdd_ft3.json
python benchmarks/transducer_fsdd.py --model "$RUNS/fsdd1200/model" --name fsdd1200 --strings 100 --noisy-strings 50 \
  --profile-strings 20 --out $OUT/fsdd1200.json
# parameters vs WER: all four 800-step models on the same 300 test strings, greedy and beam 4
for name in base800 repeat800 lowrank800 recurrent800; do
  python benchmarks/transducer_fsdd.py --model "$RUNS/$name/model" --name $name --strings 300 --profile-strings 20 \
    --out $OUT/$name.json
  python benchmarks/transducer_fsdd.py --model "$RUNS/$name/model" --name $name --strings 300 --profile-strings 20 \
    --beam-size 4 --out $OUT/${name}_beam4.json
done
# leave-one-speaker-out: 6 trainings (+ the all-speaker control), 800 steps of isolated clips only
python benchmarks/transducer_loso.py --runs "$RUNS/loso800iso" --steps 800 --string-share 0 --out $OUT/loso.json --table $OUT/loso.md
python benchmarks/transducer_summary.py $OUT/{transducer-fsdd,fsdd_ft3,fsdd1200,base800,repeat800,lowrank800,recurrent800}.json -o $OUT/summary.md
