#!/usr/bin/env bash
# Step 2 of the paper's token tasks, only for a task whose step-1 run beat its no-learning floor
# (OUT/learnability.json of results/token_suite/<task>/run.sh says "learned": true): the pretrained
# slice against the strongest control (the slice re-initialised, its input scale searched as for MQAR:
# auto, learn, 1) and the fully trainable transformer of the same shape (the paper's comparison for
# AR), by the fair protocol of sweep.py at the step-1 budget: the same search for every condition
# (seed 0, 500 steps), each condition's best rate per input-scale choice confirmed at 5,000 steps,
# then seeds 1-3 of every condition at its confirmed setting (--seeds 3; seed 0 is the search's), held-out evaluation of
# every best.pt on 1,024 sequences per length. A condition
# whose choice does not beat the floor (tasks/floors.py) is reported not learned at this budget and
# gets no seeds.
# fp32 (the sweep's runs use train.py's CPU default, fp32): bf16 is ~100x slower on this CPU.
# Cost, one thread per run: the search (about 5 rates x 8 input-scale choices: 3 each for the slice
# bodies, 2 for scratch; more where an edge is extended) x 500 steps, then 3 rates x 8 choices = 24
# confirmations and 9 seed runs x 5,000 steps: about 185K steps, 54-69 core-hours per task at 1.05-1.35 s
# a step (scratch's steps cost more).
# The paper's ratio: control / pretrained at L30 (Rule 90: L20) per seed, averaged
# (summary.json ratios_to_pretrained.<control>.30), beside the ratio of the condition means
# (conditions.<control>.errors.30.mean / conditions.pretrained.errors.30.mean); `sweep.py --table
# --out OUT` prints both tables.
# Usage: bash results/token_suite/controls.sh TASK [OUT]   (TASK: ar, copy, addition or rule90;
#   default OUT results/token_suite/TASK/suite5k); JOBS=2 runs two at a time. Resumable: run it again.
set -euo pipefail
task=${1:?give the task: ar, copy, addition or rule90}
out=${2:-}
[ -n "$out" ] && out=$(realpath -m "$out")
cd "$(dirname "$0")/../.."
out=${out:-results/token_suite/$task/suite5k}
case $task in      # the step-1 lengths (results/token_suite/<task>/run.sh)
    ar)       lengths=(--train-len 6 --eval-lengths 4,6,8,12,16,30 --select-len 6) ;;
    copy)     lengths=(--train-len 20 --eval-lengths 4,10,20,30,40 --select-len 20) ;;
    addition) lengths=(--train-len 20 --eval-lengths 10,20,30,40 --select-len 20) ;;
    rule90)   lengths=(--train-len 20 --eval-lengths 10,20,30,40,60 --select-len 20) ;;
    *) echo "error: unknown task $task (ar, copy, addition, rule90)" >&2; exit 2 ;;
esac
python sweep.py --task "$task" --layers 6-11 --conditions pretrained,random-init,scratch --input-scales auto,learn,1 \
    "${lengths[@]}" --search-steps "${SEARCH_STEPS:-500}" --steps "${STEPS:-5000}" --confirm --seeds 3 --eval-every 250 \
    --batch-size 32 --warmup 50 --eval-samples 256 --eval-samples-final 1024 --jobs "${JOBS:-1}" --out "$out"
python sweep.py --table --out "$out"
