#!/bin/bash
# Head analysis on solved checkpoints only (see results/README.md, "heads/"): a checkpoint counts as
# solved when its held-out per-bit error at the ablation length is at most 0.1 (a fifth of chance).
# On the mqar suite that admits the three pretrained and the three random-init seeds; the other
# controls stay far above it. Image checkpoints count as solved at a test accuracy of at least 0.5
# (five times chance); results/images/ runs must exist with their best.pt (sweep.py, see results/README.md).
# Usage: bash results/heads/run.sh [OUT]   (default runs/heads; an existing output is kept: pass a new
# folder, or delete the old files, to redo one)
set -e
cd "$(dirname "$0")/../.."
S=results/archive/mqar_first/runs   # the first MQAR suite (results/README.md: archive/mqar_first)
H=${1:-runs/heads}
mkdir -p "$H"
for s in 0 1 2; do      # every head of slice 6-11 zeroed in turn, same 512 held-out sequences of 8 pairs
  OMP_NUM_THREADS=1 python ablate.py --ckpt $S/mqar__pretrained__$s/best.pt --lengths 8 --samples 512 \
      --out $H/ablate_mqar_pretrained_s$s.json &
  if [ $s = 1 ]; then wait; fi
done
wait
for s in 0 1 2; do      # the random-init slice's seeds, same sequences: does a re-initialised slice use other heads?
  OMP_NUM_THREADS=1 python ablate.py --ckpt $S/mqar__random-init__$s/best.pt --lengths 8 --samples 512 \
      --out $H/ablate_mqar_random-init_s$s.json
done
python ablate.py --joint results/probe/probe_gemma3-270m.json $H/ablate_mqar_pretrained_s0.json --out $H/joint_mqar_L6-11.json
python ablate.py --stability $H/ablate_mqar_pretrained_s0.json $H/ablate_mqar_pretrained_s1.json \
    $H/ablate_mqar_pretrained_s2.json --out $H/stability_mqar.json
python ablate.py --stability $H/ablate_mqar_random-init_s0.json $H/ablate_mqar_random-init_s1.json \
    $H/ablate_mqar_random-init_s2.json $H/ablate_mqar_pretrained_s0.json $H/ablate_mqar_pretrained_s1.json \
    $H/ablate_mqar_pretrained_s2.json --out $H/stability_mqar_random-init.json

# Across tasks: the image classifiers on the same slice 6-11 (results/images/, mnist5k), each head
# zeroed in turn and the same 1,000 test images re-scored (impact = accuracy drop)
I=results/images/runs
for s in 0 1 2; do      # the three pretrained seeds; the random-init image classifiers were not ablated (CPU time)
  OMP_NUM_THREADS=1 python ablate.py --ckpt $I/images__pretrained__$s/best.pt --out $H/ablate_images_pretrained_s$s.json &
  if [ $s = 1 ]; then wait; fi
done
wait
python ablate.py --stability $H/ablate_images_pretrained_s0.json $H/ablate_images_pretrained_s1.json \
    $H/ablate_images_pretrained_s2.json $H/ablate_mqar_pretrained_s0.json $H/ablate_mqar_pretrained_s1.json \
    $H/ablate_mqar_pretrained_s2.json --out $H/stability_images_mqar.json
