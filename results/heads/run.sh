#!/bin/bash
# Head analysis on solved checkpoints only (results/README.md, "heads/"). Which checkpoints are
# solved is read from each run's own held-out file (eval_best.json), never listed by hand:
#   token tasks: per-bit error at the ablation length (MQAR: 8 pairs) at most 0.1, a fifth of chance;
#   images: test accuracy at least 0.5, five times chance.
# Every head of slice 6-11 is zeroed in turn on the same 512 held-out sequences of the ablation length
# or the same 1,000 test images; each output records the sha256 of the checkpoint it read.
# Then, per token task: the joint test (text probe against each solved pretrained seed), fingerprint
# stability among the solved pretrained seeds, and for each frozen-slice control (random-init,
# shuffled, matched) its solved seeds beside the pretrained ones. A trainable stack (scratch) has no
# frozen Gemma heads to set beside the text probe and is not ablated.
# Usage: bash results/heads/run.sh [OUT [MQAR_RUNS [IMAGE_RUNS]]]
#   (paths as seen from where it is called) defaults: runs/heads, results/token_suite/mqar/runs, results/images/runs (their best.pt must exist:
#   checkpoints are not kept in git, so this runs where the suites ran). An existing sweep (the costly
#   part) is kept: pass a new folder, or delete its file, to redo it; the joint and stability tests are
#   recomputed from the sweeps every time. Two sweeps at a time, one thread each. PROBE names the
#   text-probe file of the same model (default results/probe/probe_gemma3-270m.json).
#   TOKEN_SUITES adds token suites after MQAR's, as TASK:RUNS:LENGTH separated by spaces, e.g.
#   TOKEN_SUITES="ar:results/token_suite/ar/suite5k/runs:6 copy:results/token_suite/copy/suite5k/runs:10";
#   outputs are named by task (ablate_ar_pretrained_s1.json, joint_ar_pretrained_s1.json, stability_ar.json);
#   entries are split at spaces, so their paths may not hold one.
set -euo pipefail
given=$#
args=()
for a in "$@"; do args+=("$(realpath -m "$a")"); done     # as given, before moving to the repository root
suites=()
for spec in ${TOKEN_SUITES:-}; do
    t=${spec%%:*}; l=${spec##*:}; r=${spec#*:}; r=${r%:*}     # the path between may hold ':'
    [[ "$spec" == *:*:* && -n "$t" && -n "$r" && "$l" =~ ^[0-9]+$ ]] || { echo "error: TOKEN_SUITES entry '$spec': give TASK:RUNS:LENGTH" >&2; exit 2; }
    [ -d "$r" ] || { echo "error: no $t runs folder $r" >&2; exit 2; }
    suites+=("$t:$(realpath -m "$r"):$l")
done
cd "$(dirname "$0")/../.."
H=${args[0]:-runs/heads}; S=${args[1]:-results/token_suite/mqar/runs}; I=${args[2]:-results/images/runs}
[ -d "$S" ] || { echo "error: no MQAR runs folder $S" >&2; exit 2; }
if [ "$given" -ge 3 ] && [ ! -d "$I" ]; then echo "error: no image runs folder $I" >&2; exit 2; fi
PROBE=${PROBE:-results/probe/probe_gemma3-270m.json}
mkdir -p "$H"
export OMP_NUM_THREADS=1
suites=("mqar:$S:8" ${suites[@]+"${suites[@]}"})

solved() {   # folder key threshold above|below: exit 0 if the run's held-out value passes, 1 if not,
             # 2 if it cannot be read (a missing eval_best.json or key stops the script, never reads as unsolved)
    python - "$@" <<'EOF'
import json, sys
from tables import lookup
folder, key, limit, side = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
try:
    value = float(lookup(json.load(open(f"{folder}/eval_best.json")), key))
except Exception as e:
    print(f"error: {folder}/eval_best.json: cannot read {key}: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)
ok = value <= limit if side == "below" else value >= limit
print(f"{folder}: {key} = {value:.4f} -> {'solved' if ok else 'not solved, not ablated'}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}
is_solved() {   # as solved, but a read error stops the script
    local rc=0
    solved "$@" || rc=$?
    [ "$rc" -le 1 ] || exit "$rc"
    return "$rc"
}

PIDS=()
sweep() {   # checkpoint, output, extra flags: in the background, two at a time; skipped if the output
            # exists and read this very checkpoint (same sha256) at the --lengths asked, refused otherwise
    local want=""
    [ "${3:-}" = "--lengths" ] && want=$4
    if [ -f "$2" ]; then
        python -c "
import json, sys
from runs import file_sha256
a = json.load(open('$2'))
kept = a.get('checkpoint_sha256')
if kept != file_sha256('$1'):
    sys.exit(f'error: $2 read another checkpoint than $1 (sha256 {kept}); delete it to redo it')
if '$want' and a.get('lengths') != [int('$want')]:
    sys.exit(f'error: $2 swept length {a.get(\"lengths\")}, not $want; delete it to redo it')" || exit 2
        echo "keeping $2"; return 0
    fi
    python ablate.py --ckpt "$1" "${@:3}" --out "$2" &
    PIDS+=($!)
    if [ ${#PIDS[@]} -ge 2 ]; then drain; fi
}
drain() {   # wait for every sweep under way; a failed one stops the script (a bare `wait` would hide it)
    for pid in "${PIDS[@]}"; do wait "$pid"; done
    PIDS=()
}

token_suite() {   # task runs length: sweep the solved seeds, then the joint and stability tests;
                  # sets P to the pretrained sweeps (empty: no solved pretrained seed)
    local task=$1 runs=$2 len=$3 c d s f C found=0
    declare -A SOLVED=()     # condition -> space-separated ablation files of its solved seeds
    for c in pretrained random-init shuffled matched; do
        for d in "$runs"/"$task"__"$c"__*; do
            [ -d "$d" ] || continue
            found=$((found + 1))
            s=${d##*__}
            is_solved "$d" "errors.$len" 0.1 below || continue
            f=$H/ablate_${task}_${c}_s$s.json
            SOLVED[$c]="${SOLVED[$c]:-} $f"
            sweep "$d/best.pt" "$f" --lengths "$len" --samples 512
        done
    done
    drain
    [ "$found" -gt 0 ] || { echo "error: no ${task}__CONDITION__SEED runs in $runs" >&2; exit 2; }
    P=${SOLVED[pretrained]:-}
    [ -n "$P" ] || { echo "$task: no solved pretrained checkpoint in $runs: nothing to compare" >&2; return 0; }
    for f in $P; do     # the text probe's copy heads against each seed's ablation
        python ablate.py --joint "$PROBE" "$f" --out "$H/joint_${f##*/ablate_}" --force
    done
    if [ "$(echo $P | wc -w)" -ge 2 ]; then
        python ablate.py --stability $P --out "$H/stability_$task.json" --force
    fi
    for c in random-init shuffled matched; do      # each control's seeds beside the pretrained ones
        C=${SOLVED[$c]:-}
        if [ -n "$C" ]; then python ablate.py --stability $C $P --out "$H/stability_${task}_$c.json" --force; fi
    done
}

MQAR_P=""
for spec in "${suites[@]}"; do
    t=${spec%%:*}; l=${spec##*:}; r=${spec#*:}; r=${r%:*}
    token_suite "$t" "$r" "$l"
    if [ "$t" = mqar ]; then
        [ -n "$P" ] || exit 1     # the MQAR suite is the reference every other analysis is set beside
        MQAR_P=$P
    fi
done
P=$MQAR_P

# Across tasks: the pretrained image classifiers on the same slice 6-11 (results/images/, mnist5k)
IMG=""
for d in "$I"/images__pretrained__*; do
    [ -d "$d" ] || continue
    is_solved "$d" accuracy.test 0.5 above || continue
    f=$H/ablate_images_pretrained_s${d##*__}.json
    IMG="$IMG $f"
    sweep "$d/best.pt" "$f"
done
drain
if [ -n "$IMG" ]; then python ablate.py --stability $IMG $P --out "$H/stability_images_mqar.json" --force; fi
echo "head analyses in $H"
