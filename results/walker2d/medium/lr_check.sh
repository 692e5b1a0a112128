#!/usr/bin/env bash
# Learning-rate check of the frozen-slice bodies before their three-seed runs (run_3seeds.sh): seed 0,
# each rate of $LRS at the full budget of those runs ($STEPS steps, evaluation every $EVAL_EVERY), so
# that a rate which starts fast and then stalls cannot win on a short budget; everything else as in
# run_3seeds.sh (slice in $SLICE_DTYPE, batch $SLICE_BATCH, warm-up a tenth of the steps). Where a body's best
# rate sits at an end of the rates checked for it, the next rate of the ladder beyond that end is run
# too, until the best is inside (or the ladder ends): the same rule for every body. The rate is chosen
# by `python -m tasks.walker2d pick-lr` on the training-time evaluation episodes only (stream 1; the
# mean of the last $LAST evaluations); the fresh episodes that run_3seeds.sh reports are never scored
# here. The DT keeps its reference settings and is not checked.
# Usage: bash results/walker2d/medium/lr_check.sh CONDITION...   (one thread; two queues at a time)
#   conditions: pretrained, random-init-scale1. Resumable: run it again. It ends by writing
#   $DEST/choice.json over every check run in $DEST once all of them have finished (a body still running
#   in another queue: it says what it waits for, and that queue's call writes it).
# Cost, one 20,000-step slice run on one thread with EXTRA=--compile, evaluations included: about 1.5
#   hours in fp32 on an AVX2 machine; on the AMX machine that ran the committed check about 3 hours in
#   fp32 and about two thirds of that in bf16 (results/bench/compare_dtypes_L8_32x60_1thread_loaded_amx.json).
#   At least three runs per body, one more per extension.
# Seed 0 is the check's seed; the three-seed runs that are reported use seeds 1, 2 and 3, which had no
#   part in the choice (seed 0 at the chosen rate won on its own training-time episodes, a draw of luck
#   that would stay in a reported seed 0).
# Settings by environment: STEPS (20000), LRS ("1e-4 3e-4 1e-3"), SLICE_BATCH (32), SLICE_DTYPE (bf16: the
#   committed runs; fp32 on a CPU without bf16 matrix units, where bf16 runs about 28x slower), DEST (results/walker2d/medium/lr_check),
#   DATASET (local/walker2d-medium-sac-v0), EVAL_EVERY (2500), EVAL_EPISODES (10 per target), LAST (3),
#   MAX_EXTEND (extensions per body; default: until the best rate is inside), EXTRA (flags appended to
#   every run), SLICE_EXTRA (appended to the slice runs; e.g. a small --model for a test).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
steps=${STEPS:-20000}
last=${LAST:-3}
dest=${DEST:-results/walker2d/medium/lr_check}
common=(--dataset "${DATASET:-local/walker2d-medium-sac-v0}" --steps "$steps" --batch-size "${SLICE_BATCH:-32}"
        --eval-every "${EVAL_EVERY:-2500}" --eval-episodes "${EVAL_EPISODES:-10}" --targets 5000,2500 --seed 0 ${EXTRA:-})
slice=(--layers 8 --dtype "${SLICE_DTYPE:-bf16}")
finished() {   # run folder: has it trained $steps steps?
    [ -f "$1/results.json" ] && python -c "import json,sys; sys.exit(json.load(open('$1/results.json'))['steps_done'] < $steps)"
}
run() {   # condition, lr
    local body=${bodies[$1]} lr=$2 flags
    local out=$dest/${body}__lr${lr}__0
    finished "$out" && return 0
    case $1 in
        pretrained)         flags=("${slice[@]}") ;;
        random-init-scale1) flags=("${slice[@]}" --init random --input-scale 1) ;;
    esac
    python -m tasks.walker2d train "${common[@]}" --lr "$lr" "${flags[@]}" ${SLICE_EXTRA:-} --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
}
declare -A bodies=([pretrained]=L8_pretrained [random-init-scale1]=L8_random-init_scale1)
for c in "$@"; do
    [ -n "${bodies[$c]:-}" ] || { echo "unknown condition $c" >&2; exit 2; }
done
for c in "$@"; do
    for lr in ${LRS:-1e-4 3e-4 1e-3}; do
        run "$c" "$lr"
    done
    for out in "$dest/${bodies[$c]}"__lr*__0; do   # an extension stopped part-way: finish it before choosing
        [ -d "$out" ] && ! finished "$out" && { r=${out##*__lr}; run "$c" "${r%__0}"; }
    done
    n=0
    while [ -z "${MAX_EXTEND:-}" ] || [ "$n" -lt "$MAX_EXTEND" ]; do   # close an open edge, one ladder step at a time
        next=$(python -m tasks.walker2d pick-lr "$dest/${bodies[$c]}"__lr*__0 --last "$last" | python -c "
import json, sys
from runs import LADDER, ladder_index
b = json.load(sys.stdin)['bodies']['${bodies[$c]}']
print(LADDER[ladder_index(b['next_lr'])] if b['next_lr'] else '')")
        [ -n "$next" ] || break
        run "$c" "$next"
        n=$((n + 1))
    done
done
for out in "$dest"/*__lr*__0; do
    finished "$out" || { echo "choice.json waits for $out"; exit 0; }
done
python -m tasks.walker2d pick-lr "$dest"/*__lr*__0 --last "$last" --out "$dest/choice.json"
