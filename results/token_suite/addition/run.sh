#!/usr/bin/env bash
# Binary addition (LSB first), step 1: the pretrained slice, 5,000 steps, fp32 (why:
# ../learnability.sh). Training on 1-20-bit operands like copy and Rule 90;
# selection at 20 bits, the training edge; evaluation also at 30, the paper's L30.
# Usage: bash results/token_suite/addition/run.sh [OUT [LR...]]   (default OUT results/token_suite/addition/learn5k)
export TASK=addition
RATES=(1e-2 3e-2)     # 3e-2 only if 1e-2 does not learn (AR learned at 3e-2, not at 1e-2)
LENGTHS=(--train-len 20 --eval-lengths 10,20,30,40 --select-len 20)
source "$(dirname "$0")/../learnability.sh"
