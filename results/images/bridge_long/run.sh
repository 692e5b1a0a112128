#!/usr/bin/env bash
# The long random-label bridge (Luo & Shen), CPU: the bridge trains until it has memorised the random
# labels of 1,000 training images (accuracy >= 0.9 on them, at most 6,000 steps), then stage 2 runs
# exactly as the unbridged seeds of results/images/ at the setting the fair search chose for the body
# the bridge starts from (pretrained: lr 3e-2, input scale auto; random-init, the strongest image
# control: lr 1e-2, input scale 1). Seeds 0 and 1: stage 2 draws the same batches as the unbridged
# seeds 0 and 1, so bridged and unbridged runs differ by the bridge alone. Resumable: run it again.
# Two runs at a time, one thread each: `bash results/images/bridge_long/run.sh 0` and `... 1` (the seed).
# The committed runs ran from a worktree at 63cd4d7, where this script lived at results/images_bridge/
# and wrote its runs there; script and runs moved here together, nothing else changed.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
seed=${1:?give the seed, 0 or 1}
common=(--task images --dataset mnist5k --patch 7 --batch-size 32 --warmup 50 --steps 400 --eval-every 100
        --bridge-images 1000 --bridge-until-acc 0.9 --bridge-steps 6000 --seed "$seed")
run() {   # out, flags...
    local out=$1; shift
    if [ -f "$out/results.json" ] && python -c "import json,sys; r=json.load(open('$out/results.json')); sys.exit(r['steps_done'] < 6400)"; then
        return 0
    fi
    python train.py "${common[@]}" "$@" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
    python evaluate.py --ckpt "$out/best.pt"
}
run results/images/bridge_long/runs/bridge__$seed --lr 3e-2 --input-scale auto
run results/images/bridge_long/runs/bridge-partial__$seed --lr 3e-2 --input-scale auto --bridge-layers 8-11
run results/images/bridge_long/runs/bridge-random-init__$seed --lr 1e-2 --input-scale 1 --init random
run results/images/bridge_long/runs/bridge-partial-random-init__$seed --lr 1e-2 --input-scale 1 --init random --bridge-layers 8-11
