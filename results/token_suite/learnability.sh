#!/usr/bin/env bash
# Step 1 of the paper's token tasks: can the pretrained slice learn the task at all at this budget?
# Embedded Gemma 3 270M, slice 6-11, pretrained weights, input scale auto (calibrated), seed 0, 5,000
# steps at batch 32, evaluation every 250 steps on 256 validation sequences per length, one thread.
# fp32 on purpose: the CPU these runs were planned on had no bf16 matrix units, where bf16 ran 28x
# slower than fp32 (results/bench/compare_dtypes_1x64_1thread_loaded.json); step 2 (controls.sh) reruns every condition,
# pretrained included, in one dtype of its own. A step costs about 1.05 s (AR) to 1.35 s (Rule 90)
# in fp32 on one thread of that CPU, so one run is 1.5-2 hours.
# Then `python -m tasks.floors verdict` judges the task's runs as one family against the no-learning
# floor (the margin counts every evaluation of every run as a try) and writes OUT/learnability.json;
# `python report.py` can then draw it with {{table learnability ...}}.
# Usage (from anywhere): bash results/token_suite/<task>/run.sh [OUT [LR...]]
#   OUT: folder of the runs (default results/token_suite/<task>/learn5k); LR: the rates to run now
#   (default: the task's rates in order, stopping at the first that learns; given rates are trained,
#   and the verdict waits until every rate it needs is done; give one per call to use two cores).
# Resumable: run it again with the same arguments; a finished run is skipped, a stopped one resumes.
# STEPS=20 gives a smoke run (put it in a throwaway OUT).
set -euo pipefail
task=${TASK:?run this through results/token_suite/<task>/run.sh}
out=${1:-}
[ -n "$out" ] && out=$(realpath -m "$out")          # as given, before moving to the repository root
cd "$(dirname "$0")/../../.."                        # $0 is results/token_suite/<task>/run.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
out=${out:-results/token_suite/$task/learn5k}
if [ $# -gt 1 ]; then rates=("${@:2}"); else rates=("${RATES[@]}"); fi
steps=${STEPS:-5000}
common=(--task "$task" --layers 6-11 --init pretrained --input-scale auto --seed 0 --steps "$steps"
        --batch-size 32 --warmup 50 --eval-every 250 --eval-samples 256 --dtype fp32 "${LENGTHS[@]}")
done_run() {   # folder: has it trained $steps steps?
    [ -f "$1/results.json" ] && python -c "import json,sys; sys.exit(json.load(open('$1/results.json'))['steps_done'] < $steps)"
}
judge() {   # judge FILE RUN...: the verdict on these runs into FILE; status 0 if they learned
    local f=$1; shift
    python -m tasks.floors verdict "$@" --out "$f" > /dev/null &&
        python -c "import json,sys; sys.exit(not json.load(open('$f'))['learned'])"
}
train() {
    local run=$out/${task}__pretrained__lr$1__0
    done_run "$run" && return 0
    mkdir -p "$out"
    python train.py "${common[@]}" --lr "$1" --out "$run" $([ -f "$run/last.pt" ] && echo --resume) 2>&1 | tee -a "$run.log"
}
if [ $# -gt 1 ]; then for lr in "${rates[@]}"; do train "$lr"; done; fi
# what to train: the task's rates in order until one learns (a task that learns at the first is not
# run at the next)
tried=()
partial=$(mktemp --suffix=.json)
for lr in "${RATES[@]}"; do
    run=$out/${task}__pretrained__lr${lr}__0
    if ! done_run "$run"; then
        [ $# -gt 1 ] && { echo "verdict waits for $run"; rm -f "$partial"; exit 0; }
        train "$lr"
    fi
    tried+=("$run")
    if judge "$partial" "${tried[@]}"; then break; fi
done
rm -f "$partial"
# the verdict counts every finished run in OUT: the rates tried and any other trained there
runs=()
for run in "$out/${task}__pretrained__lr"*__0; do done_run "$run" && runs+=("$run"); done
python -m tasks.floors verdict "${runs[@]}" --out "$out/learnability.json"
