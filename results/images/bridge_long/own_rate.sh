#!/usr/bin/env bash
# A seed at the rate the learning-rate check (search.sh) chose for a body, when that differs from the
# rate run.sh uses: `bash results/images/bridge_long/own_rate.sh CONDITION LR SEED`, CONDITION one of
# bridge, bridge-partial, bridge-random-init, bridge-partial-random-init, pretrained, random-init.
# Same flags as run.sh (bridged) or the unbridged seed runs, only the rate differs; then evaluate.py
# on best.pt. Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
cond=${1:?condition}; lr=${2:?learning rate}; seed=${3:?seed}
flags=(--task images --dataset mnist5k --patch 7 --batch-size 32 --warmup 50 --steps 400 --eval-every 100 --seed "$seed" --lr "$lr")
bridge=(--bridge-images 1000 --bridge-until-acc 0.9 --bridge-steps 6000)
case $cond in
    bridge) flags+=("${bridge[@]}" --input-scale auto); done_at=6400 ;;
    bridge-partial) flags+=("${bridge[@]}" --input-scale auto --bridge-layers 8-11); done_at=6400 ;;
    bridge-random-init) flags+=("${bridge[@]}" --input-scale 1 --init random); done_at=6400 ;;
    bridge-partial-random-init) flags+=("${bridge[@]}" --input-scale 1 --init random --bridge-layers 8-11); done_at=6400 ;;
    pretrained) flags+=(--input-scale auto); done_at=400 ;;
    random-init) flags+=(--input-scale 1 --init random); done_at=400 ;;
    *) echo "unknown condition $cond" >&2; exit 2 ;;
esac
out=results/images/bridge_long/own_rate/${cond}__lr${lr}__${seed}
if ! { [ -f "$out/results.json" ] && python -c "import json,sys; sys.exit(json.load(open('$out/results.json'))['steps_done'] < $done_at)"; }; then
    python train.py "${flags[@]}" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
fi
[ -f "$out/eval_best.json" ] || python evaluate.py --ckpt "$out/best.pt"
