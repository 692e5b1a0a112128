#!/usr/bin/env bash
# The bridged bodies' own learning-rate check (seed 0, the full 400 steps, as sweep.py's confirmation
# stage): each bridge condition's stage 2 rerun at the rates one ladder step either side of the one
# run.sh uses (the unbridged body's choice), the bridge recomputed from the same seed. The rate with
# the lowest validation error of best.pt wins; run.sh's seed-0 run is the middle point.
# Two queues, one thread each: `bash results/images/bridge_long/search.sh pretrained` and `... random-init`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
body=${1:?give the body the bridges start from: pretrained or random-init}
common=(--task images --dataset mnist5k --patch 7 --batch-size 32 --warmup 50 --steps 400 --eval-every 100
        --bridge-images 1000 --bridge-until-acc 0.9 --bridge-steps 6000 --seed 0)
run() {   # out, flags...
    local out=$1; shift
    if [ -f "$out/results.json" ] && python -c "import json,sys; r=json.load(open('$out/results.json')); sys.exit(r['steps_done'] < 6400)"; then
        return 0
    fi
    python train.py "${common[@]}" "$@" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
}
s=results/images/bridge_long/search
if [ "$body" = pretrained ]; then
    for lr in 1e-2 1e-1; do
        run $s/bridge__lr$lr --lr $lr --input-scale auto
        run $s/bridge-partial__lr$lr --lr $lr --input-scale auto --bridge-layers 8-11
    done
else
    for lr in 3e-3 3e-2; do
        run $s/bridge-random-init__lr$lr --lr $lr --input-scale 1 --init random
        run $s/bridge-partial-random-init__lr$lr --lr $lr --input-scale 1 --init random --bridge-layers 8-11
    done
fi
