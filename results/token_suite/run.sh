#!/usr/bin/env bash
# The token suites of results/README.md (token_suite/mqar, ar, rule90): sweep.py's fair protocol with
# exactly the flags each suite's sweep.json records under "protocol" (input-scale choices included:
# ar and rule90 ran before the scale-1 choice was added to the search, and before the floor check,
# which would refuse every one of their choices: --no-floor-check reproduces them).
# Usage: bash results/token_suite/run.sh [OUT] [SUITE...]
#   OUT: folder of the suites (default runs/token_suite; give results/token_suite to rebuild the
#   committed ones in place); SUITE: mqar, ar, rule90 (default all three, one after the other).
# Two runs at a time, one thread each; resumable: run it again with the same arguments.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/token_suite}
shift || true
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(mqar ar rule90)
common=(--model gemma3-270m --layers 6-11 --search-steps 150 --steps 600 --eval-every 150 --batch-size 32
        --warmup 50 --eval-samples 256 --jobs 2 --first-seed 0)   # these suites' seeds started at 0
for s in "${suites[@]}"; do
    case $s in
        mqar)   python sweep.py --task mqar "${common[@]}" --out "$out/mqar" --conditions pretrained,random-init,shuffled,matched \
                    --train-len 6 --eval-lengths 4,8,12,16 --track-lengths 8 --select-len 8 --input-scales auto,learn,1 \
                    --eval-samples-final 1024 --confirm ;;
        ar)     python sweep.py --task ar "${common[@]}" --out "$out/ar" --conditions pretrained,random-init,gpt2-random,scratch,none \
                    --train-len 6 --eval-lengths 4,8,12,16 --track-lengths 8 --select-len 8 --input-scales auto,learn \
                    --eval-samples-final 1024 --no-floor-check ;;
        rule90) python sweep.py --task rule90 "${common[@]}" --out "$out/rule90" --conditions pretrained,random-init,gpt2-random,scratch,none \
                    --train-len 20 --eval-lengths 10,20,30,40,60 --track-lengths 20 --select-len 20 --input-scales auto,learn \
                    --eval-samples-final 256 --no-floor-check ;;
        *) echo "unknown suite $s (mqar, ar, rule90)" >&2; exit 2 ;;
    esac
    # the held-out table of the README, read back from the runs' eval_best.json
    python evaluate.py --aggregate "$out/$s/runs" --stream held-out --out "$out/$s/aggregate_held-out.json" --force
done
