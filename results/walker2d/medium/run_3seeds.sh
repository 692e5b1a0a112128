#!/usr/bin/env bash
# Walker2d on the medium data made here, three seeds per condition, all at one budget ($STEPS, default
# 20,000 steps; the slice in $SLICE_DTYPE for every body and seed, bf16 by default, the dtype of the check
# that chose its rate): pretrained layer 8 and layer 8
# re-initialised at input scale 1, each at the rate lr_check.sh chose for it (read from $CHOICE, written
# by `python -m tasks.walker2d pick-lr`), batch $SLICE_BATCH; and the reference DT at its own settings
# (batch 64, lr 1e-4). Warm-up: a tenth of the steps for every run. Training-time evaluation every
# 2,500 steps on 10 episodes per target (stream 1); then evaluate.py scores last.pt on 50 fresh
# episodes per target (stream 2, never used for any choice). Resumable: run it again (a finished run
# with a larger STEPS continues from its last.pt and is scored again).
# Seeds 1, 2 and 3 are the reported ones: seed 0 is lr_check.sh's, and its run at the chosen rate won
# the choice on its own training-time episodes, a draw of luck a reported seed should not carry.
# Usage: bash results/walker2d/medium/run_3seeds.sh SEED CONDITION...   (one thread each; two queues at a time)
#   conditions: pretrained, random-init-scale1, dt-b64. When all nine (seeds 1-3) are done:
#   python -m tasks.walker2d seeds results/walker2d/medium/seeds/runs/*__[123] --reference L8_pretrained \
#       --out results/walker2d/medium/seeds/summary.json
# Settings by environment: STEPS (20000), SLICE_BATCH (32), CHOICE (results/walker2d/medium/lr_check/choice.json),
#   DEST (results/walker2d/medium/seeds/runs), DATASET (local/walker2d-medium-sac-v0), EVAL_EVERY (2500),
#   EVAL_EPISODES (10), FRESH_EPISODES (50), EXTRA (flags appended to every run), SLICE_EXTRA (to the slice runs),
#   SLICE_DTYPE (bf16; fp32 on a CPU without bf16 matrix units: it must be the check's),
#   ALLOW_OPEN_EDGE (1: go on although the check left a best rate at an end of its rates).
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
seed=${1:?give the seed}; shift
steps=${STEPS:-20000}
dest=${DEST:-results/walker2d/medium/seeds/runs}
choice=${CHOICE:-results/walker2d/medium/lr_check/choice.json}
common=(--dataset "${DATASET:-local/walker2d-medium-sac-v0}" --steps "$steps" --eval-every "${EVAL_EVERY:-2500}"
        --eval-episodes "${EVAL_EPISODES:-10}" --targets 5000,2500 --seed "$seed" ${EXTRA:-})
slice=(--layers 8 --dtype "${SLICE_DTYPE:-bf16}" --batch-size "${SLICE_BATCH:-32}")
chosen() {   # body -> its learning rate from the check, which must have run at this budget with its edges closed
    [ -f "$choice" ] || { echo "error: no $choice: run lr_check.sh and pick-lr first" >&2; exit 2; }
    python -c "
import json, sys
b = json.load(open('$choice'))['bodies'].get('$1')
if b is None:
    sys.exit('error: $choice has no rate for $1: run lr_check.sh for it, then pick-lr again')
if not b.get('dtype'):
    sys.exit('error: $choice names no dtype for $1 (written by older code): run pick-lr on the check runs again')
if b['dtype'] != '${SLICE_DTYPE:-bf16}':
    sys.exit(f'error: $choice chose the rate of $1 in {b[\"dtype\"]}, these runs compute in ${SLICE_DTYPE:-bf16}: set SLICE_DTYPE alike')
if b['steps_done'] != $steps:
    sys.exit(f'error: $choice chose the rate of $1 at {b[\"steps_done\"]} steps, these runs train $steps: check at their budget')
if b.get('next_lr') and '${ALLOW_OPEN_EDGE:-}' != '1':
    sys.exit(f'error: $1: best checked rate {b[\"chosen_lr\"]:g} at an end of the rates checked: run lr_check.sh again '
             '(it runs the next rate), or set ALLOW_OPEN_EDGE=1 to go on with the edge open')
print(b['chosen_lr'])" || exit 2
}
run() {   # name, flags...
    local out=$dest/$1__$seed; shift
    if ! [ -f "$out/results.json" ] || python -c "import json,sys; sys.exit(json.load(open('$out/results.json'))['steps_done'] >= $steps)"; then
        python -m tasks.walker2d train "${common[@]}" "$@" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
    fi
    if ! [ -f "$out/eval_last.json" ] || python -c "import json,sys; sys.exit(json.load(open('$out/eval_last.json'))['checkpoint_step'] >= $steps)"; then
        python evaluate.py --ckpt "$out/last.pt" --episodes "${FRESH_EPISODES:-50}"
    fi
}
for c in "$@"; do
    case $c in
        pretrained)         lr=$(chosen L8_pretrained); run L8_pretrained "${slice[@]}" --lr "$lr" ${SLICE_EXTRA:-} ;;
        random-init-scale1) lr=$(chosen L8_random-init_scale1); run L8_random-init_scale1 "${slice[@]}" --init random --input-scale 1 --lr "$lr" ${SLICE_EXTRA:-} ;;
        dt-b64)             run dt-b64 --substrate dt --batch-size 64 --lr 1e-4 ;;   # the reference DT's batch and rate
        *) echo "unknown condition $c" >&2; exit 2 ;;
    esac
done
