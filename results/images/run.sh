#!/usr/bin/env bash
# The image suite of results/README.md (images/): sweep.py's fair protocol on 5,000 MNIST digits, 7x7
# patches, with exactly the flags results/images/sweep.json records under "protocol". The long bridge
# has its own scripts in bridge_long/.
# Usage: bash results/images/run.sh [OUT]   (default runs/images; give results/images to rebuild the
# committed suite in place). JOBS runs at a time (default 2), one thread each; resumable: run it again.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/images}
python sweep.py --task images --dataset mnist5k --patch 7 --out "$out" --model gemma3-270m --layers 6-11 \
    --conditions pretrained,random-init,shuffled,matched,gpt2-random,scratch,none --input-scales auto,1 \
    --search-steps 150 --steps 400 --eval-every 100 --batch-size 32 --warmup 50 --confirm --jobs "${JOBS:-2}"
python evaluate.py --aggregate "$out/runs" --stream held-out --out "$out/aggregate_held-out.json" --force
