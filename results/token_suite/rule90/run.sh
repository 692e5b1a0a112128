#!/usr/bin/env bash
# Rule 90, step 1: the pretrained slice, 5,000 steps, fp32 (why:
# ../learnability.sh). Training edge 20 cells and selection there, evaluation at the lengths of the
# paper's Table B.6.
# Usage: bash results/token_suite/rule90/run.sh [OUT [LR...]]   (default OUT results/token_suite/rule90/learn5k)
export TASK=rule90
RATES=(1e-2 3e-2)     # 3e-2 only if 1e-2 does not learn (AR learned at 3e-2, not at 1e-2)
LENGTHS=(--train-len 20 --eval-lengths 10,20,30,40,60 --select-len 20)
source "$(dirname "$0")/../learnability.sh"
