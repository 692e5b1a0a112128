#!/usr/bin/env bash
# Copy, step 1: the pretrained slice, 5,000 steps, fp32 (why:
# ../learnability.sh). Training on 1-20 vectors as the paper's; selection at 20, the training edge;
# evaluation also at 30 vectors, the paper's L30, and at 4, where a 400-step probe had moved.
# Usage: bash results/token_suite/copy/run.sh [OUT [LR...]]   (default OUT results/token_suite/copy/learn5k)
export TASK=copy
RATES=(1e-2 3e-2)     # 3e-2 only if 1e-2 does not learn (AR learned at 3e-2, not at 1e-2)
LENGTHS=(--train-len 20 --eval-lengths 4,10,20,30,40 --select-len 20)
source "$(dirname "$0")/../learnability.sh"
