#!/usr/bin/env bash
# Learning-rate check of the frozen-slice bodies before their three-seed runs (run_3seeds.sh): seed 0,
# each rate of $LRS, a short budget ($STEPS steps), everything else as in run_3seeds.sh (fp32 slice,
# batch $SLICE_BATCH, warm-up a tenth of the steps). The rate is then chosen by `python -m tasks.walker2d
# pick-lr` on the training-time evaluation episodes only (stream 1); the fresh episodes that
# run_3seeds.sh reports are never scored here. The DT keeps its reference settings and is not checked.
# Usage: bash results/walker2d/medium/lr_check.sh CONDITION...   (one thread; two queues at a time)
#   conditions: pretrained, random-init-scale1. Resumable: run it again. Then:
#   python -m tasks.walker2d pick-lr results/walker2d/medium/lr_check/*__lr*__0 --out results/walker2d/medium/lr_check/choice.json
# Settings by environment: STEPS (4000), LRS ("1e-4 3e-4 1e-3"), SLICE_BATCH (32), DEST (results/walker2d/medium/lr_check),
#   DATASET (local/walker2d-medium-sac-v0), EVAL_EVERY (1000), EVAL_EPISODES (10 per target),
#   EXTRA (flags appended to every run), SLICE_EXTRA (appended to the slice runs; e.g. a small --model for a test).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
steps=${STEPS:-4000}
dest=${DEST:-results/walker2d/medium/lr_check}
common=(--dataset "${DATASET:-local/walker2d-medium-sac-v0}" --steps "$steps" --batch-size "${SLICE_BATCH:-32}"
        --eval-every "${EVAL_EVERY:-1000}" --eval-episodes "${EVAL_EPISODES:-10}" --targets 5000,2500 --seed 0 ${EXTRA:-})
slice=(--layers 8 --dtype fp32)
run() {   # name, lr, flags...
    local out=$dest/$1__lr$2__0 lr=$2; shift 2
    if [ -f "$out/results.json" ] && python -c "import json,sys; sys.exit(json.load(open('$out/results.json'))['steps_done'] < $steps)"; then
        return 0
    fi
    python -m tasks.walker2d train "${common[@]}" --lr "$lr" "$@" ${SLICE_EXTRA:-} --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
}
for c in "$@"; do
    for lr in ${LRS:-1e-4 3e-4 1e-3}; do
        case $c in
            pretrained)         run L8_pretrained "$lr" "${slice[@]}" ;;
            random-init-scale1) run L8_random-init_scale1 "$lr" "${slice[@]}" --init random --input-scale 1 ;;
            *) echo "unknown condition $c" >&2; exit 2 ;;
        esac
    done
done
