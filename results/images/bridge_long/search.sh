#!/usr/bin/env bash
# The learning-rate check of the long bridge (seed 0, the full 400 steps, like sweep.py's confirmation
# stage): every body of the comparison, bridged or not, rerun at the rates one ladder step either side
# of the one run.sh uses (the fair search's choice for the unbridged body); a bridge is recomputed
# from the same seed (bit-identical to run.sh's). The rate with the lowest validation error of best.pt
# wins; run.sh's and results/images/runs' seed-0 runs are the middle points. Bridged and unbridged
# bodies get the same check, so neither is handicapped by a rate chosen for the other.
# One queue per argument, one thread each: pretrained | random-init (the bridged bodies),
# unbridged-pretrained | unbridged-random-init.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
queue=${1:?give the queue: pretrained, random-init, unbridged-pretrained or unbridged-random-init}
common=(--task images --dataset mnist5k --patch 7 --batch-size 32 --warmup 50 --steps 400 --eval-every 100 --seed 0)
bridge=(--bridge-images 1000 --bridge-until-acc 0.9 --bridge-steps 6000)
run() {   # out, steps when finished, flags...
    local out=$1 done_at=$2; shift 2
    if [ -f "$out/results.json" ] && python -c "import json,sys; r=json.load(open('$out/results.json')); sys.exit(r['steps_done'] < $done_at)"; then
        return 0
    fi
    python train.py "${common[@]}" "$@" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
}
s=results/images/bridge_long/search
case $queue in
pretrained)
    for lr in 1e-2 1e-1; do
        run $s/bridge__lr$lr 6400 "${bridge[@]}" --lr $lr --input-scale auto
        run $s/bridge-partial__lr$lr 6400 "${bridge[@]}" --lr $lr --input-scale auto --bridge-layers 8-11
    done ;;
random-init)
    for lr in 3e-3 3e-2; do
        run $s/bridge-random-init__lr$lr 6400 "${bridge[@]}" --lr $lr --input-scale 1 --init random
        run $s/bridge-partial-random-init__lr$lr 6400 "${bridge[@]}" --lr $lr --input-scale 1 --init random --bridge-layers 8-11
    done ;;
unbridged-pretrained)
    for lr in 1e-2 1e-1; do run $s/pretrained__lr$lr 400 --lr $lr --input-scale auto; done ;;
unbridged-random-init)
    for lr in 3e-3 3e-2; do run $s/random-init__lr$lr 400 --lr $lr --input-scale 1 --init random; done ;;
*) echo "unknown queue $queue" >&2; exit 2 ;;
esac
