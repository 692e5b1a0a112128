#!/usr/bin/env bash
# Step 2 of the paper's token tasks, only for a task whose step-1 run beat its no-learning floor
# (results/token_suite/<task>/learn5k/learnability.json, committed or copied here, says "learned":
# true; the script checks): the pretrained slice against the strongest control (the slice
# re-initialised, its input scale searched as for MQAR: auto, learn, 1) and the fully trainable
# transformer of the same shape (the paper's comparison for AR), by the fair protocol of sweep.py at
# the step-1 budget. Search: seed 0, the same steps for every condition, the same rate grid for the
# two slice bodies, scratch its own lower grid (a fully trained stack of about 26M parameters, not a
# 10K-parameter interface; every suite gave it its own, and the first MQAR suite chose 3e-4 inside
# it), every edge extended alike. Confirmation at 5,000 steps (every task but Rule 90, whose search
# already runs the full budget): for a condition whose search left the floor, its best input-scale
# choice's best rate and the ladder neighbours; for one whose search sat at the floor (it could rank
# nothing), every setting it searched; a best at the highest or lowest rate rerun also gets the rate
# beyond it at 5,000 steps, until none does. Then seeds 1-3 of every condition at its chosen setting (seed
# 0 is the search's), held-out evaluation of every best.pt on 1,024 sequences per length. A
# condition whose choice does not beat the floor (tasks/floors.py) is reported not learned at this
# budget and gets no seeds.
# Per task, from its step-1 curve (the search must run until learning shows, or it compares noise):
#   ar: pretrained learned at 3e-2 (off the floor from step 750, 0.021 at 6 items by step 1,250)
#       and not at 1e-2 in 5,000 steps; at 500 steps it still sat at the floor. So the search runs
#       1,500 steps on a grid centred on 3e-2 (1e-2, 3e-2, 1e-1). The grid comes from the pretrained
#       run, which is why a control the search cannot see gets its whole grid at the full budget.
#   copy: pretrained beat the floor at 1e-2 (off it at the first evaluation, step 250; best 0.239
#       at 20 vectors, step 2,750, never under 0.01; 3e-2 not tried in step 1, which stops at the
#       first rate that learns). The same rule as AR, twice the step where step 1 left the floor: a
#       500-step search on a grid centred on 1e-2 (3e-3, 1e-2, 3e-2), every edge extended alike.
#   addition: pretrained learned at 1e-2 (already off the floor at the first evaluation, step 250;
#       under 0.01 at 20 bits from step 1,250; 3e-2 not tried). The same rule, on that upper bound
#       of the step it left the floor: a 500-step search on 3e-3, 1e-2, 3e-2.
#   rule90: pretrained learned at 1e-2, slowly: at the floor until step 1,500, off it from step 2,000
#       (0.461 at 20 cells against 0.500). Twice that is 4,000 of the 5,000 steps, so the search
#       runs the whole budget instead (3e-3, 1e-2, 3e-2, every edge extended alike, each run at
#       5,000 steps) and no confirmation follows: every setting is already judged at the full
#       budget, which is what the confirmation is for, and a 4,000-step search plus a 5,000-step
#       confirmation would cost more for less. A search at the full budget evaluates every 250
#       steps and scores each run by its best evaluation, as the confirmation and the seeds' best.pt
#       do (sweep.py): step 1's curve swings, 0.434 at step 4,000 and 0.488 at 5,000, which is
#       above what the floor check allows, so a score at the end could call a rate that learns
#       unlearned.
# Dtype: DTYPE (default auto: fp32 on a CPU), one for the whole suite (the sweep records the dtype
# it resolved and refuses to resume the folder in another). Set DTYPE=bf16 where `python bench.py
# --compare-dtypes` finds it faster: about 2x on a CPU with bf16 matrix units (AMX), 28x slower
# on one without (results/bench/compare_dtypes_1x64_1thread_loaded.json, measured; larger batches slower still).
# Cost for ar, one thread per run: search 24 runs x 1,500 steps (3 rates x 3 input-scale choices for
# the two slice bodies, 3 x 2 for scratch; more where an edge extends); confirmation up to 3 runs x
# 5,000 steps for a condition off the floor, 9 (scratch 6) for one at it; 9 seed runs x 5,000 steps.
# About 126K steps if every search leaves the floor, about 171K if both controls' sit at it:
# 40-90 core-hours at 1.1-1.9 s a step (scratch's steps cost more). For copy: search 24 runs x 500
# steps, the same confirmation and seeds: about 72K-117K steps, 25-60 core-hours; addition the same.
# Rule 90: search 24 runs x 5,000 steps (more where an edge extends), 9 seed runs x 5,000: about
# 165K steps, 60-95 core-hours at 1.3-2 s a step.
# The paper's ratio: control / pretrained at L30 (Rule 90: L20) per seed, averaged
# (summary.json ratios_to_pretrained.<control>.30.mean_of_ratios), beside the ratio of the condition
# means (.ratio_of_means) and the geometric mean of the per-seed ratios; `sweep.py --table --out OUT`
# prints them. A summary written by code from before mean_of_ratios was recorded gets it from
# `python sweep.py --restate --out OUT` (statistics recomputed from the per-run JSON, nothing rerun).
# Usage: bash results/token_suite/controls.sh TASK [OUT]   (TASK: ar, copy, addition or rule90;
#   default OUT results/token_suite/TASK/suite5k); JOBS=2 runs two at a time; STEPS (default 5000)
#   is the budget of the confirmation and the seeds, and Rule 90's search; DTYPE (default auto) the
#   frozen body's precision. Resumable: run it again with the same settings.
set -euo pipefail
task=${1:?give the task: ar, copy, addition or rule90}
out=${2:-}
[ -n "$out" ] && out=$(realpath -m "$out")
cd "$(dirname "$0")/../.."
out=${out:-results/token_suite/$task/suite5k}
steps=${STEPS:-5000}
confirm=(--confirm --confirm-scales best)
case $task in      # the step-1 lengths (results/token_suite/<task>/run.sh), then the search set from step 1
    ar)       lengths=(--train-len 6 --eval-lengths 4,6,8,12,16,30 --select-len 6)
              search=(--search-steps 1500 --lrs 1e-2,3e-2,1e-1) ;;
    copy)     lengths=(--train-len 20 --eval-lengths 4,10,20,30,40 --select-len 20)
              search=(--search-steps 500 --lrs 3e-3,1e-2,3e-2) ;;
    addition) lengths=(--train-len 20 --eval-lengths 10,20,30,40 --select-len 20)
              search=(--search-steps 500 --lrs 3e-3,1e-2,3e-2) ;;
    rule90)   lengths=(--train-len 20 --eval-lengths 10,20,30,40,60 --select-len 20)
              search=(--search-steps "$steps" --lrs 3e-3,1e-2,3e-2); confirm=() ;;
    *) echo "error: unknown task $task (ar, copy, addition, rule90)" >&2; exit 2 ;;
esac
verdict=results/token_suite/$task/learn5k/learnability.json
[ -f "$verdict" ] || { echo "error: no $verdict: run step 1 first (bash results/token_suite/$task/run.sh)" >&2; exit 2; }
python -c "import json,sys; sys.exit(0 if json.load(open('$verdict'))['learned'] else 1)" ||
    { echo "error: $task did not beat its floor in step 1 ($verdict): step 2 is for learned tasks only" >&2; exit 2; }
python sweep.py --task "$task" --layers 6-11 --conditions pretrained,random-init,scratch --input-scales auto,learn,1 \
    "${lengths[@]}" "${search[@]}" --steps "$steps" ${confirm[@]+"${confirm[@]}"} --seeds 3 --eval-every 250 --dtype "${DTYPE:-auto}" \
    --batch-size 32 --warmup 50 --eval-samples 256 --eval-samples-final 1024 --jobs "${JOBS:-1}" --out "$out"
python sweep.py --table --out "$out"
