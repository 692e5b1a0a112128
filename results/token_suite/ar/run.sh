#!/usr/bin/env bash
# Associative recall (NTM layout), step 1: the pretrained slice at two rates, 5,000 steps each, fp32
# (why: ../learnability.sh). Training on 2-6 items as the first AR
# suite; selection at 6 items, the training edge; evaluation also at 30 items, the paper's L30.
# Usage: bash results/token_suite/ar/run.sh [OUT [LR...]]   (default OUT results/token_suite/ar/learn5k)
export TASK=ar
RATES=(1e-2 3e-2)
LENGTHS=(--train-len 6 --eval-lengths 4,6,8,12,16,30 --select-len 6)
source "$(dirname "$0")/../learnability.sh"
