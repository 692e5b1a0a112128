#!/usr/bin/env bash
# Walker2d on the self-collected medium data (local/walker2d-medium-sac-v0, made by
# `python -m tasks.walker2d_medium make`), CPU budget: 10,000 steps per condition, batch 32, the
# reference DT's optimiser settings for every body (lr 1e-4, warm-up 1,000 = a tenth of the steps).
# Evaluation every 2,500 steps on 10 episodes per target (selects best.pt), then evaluate.py on
# 50 fresh episodes per target (never used for selection), of best.pt and of last.pt. The frozen slice computes in bf16
# (2.9 vs 1.7 steps/s in fp32 on this machine). Resumable: run it again.
# Usage: bash results/walker2d/medium/run.sh SEED CONDITION...   (one thread each; two queues at a time)
#   conditions: dt, dt-b64, pretrained, random-init, random-init-scale1
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
seed=${1:?give the seed}; shift
common=(--dataset local/walker2d-medium-sac-v0 --steps 10000 --batch-size 32 --eval-every 2500
        --eval-episodes 10 --targets 5000,2500 --seed "$seed")
run() {   # name, flags...
    local out=results/walker2d/medium/runs/$1__$seed; shift
    if ! [ -f "$out/results.json" ] || python -c "import json,sys; sys.exit(json.load(open('$out/results.json'))['steps_done'] >= 10000)"; then
        python -m tasks.walker2d train "${common[@]}" "$@" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
    fi
    [ -f "$out/eval_best.json" ] || python evaluate.py --ckpt "$out/best.pt" --episodes 50
    [ -f "$out/eval_last.json" ] || python evaluate.py --ckpt "$out/last.pt" --episodes 50
}
for c in "$@"; do
    case $c in
        dt)                 run dt --substrate dt ;;
        dt-b64)             run dt-b64 --substrate dt --batch-size 64 ;;   # the reference DT's batch size
        pretrained)         run L8_pretrained --layers 8 --dtype bf16 ;;
        random-init)        run L8_random-init --layers 8 --dtype bf16 --init random ;;
        random-init-scale1) run L8_random-init_scale1 --layers 8 --dtype bf16 --init random --input-scale 1 ;;
        *) echo "unknown condition $c" >&2; exit 2 ;;
    esac
done
