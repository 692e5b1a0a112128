#!/usr/bin/env bash
# Stand-in smoke run of tasks/walker2d.py on the embedded Gemma 3 270M, CPU, a few minutes.
# The data is a STAND-IN recorded here (noisy hand-written controller), not D4RL: see README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
python -m tasks.walker2d record --id local/walker2d-standin-v0 --episodes 20 --policy pd --noise 0.2 --seed 0
python -m tasks.walker2d train --layers 6-10 --dataset local/walker2d-standin-v0 \
    --steps 120 --batch-size 16 --warmup 20 --eval-every 60 --eval-episodes 2 --max-ep-len 200 \
    --out results/walker2d/standin_smoke
