#!/usr/bin/env bash
# The CPU falsification table: embedded Gemma 3 270M, slice 6-11, copy and associative recall,
# 5 conditions x 2 seeds. Two runs at a time, one thread each (2-core machine).
# Usage: bash results/token_suite/run.sh   (from the repo root; safe to rerun: finished runs are skipped,
# interrupted ones resume from their last checkpoint)
set -u
cd "$(dirname "$0")/../.."
COMMON="--layers 6-11 --steps 700 --batch-size 16 --warmup 100 --eval-every 250 --eval-lengths 10,20,30 --eval-samples 128"
jobs=()
for seed in 0 1; do
  for task in ar copy; do
    TL=10
    for cond in "--init pretrained" "--init random" "--substrate none" "--substrate gpt2-random" "--substrate scratch"; do
      name=$(echo "$cond" | sed 's/--init /gemma-/; s/--substrate //')
      lr=3e-3; [ "$cond" = "--substrate scratch" ] && lr=5e-4
      out=results/token_suite/${task}__${name}__${seed}
      jobs+=("python train.py --task $task $cond --seed $seed --train-len $TL --lr $lr $COMMON --out $out")
    done
  done
done
run_one() {
  out=${1##*--out }
  if [ -f "$out/results.json" ] && python -c "import json,sys; r=json.load(open('$out/results.json')); sys.exit(r['steps_done'] < r['config']['steps'])"; then
    echo "done already: $out"; return
  fi
  resume=""; [ -f "$out/last.pt" ] && resume="--resume"
  echo "$1 $resume"
  mkdir -p "$(dirname "$out")"; OMP_NUM_THREADS=1 $1 $resume > "$out.log" 2>&1 || echo "FAILED: $out (see $out.log)"
}
export -f run_one
printf '%s\n' "${jobs[@]}" | xargs -P 2 -I{} bash -c 'run_one "$@"' _ {}
python evaluate.py --aggregate results/token_suite --metric best
python evaluate.py --aggregate results/token_suite --metric final
