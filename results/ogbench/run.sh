#!/usr/bin/env bash
# OGBench scene task1, Results 3 of results/ogbench/README.md (compare_15k.json): one seed each of
# layer 8 pretrained, layer 8 re-initialised at input scale 1 and at the calibrated scale, no body,
# and the MLP IQL, 15,000 steps, then the paired comparison. The three-seed follow-up is
# scene_3seeds/run.sh. The committed runs used --dtype bf16 for the slice; on a CPU without bf16
# matrix units a bf16 slice ran 28x slower than fp32 (results/bench/compare_dtypes_1x64_1thread_loaded.json), so
# DTYPE=fp32 is offered (not bit-identical).
# Usage: bash results/ogbench/run.sh [OUT]   (default runs/ogbench; one thread per run, two at a time)
# Data: python -m tasks.ogbench generate --env scene-play-v0 --episodes 300 --seed 0 (README "Data";
# each run records the file's sha256). Resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
out=${1:-runs/ogbench}
common=(--task ogbench --env scene-play-singletask-task1-v0 --batch-size 256 --eval-every 2500 --eval-episodes 50
        --eval-batch 25 --seed 0 --steps 15000)
slice=(--substrate gemma --layers 8 --dtype "${DTYPE:-bf16}" --obs-tokens 2 --target shared)
run() {   # folder, flags...
    local dir=$out/$1; shift
    if [ -f "$dir/results.json" ] && python -c "import json,sys; sys.exit(json.load(open('$dir/results.json'))['steps_done'] < 15000)"; then
        return 0
    fi
    if [ -f "$dir/last.pt" ]; then python train.py --resume "$dir"; else python train.py "${common[@]}" "$@" --out "$dir"; fi
}
run L8_pretrained "${slice[@]}" &
run L8_random-init_scale1 "${slice[@]}" --init random --input-scale 1
wait
run L8_random-init "${slice[@]}" --init random &
run none --substrate none --obs-tokens 2 --target shared
wait
run mlp_15k --substrate mlp
python -m tasks.ogbench compare "$out/L8_pretrained" "$out/L8_random-init_scale1" "$out/L8_random-init" "$out/none" \
    "$out/mlp_15k" --out "$out/compare_15k.json"
