#!/bin/bash
# CPU reference run for scene-play-singletask-task1-v0 (see results/ogbench/README.md).
# 2 cores: the three conditions run side by side, one thread each, ~1.5 h; 25 live envs per run (~4.3 GB RAM each).
set -e
cd "$(dirname "$0")/../../.."
python -m tasks.ogbench generate --env scene-play-v0 --episodes 200 --seed 0     # ~11 min, ~/.ogbench/data
COMMON="--task ogbench --env scene-play-singletask-task1-v0 --batch-size 64 --steps 5000 --eval-every 1000 --eval-episodes 50 --eval-batch 25 --seed 0"
R=${R:-runs/ogbench_ref}
mkdir -p $R
RESUME=${RESUME:-}
OMP_NUM_THREADS=1 nohup python train.py $COMMON --out $R/pretrained $RESUME > $R/pretrained.log 2>&1 &
OMP_NUM_THREADS=1 nohup python train.py $COMMON --init random --out $R/random $RESUME > $R/random.log 2>&1 &
OMP_NUM_THREADS=1 nohup python train.py $COMMON --substrate mlp --out $R/mlp $RESUME > $R/mlp.log 2>&1 &
wait
