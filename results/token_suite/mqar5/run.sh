#!/usr/bin/env bash
# MQAR at five seeds per condition: the suite of ../mqar/ rerun under the protocol as it now stands,
# for the README's headline ratio. Every condition's grid edges are closed wherever any input-scale
# choice's best rate sits at an edge; the confirmation reruns each input-scale choice's best rate and
# its two ladder neighbours on seed 0 at the full 600 steps (and the rate beyond, where the best of
# those is the highest or lowest) and chooses there; then seeds 1-5 of every
# condition at its confirmed setting (seed 0 is the search's), held-out evaluation of every best.pt
# on 1,024 sequences per length, summary.json with the ratio of means, the geometric mean of per-seed
# ratios and the binomial bound where a pretrained seed makes no error.
# Usage: bash results/token_suite/mqar5/run.sh [OUT]   (default results/token_suite/mqar5)
#   JOBS (default 1): runs at once, one thread each. DTYPE (default auto: fp32 on a CPU): the frozen
#   body's precision for the whole suite; set DTYPE=bf16 where `python bench.py --compare-dtypes`
#   finds it faster (the folder keeps the dtype it started in). Resumable: run it again with the same
#   settings.
# Cost: search 4 conditions x 3 input-scale choices x at least 3 rates x 150 steps, plus the edges;
#   confirmation up to 4 x 3 x 3 runs x 600 steps; seeds 4 x 5 x 600: about 40K steps, 8-12 core-hours
#   in fp32 on this CPU (a step costs about 1 s), about half that in bf16 where it is faster.
set -euo pipefail
out=${1:-}
[ -n "$out" ] && out=$(realpath -m "$out")
cd "$(dirname "$0")/../../.."
out=${out:-results/token_suite/mqar5}
python sweep.py --task mqar --conditions pretrained,random-init,shuffled,matched --out "$out" \
    --train-len 6 --eval-lengths 4,8,12,16 --select-len 8 --search-steps 150 --steps 600 --eval-every 150 \
    --batch-size 32 --warmup 50 --eval-samples 256 --eval-samples-final 1024 --confirm --seeds 5 \
    --dtype "${DTYPE:-auto}" --jobs "${JOBS:-1}"
# the held-out table, read back from the runs' eval_best.json
python evaluate.py --aggregate "$out/runs" --stream held-out --out "$out/aggregate_held-out.json" --force
