#!/usr/bin/env bash
# Scene task1 at three seeds (pretrained layer 8, layer 8 re-initialised at input scale 1, MLP IQL),
# the settings of Results 3 in ../README.md: the slice in $SLICE_DTYPE (default bf16, as Results 3) for
# every condition and seed; SLICE_DTYPE=fp32 on a CPU without bf16 matrix units, where bf16 runs 28x
# slower (results/bench/compare_dtypes_1x64_1thread_loaded.json), into a fresh OUT for every seed.
# Every seed of every condition reads one generated
# file, whose sha256 each results.json records and --resume checks.
# Usage: bash results/ogbench/scene_3seeds/run.sh OUT SEED CONDITION...   (one thread each)
#   OUT: folder of the runs (e.g. results/ogbench/scene_3seeds/runs); conditions: pretrained, random-init-scale1, mlp
#   STEPS=30000 continues a finished run further (same flags, --resume).
# Resumable: run it again with the same arguments.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
dest=${1:?give the output folder}; seed=${2:?give the seed}; shift 2
steps=${STEPS:-15000}
common=(--task ogbench --env scene-play-singletask-task1-v0 --batch-size 256 --eval-every 2500 --eval-episodes 50
        --eval-batch 25 --seed "$seed" --steps "$steps")
slice=(--substrate gemma --layers 8 --dtype "${SLICE_DTYPE:-bf16}" --obs-tokens 2 --target shared)
run() {   # name, flags...
    local out=$dest/$1__$seed; shift
    if [ -f "$out/results.json" ] && python -c "import json,sys; sys.exit(json.load(open('$out/results.json'))['steps_done'] < $steps)"; then
        return 0
    fi
    python train.py "${common[@]}" "$@" --out "$out" $([ -f "$out/last.pt" ] && echo --resume)
}
for c in "$@"; do
    case $c in
        pretrained)         run L8_pretrained "${slice[@]}" ;;
        random-init-scale1) run L8_random-init_scale1 "${slice[@]}" --init random --input-scale 1 ;;
        mlp)                run mlp --substrate mlp ;;
        *) echo "unknown condition $c" >&2; exit 2 ;;
    esac
done
