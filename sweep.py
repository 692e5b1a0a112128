"""
The fair protocol for one token task: the same search for every condition, then seeds, then a
held-out evaluation and a summary with intervals over seeds. Resumable: run it again and it continues.

    python sweep.py --task ar --out results/token_suite/ar --train-len 6 --eval-lengths 4,8,12,16 \\
        --select-len 8 --search-steps 150 --steps 600 --eval-every 150 --jobs 2

1. search (seed 0, --search-steps): every condition gets a 3-value learning-rate grid (the fully
   trainable scratch model its own, lower grid; --lrs / --scratch-lrs move them) crossed with the
   input-scale choices (--input-scales, default auto, learn and 1) for every condition that has an
   input scale. The winner is the lowest error at --select-len on
   the validation stream (seed + 1) at the end of the short run. A search at the full budget
   (--search-steps at least --steps, for a task that leaves its floor late) evaluates every
   --eval-every steps and scores each run by its best evaluation, the checkpoint a seed run keeps,
   as the confirmation does (one evaluation at the end of a long, noisy curve can land on a
   spike); every evaluation it looked at counts as a try against the floor. Wherever the best rate of any
   input-scale choice of a condition is at an end of its grid, that grid gets the next rate beyond
   it (x ~3.3), again until no best rate sits at an end (or the ladder ends: sweep.json's
   open_edges), so no condition is held back by where its grid happened to stop. Every search run
   is kept. With --confirm, each condition's best learning rate for every input-scale choice and its
   two ladder neighbours are then rerun on seed 0 for --steps (the seed budget) and the setting is
   chosen again on validation at that budget: a short search can favour a rate that starts fast and
   plateaus; a confirmed best at the highest or lowest rate rerun gets the next rate beyond it at the
   full budget too, until none sits at an end (cost: up to 3 x input-scale choices full-length runs
   per condition, and one more for each ladder step the edge rule takes; --confirm-scales best: 3,
   the search's best input-scale choice only, unless the condition's search sat at the floor; a
   condition whose search sat at the floor then gets its whole searched grid at the full budget, as
   the search could not rank its rates either; so does, in either mode, an input-scale choice whose
   own search sat at the floor).
   Token tasks: no choice from noise. A condition whose chosen validation error (the lowest of all
   its search and confirmation looked at) does not beat the task's no-learning floor at --select-len
   by a clear margin (tasks/floors.py: what a query- or data-blind predictor could reach by luck
   after that many tries) is recorded as not learned at this budget and gets no seeds. sweep.json and
   summary.json record the floor at every length, summary.json the conditions not learned.
2. seeds (--steps, fixed in advance): each condition at its winning setting, seeds --first-seed
   onwards (pretrained and random-init: 3, the other controls: 2; --seeds N: N for all). The default
   first seed is 1: seed 0 is the search's, and its run at the chosen setting won on its own
   validation curve, a draw of luck a reported seed should not carry (the suites committed before
   this start at 0, as their run.sh says).
3. evaluate: best.pt of every seed on the held-out stream (seed + 2, --eval-samples-final sequences
   per length), then OUT/summary.json: mean, std, range, bootstrap 95% CI and t interval per
   condition and length, and control/pretrained as the ratio of the means and the geometric mean of
   per-seed ratios (seeds paired by index; a zero pretrained error at its binomial bound from the
   held-out sequences, stats.error_ratios).
   --restate recomputes these statistics of a finished suite from its runs' eval_best.json.

Images (--task images --dataset D --patch P): the same three phases; the search and best.pt use the
validation error rate (1 - accuracy), the summary reports test accuracy and the mean over seeds of
per-seed differences pretrained - control. --bridge-steps N adds Luo & Shen's bridge conditions:
bridge (every layer of the slice), bridge-partial (--bridge-partial, default the slice without its
first two layers) and bridge-random-init (the control), each followed by the usual frozen run.

    python sweep.py --task images --dataset mnist5k --patch 7 --out results/images --batch-size 64 \
        --search-steps 150 --steps 400 --eval-every 100 --bridge-steps 200 --input-scales auto

Each run is a plain `train.py` / `evaluate.py` subprocess (one thread each, --jobs at a time), so
every number here can be reproduced run by run from the commands in OUT/sweep.json.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import model as M
import pretrained
import stats
import tables
import tasks
from runs import LADDER, Stopped, UserError, dtype_name, ladder_index, pick_device, portable, resolve_dtype, run_main
from runs import read_json, save_atomic

REPO = Path(__file__).resolve().parent
# condition -> (train.py flags, seeds in phase 2, learning-rate grid, whether --input-scales applies)
FROZEN_LRS, SCRATCH_LRS = ("3e-4", "1e-3", "3e-3"), ("1e-4", "3e-4", "1e-3")
CONDITIONS = {
    "pretrained": (["--substrate", "gemma", "--init", "pretrained"], 3, FROZEN_LRS, True),
    "random-init": (["--substrate", "gemma", "--init", "random"], 3, FROZEN_LRS, True),
    "shuffled": (["--substrate", "gemma", "--init", "shuffled"], 3, FROZEN_LRS, True),   # pretrained values, no structure
    "matched": (["--substrate", "gemma", "--init", "matched"], 3, FROZEN_LRS, True),     # pretrained moments, no structure
    "gpt2-random": (["--substrate", "gpt2-random"], 2, FROZEN_LRS, True),
    "scratch": (["--substrate", "scratch"], 2, SCRATCH_LRS, True),
    "none": (["--substrate", "none"], 2, FROZEN_LRS, False),  # W_out RMSNorm(s W_in x): s cancels, first choice only
}
# --task images with --bridge-steps N: Luo & Shen's random-label bridge, then the same frozen run
BRIDGES = {
    "bridge": (["--substrate", "gemma", "--init", "pretrained"], 2, FROZEN_LRS, True),          # every layer of the slice
    "bridge-partial": (["--substrate", "gemma", "--init", "pretrained"], 2, FROZEN_LRS, True),  # --bridge-partial layers
    "bridge-random-init": (["--substrate", "gemma", "--init", "random"], 2, FROZEN_LRS, True),   # the bridge's control
}


def conditions_of(args):
    """The conditions table, with the learning-rate grids of --lrs / --scratch-lrs where given."""
    table = {**CONDITIONS, **(BRIDGES if args.bridge_steps else {})}
    grid = lambda c: getattr(args, "scratch_lrs" if c == "scratch" else "lrs", None)   # None in older records
    return {c: (f, n, tuple(grid(c).split(",")) if grid(c) else lrs, sc) for c, (f, n, lrs, sc) in table.items()}


def seed_count(args, condition):
    """Phase-2 seeds of one condition: --seeds for every condition alike, else the table's count."""
    n = getattr(args, "seeds", None)               # records written before --seeds have none
    return n if n is not None else condition[1]


def scale_choices(condition, choices):
    """The input scales one condition is searched over: none for a body-less condition (s cancels in
    W_out RMSNorm(s W_in x), so the first choice only), and for the GPT-2 stacks no numeric 1, which
    is exactly what their 'auto' gives (running it twice would only repeat a run)."""
    flags, _, _, has_scale = condition
    if not has_scale:
        return choices[:1]
    if "gemma" not in flags and "auto" in choices:
        return [s for s in choices if s in ("auto", "learn") or float(s) != 1.0]
    return choices


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="token task (mqar, ar, rule90, copy, addition) or images; required unless --table")
    p.add_argument("--out", required=True, help="folder for search/, runs/, sweep.json and summary.json")
    p.add_argument("--model", default=pretrained.DEFAULT_MODEL, help="as train.py --model (default gemma3-270m)")
    p.add_argument("--layers", default="6-11", help="as train.py --layers (default 6-11)")
    p.add_argument("--conditions", default=None,
                   help=f"subset of {','.join(CONDITIONS)} (images with --bridge-steps also {','.join(BRIDGES)}; default: all)")
    p.add_argument("--train-len", type=int, default=10, help="token tasks: training length edge, as train.py (default 10)")
    p.add_argument("--eval-lengths", default="10,20,30,40,60",
                   help="token tasks: lengths of the held-out evaluation at the end, as train.py (default 10,20,30,40,60)")
    p.add_argument("--track-lengths", help="lengths evaluated on the validation stream during training (default: "
                   "--select-len only, which is all the selection needs; every evaluated length costs time)")
    p.add_argument("--select-len", type=int, default=30,
                   help="token tasks: length whose validation error picks the setting and best.pt, as train.py (default 30)")
    p.add_argument("--dataset", default="mnist5k", help="images: as train.py --task images --dataset (default mnist5k)")
    p.add_argument("--patch", type=int, default=4, help="images: patch side (default 4)")
    p.add_argument("--data-dir", default="data/images", help="images: as train.py --data-dir (default data/images)")
    p.add_argument("--readout", default="mean", choices=("mean", "last"), help="images: as train.py --readout (default mean)")
    p.add_argument("--augment", action="store_true", help="images: CIFAR's crop and flip while training, every condition")
    p.add_argument("--image-size", type=int, default=None, help="images: resize to this size (default: the dataset's)")
    p.add_argument("--bridge-steps", type=int, default=0,
                   help="images: > 0 adds the bridge conditions (bridge, bridge-partial, bridge-random-init) with this many bridge steps")
    p.add_argument("--bridge-partial", default=None,
                   help="images: --bridge-layers of the bridge-partial condition (default: the slice without its first two layers)")
    p.add_argument("--bridge-images", type=int, default=0,
                   help="images: the bridge conditions' --bridge-images (default 0: the whole training split)")
    p.add_argument("--bridge-until-acc", type=float, default=0.0,
                   help="images: the bridge conditions' --bridge-until-acc; --bridge-steps is then the cap (default 0: off)")
    p.add_argument("--input-scales", default="auto,learn,1",
                   help="input-scale choices every condition with a body is searched over, as train.py --input-scale "
                        "(default auto,learn,1: the calibrated scale, the same learnt, and a small start; the GPT-2 "
                        "stacks skip a 1, which is what their auto already is; give numbers for a model without a "
                        "tokenizer to calibrate with)")
    p.add_argument("--lrs", default=None,
                   help=f"learning-rate grid the search starts from, for every condition but scratch, rates of the "
                        f"ladder {','.join(LADDER)} (default {','.join(FROZEN_LRS)}); a task that learns only at "
                        f"other rates needs its grid there, or a search at the floor chooses from noise")
    p.add_argument("--scratch-lrs", default=None,
                   help=f"the same for scratch, the fully trainable stack (default {','.join(SCRATCH_LRS)})")
    p.add_argument("--search-steps", type=int, default=200,
                   help="steps per search run (default 200); long enough that a setting which learns is off the "
                        "floor by then, or the search cannot tell settings apart. At least --steps: the search "
                        "runs evaluate every --eval-every and are scored by their best evaluation, as seed runs "
                        "keep their best checkpoint (a shorter search is scored at its end); --confirm is then "
                        "refused, as it would rerun the same budget")
    p.add_argument("--steps", type=int, default=1000, help="steps per seed run, fixed before the search (default 1000)")
    p.add_argument("--confirm", action="store_true",
                   help="after the search, rerun each condition's best learning rate and its two ladder neighbours "
                        "for every input-scale choice on seed 0 for --steps and choose among them by validation at "
                        "that budget (a choice whose search sat at the task's floor: every rate it searched); where the "
                        "best of those sits at the highest or lowest rate rerun, the next ladder "
                        "rate beyond it is rerun too, until none does (or the ladder ends: sweep.json's "
                        "confirm_open_edges). Cost: up to 3 x (input-scale choices) runs of --steps per condition, "
                        "and one more for each ladder step the edge rule takes, as many full-length runs as that "
                        "many seeds (default: the short search decides alone)")
    p.add_argument("--confirm-scales", default="all", choices=("all", "best"),
                   help="with --confirm: all (default) confirms every input-scale choice; best only the search's "
                        "best choice of each condition, unless that condition's search did not beat the task's "
                        "floor (it could rank neither rates nor scales: then every setting it searched is "
                        "confirmed, and the many tries make that condition's floor margin stricter). Cost: up to "
                        "3 full-length runs per condition that left the floor, instead of up to 3 x input-scale "
                        "choices")
    p.add_argument("--floor-check", action=argparse.BooleanOptionalAction, default=True,
                   help="token tasks: give no seeds to a condition whose chosen validation error does not beat the "
                        "no-learning floor by the margin of tasks/floors.py (default on; --no-floor-check seeds it "
                        "anyway, as the suites summarised before the check did, and still records the verdict)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seed runs per condition in phase 2 (default: 3 for pretrained and the re-initialised "
                        "controls, 2 for the others); raising it later trains only the added seeds")
    p.add_argument("--first-seed", type=int, default=1,
                   help="the first of the seed runs' seeds (default 1: seed 0 is the search's and confirmation's, "
                        "selected on its own validation curve; 0 reproduces the suites committed before this flag)")
    p.add_argument("--eval-every", type=int, default=250, help="evaluation period of the seed runs (default 250)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences (images) per step (default 32)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps (default 50)")
    p.add_argument("--eval-samples", type=int, default=256, help="validation sequences per length (default 256)")
    p.add_argument("--eval-samples-final", type=int, default=1024, help="held-out sequences per length (default 1024)")
    p.add_argument("--compile", action="store_true", help="every run with train.py --compile (held-out evaluation follows)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                   help="every run's train.py --dtype, the precision of the frozen body (default auto: bf16 on CUDA, "
                        "fp32 on CPU). On a CPU with bf16 matrix units bf16 can be twice as fast, on one without "
                        "it is far slower: `python bench.py --compare-dtypes` says which. A folder keeps the dtype "
                        "it started with")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each (default 2)")
    p.add_argument("--phase", default="all", choices=("search", "seeds", "evaluate", "all"), help="stop after this phase")
    p.add_argument("--restate", action="store_true",
                   help="only recompute OUT/summary.json's statistics (per condition and against pretrained) from "
                        "OUT/sweep.json and each seed run's eval_best.json, training and evaluating nothing: for a "
                        "suite whose checkpoints are gone when the statistics change")
    p.add_argument("--table", action="store_true",
                   help="only print OUT/summary.json as markdown tables (report.py puts the same tables into the "
                        "results READMEs)")
    return p


def train_cmd(args, cond, lr, scale, seed, steps, eval_every, out):
    flags = conditions_of(args)[cond][0]
    task_flags = tasks.module(args.task).sweep_flags(args)
    if cond in BRIDGES:
        task_flags += ["--bridge-steps", str(args.bridge_steps)]
        task_flags += ["--bridge-layers", args.bridge_partial] if cond == "bridge-partial" else []
        task_flags += ["--bridge-images", str(args.bridge_images)] if args.bridge_images else []
        task_flags += ["--bridge-until-acc", str(args.bridge_until_acc)] if args.bridge_until_acc else []
    return ["train.py", "--task", args.task, "--model", args.model, "--layers", args.layers, *flags,
            "--lr", lr, "--input-scale", scale, "--seed", str(seed), "--steps", str(steps),
            "--eval-every", str(eval_every), "--batch-size", str(args.batch_size), "--warmup", str(args.warmup),
            "--dtype", args.dtype, *task_flags, *(["--compile"] if args.compile else []), "--out", str(out)]


def finished(out, steps):
    """Has the run in `out` done `steps` training steps (an image run's bridge steps come on top)?"""
    f = out / "results.json"
    if not f.exists():
        return False
    r = read_json(f)
    return r["steps_done"] - r["config"].get("bridge_steps", 0) >= steps


# The runs a sweep started and still waits on. Each runs in its own session, so a signal meant for the
# sweep (Ctrl-C in its terminal, `kill` of its process group) reaches a run only once, forwarded by the
# sweep: a run's second signal would stop it without saving.
_LIVE = {"procs": set(), "stopping": False}
_LIVE_LOCK = threading.Lock()


def run(cmd, log):
    """One subprocess, one thread; its output goes to a log file beside the run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        with _LIVE_LOCK:
            if _LIVE["stopping"]:  # the sweep is stopping: start nothing new
                return
            f.write("$ python " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            _LIVE["procs"].add(proc)
        code = proc.wait()
        with _LIVE_LOCK:
            _LIVE["procs"].discard(proc)
            if _LIVE["stopping"]:
                return
    if code != 0:
        with _LIVE_LOCK:   # before this worker thread takes the next queued run
            _LIVE["stopping"] = True
        raise RuntimeError(f"failed ({code}): python {' '.join(cmd)}; see {log}")


def run_all(calls, n_jobs, on_done=None):
    """Run `calls` [(cmd, log)], n_jobs at a time; on_done(log, k) after the k-th finishes. When anything
    ends the sweep (a signal, a failed run) no queued run starts, and each running one gets the signal
    (SIGTERM after a failure) once, so it saves a resumable checkpoint; the sweep waits for them, then
    raises. (Leaving a `with ThreadPoolExecutor` block instead waits for the queued runs: it starts them.)"""
    pool = ThreadPoolExecutor(max(1, n_jobs))
    futures = {}
    try:
        futures.update({pool.submit(run, *c): c[1] for c in calls})
        for k, future in enumerate(as_completed(futures), 1):
            future.result()
            if on_done:
                on_done(futures[future], k)
    except BaseException as e:
        signum = (e.signum if isinstance(e, Stopped) else
                  signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM)
        # a second signal here would leave the runs without the first one: hold it until they have it
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            with _LIVE_LOCK:
                _LIVE["stopping"] = True
                procs = [p for p in _LIVE["procs"] if p.poll() is None]
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.send_signal(signum)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if procs:
            print(f"sweep stopping: {len(procs)} running run(s) sent {signal.Signals(signum).name} to save a "
                  f"checkpoint and exit; no queued run starts", file=sys.stderr, flush=True)
        try:
            for proc in procs:
                proc.wait()
        except (Stopped, KeyboardInterrupt):  # a second signal: pass it on, the runs stop at once, unsaved
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signum)
        raise
    pool.shutdown()


def train_all(jobs, n_jobs):
    """jobs: [(out, cmd, steps)]; skips finished runs and resumes unfinished ones."""
    todo = []
    for out, cmd, steps in jobs:
        if finished(out, steps):
            continue
        todo.append((cmd + (["--resume"] if (out / "last.pt").exists() else []), out / "train.log"))
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; {len(todo)} to go", flush=True)
    t0 = time.time()
    run_all(todo, n_jobs, lambda log, k: print(finished_line(log.parent, k, len(todo), time.time() - t0), flush=True))


def finished_line(out, done, total, elapsed):
    """One line per finished run: its folder, its last evaluation, and when the rest should be done
    (the wall time per finished run so far, with the jobs running at once, times the runs left)."""
    r = json.loads((out / "results.json").read_text())
    entry = r.get("final") or {}
    value = (" ".join(f"len{k}={v:.4f}" for k, v in entry["errors"].items()) if "errors" in entry else
             f"val {entry['val_accuracy']:.4f} test {entry['test_accuracy']:.4f}" if "val_accuracy" in entry else "")
    left = (total - done) * elapsed / done
    return (f"[{done}/{total}] {portable(out)} step {r['steps_done']}: {value}; "
            + (f"about {left / 60:.0f} min left" if done < total else f"all done in {elapsed / 60:.0f} min"))


def set_aside_if_other_setting(run_dir, out, chosen):
    """A seed run trained at another setting than the one chosen now (the search grew, e.g. a new
    input-scale choice won) is moved to OUT/superseded/, kept but never summarised, and retrained."""
    f = run_dir / "results.json"
    if not f.exists():
        return
    cfg = read_json(f)["config"]
    if float(cfg["lr"]) == float(chosen["lr"]) and str(cfg["input_scale"]) == str(chosen["input_scale"]):
        return
    dest = out / "superseded" / f"{run_dir.name}__lr{cfg['lr']:g}__scale-{cfg['input_scale']}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(run_dir, dest)
    print(f"{run_dir} was trained at lr {cfg['lr']:g}, scale {cfg['input_scale']}; the search now chose "
          f"lr {chosen['lr']}, scale {chosen['input_scale']}: moved to {dest}, retraining", flush=True)


def search_selection(args):
    """How search runs are scored: a search as long as the seed runs like a seed run's best.pt."""
    return "best evaluation" if args.search_steps >= args.steps else "last evaluation"


def train_evaluations(out):
    """The validation evaluations of a run's training (an image run's bridge phase left out)."""
    return [h for h in read_json(out / "results.json")["history"] if h.get("phase", "train") == "train"]


def search_tries(rows):
    """Tries against the floor in one condition's search rows (rows from before the count: one each)."""
    return sum(r.get("evaluations", 1) for r in rows)


def selection_error(out, args, best=False):
    """What the search minimises on the validation stream (the task's selection_error: per-bit error
    at --select-len, or 1 - accuracy), at the end of the run, or with best=True the lowest over its
    evaluations (what best.pt keeps)."""
    history = train_evaluations(out) if best else [read_json(out / "results.json")["final"]]
    return min(tasks.module(args.task).selection_error(h, args) for h in history)


def ladder_rates(flag, given):
    """--lrs / --scratch-lrs in the ladder's own spelling, sorted (0.01 and 1E-2 are 1e-2): what the
    grids, folder names and the held protocol compare."""
    try:
        rates = {LADDER[ladder_index(r.strip())] for r in given.split(",") if r.strip()}
    except (ValueError, UserError):
        rates = set()
    if not rates:
        raise UserError(f"--{flag.replace('_', '-')} {given!r}: give rates of the ladder {','.join(LADDER)}")
    return ",".join(sorted(rates, key=float))


def main():
    args = get_parser().parse_args()
    if args.table:
        if not (Path(args.out) / "summary.json").is_file():
            raise UserError(f"no summary.json in {args.out} yet: run the sweep to the end first")
        try:
            print(tables.summary_tables(tables.load(Path(args.out) / "summary.json")))
        except (ValueError, KeyError) as e:
            raise UserError(f"{args.out}/summary.json: {e}")
        return
    if args.restate:
        restate(Path(args.out))
        return
    if args.task is None:
        raise UserError("--task is required (or pass --table)")
    if not Path(args.out).is_absolute() and Path.cwd().resolve() != REPO:
        # the runs are subprocesses started in the repository: a relative --out must mean the same there
        raise UserError(f"--out {args.out} is relative: run sweep.py from the repository root ({REPO}) or give an absolute path")
    task = tasks.module(args.task)
    if not hasattr(task, "sweep_flags"):
        sweepable = [t for t in tasks.TABLE if hasattr(tasks.module(t), "sweep_flags")]
        raise UserError(f"sweep.py runs {', '.join(sweepable)}; --task {args.task} has its own protocol (see its README section)")
    task.sweep_check(args)
    if args.bridge_steps and not getattr(task, "HAS_BRIDGE", False):
        raise UserError(f"--bridge-steps: --task {args.task} has no bridge stage")
    if args.bridge_steps and not args.bridge_partial:
        first, last = M.parse_layers(args.layers, pretrained.Checkpoint(args.model).num_layers)
        if last - first < 2:
            raise UserError(f"--layers {args.layers} is too short for a partial bridge; give --bridge-partial")
        args.bridge_partial = f"{first + 2}-{last}"
    for flag in ("lrs", "scratch_lrs"):
        if getattr(args, flag) is not None:
            setattr(args, flag, ladder_rates(flag, getattr(args, flag)))
    if args.confirm_scales != "all" and not args.confirm:
        raise UserError("--confirm-scales applies to the confirmation: give --confirm too")
    if args.confirm and search_selection(args) == "best evaluation":
        raise UserError(f"--confirm with --search-steps {args.search_steps} >= --steps {args.steps}: the search already "
                        "runs the full budget and scores each run by its best evaluation; drop --confirm")
    CONDS = conditions_of(args)
    conditions = [c.strip() for c in (args.conditions or ",".join(CONDS)).split(",") if c.strip()]
    for c in conditions:
        if c not in CONDS:
            raise UserError(f"unknown condition {c!r}; choose from {', '.join(CONDS)}")
    if not conditions:
        raise UserError(f"--conditions {args.conditions!r} names no condition; choose from {', '.join(CONDS)}")
    if args.seeds is not None and args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    if args.first_seed < 0:
        raise UserError("--first-seed must be at least 0")
    # what a resumed folder compares is the precision itself, not the word "auto" (fp32 on a CPU, bf16 on
    # CUDA); the runs still get --dtype as given, which their own checkpoints compare on resume
    args.resolved_dtype = dtype_name(resolve_dtype(args.dtype, pick_device("auto")))
    held = Path(args.out) / "sweep.json"
    refuse_other_protocol(held, args)
    refuse_shrinking(Path(args.out), conditions, {c: seed_count(args, CONDS[c]) for c in conditions})
    for name in ("search_steps", "steps", "eval_every", "batch_size", "jobs", "eval_samples", "eval_samples_final"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    choices = [s.strip() for s in args.input_scales.split(",") if s.strip()]
    for s in choices:
        M.parse_input_scale(s)                      # a clear error now, not in the 30th subprocess
    scales = lambda c: scale_choices(CONDS[c], choices)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    record = {"task": args.task, "protocol": {k: v for k, v in vars(args).items() if k not in ("phase", "jobs")},
              "grids": {c: {"lr": list(CONDS[c][2]), "input_scale": scales(c), "seeds": seed_count(args, CONDS[c])}
                        for c in conditions},
              "confirm_edges": confirm_edge_rule(held)}

    chosen = search(args, record, conditions, scales, out)
    if args.confirm:
        chosen = confirm(args, record, conditions, scales, out, chosen)
    chosen = refuse_noise(args, record, conditions, chosen)
    record["chosen"] = chosen
    save_atomic(record, out / "sweep.json")
    print("chosen:", json.dumps(chosen), flush=True)
    if args.phase == "search":
        return
    # no seeds for a setting chosen from noise
    learned = [c for c in conditions if chosen[c].get("learned", True) or not args.floor_check]
    seed_runs = train_seeds(args, record, learned, out, chosen)
    if args.phase == "seeds":
        return
    summary = evaluate_seeds(args, seed_runs, chosen)
    summary.update(floor_summary(args, record, chosen))
    summary["wall_time_s_this_call"] = time.time() - t0
    save_atomic(summary, out / "summary.json")
    for c, row in summary["conditions"].items():
        print(f"{c:18s} " + " ".join(f"{k}={v['mean']:.4f}" for k, v in row[summary["values"]].items()))
    print(f"wrote {out / 'summary.json'}")


# what a folder's runs were chosen and named by: a rerun with other values would mix two protocols in one
# record (search folders are not named by their steps); the defaults are what records written before
# each flag ran with (search_steps has no such default: it was always recorded, and a record without
# it is not compared on it)
UNRECORDED = object()
HELD = {"first_seed": 0, "lrs": None, "scratch_lrs": None, "search_steps": UNRECORDED, "confirm_scales": "all",
        "resolved_dtype": UNRECORDED}


def refuse_other_protocol(held, args):
    """A resumed sweep must run the protocol its folder holds."""
    if not held.is_file():
        return
    record = tables.load(held)
    protocol = record.get("protocol", {})
    for key, default in HELD.items():
        was = protocol.get(key, default)
        if was is not UNRECORDED and was != getattr(args, key):
            if key == "resolved_dtype":
                raise UserError(f"{held}: its runs computed in {was}; --dtype {args.dtype} here means {args.resolved_dtype}: "
                                f"pass --dtype {was}, or choose another --out")
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{held} was run with {flag} {was}, not {getattr(args, key)}: pass the same, or choose another --out")
    was = record.get("search_selection", "last evaluation")     # records from before the rule: scored at the end
    if was != search_selection(args):
        raise UserError(f"{held}: its search runs were scored by their {was}; --search-steps {args.search_steps} with "
                        f"--steps {args.steps} would score them by the {search_selection(args)}: pass the steps it ran with")


def confirm_edge_rule(held):
    """Does this folder's confirmation follow the current rules (its edges closed by confirm_extension, an
    input-scale choice whose search sat at the floor rerun at every searched rate)? Yes, unless its
    sweep.json holds a confirmation made before them: resuming that folder keeps the choices its
    seeds ran at."""
    if not held.is_file():
        return True
    record = tables.load(held)
    return record.get("confirm_edges", not record.get("confirm"))


def refuse_shrinking(out, conditions, seeds):
    """sweep.json and summary.json are rewritten with the conditions and seeds of this call: refuse a
    call that would drop conditions or seeds they already hold (a committed summary is never replaced
    by less). seeds: condition -> this call's seed count."""
    for name, key in (("summary.json", "conditions"), ("sweep.json", "grids")):
        if not (out / name).is_file():
            continue
        held = read_json(out / name).get(key) or {}
        dropped = [c for c in held if c not in conditions]
        if dropped:
            raise UserError(f"{out / name} holds {', '.join(dropped)}, which --conditions leaves out; this call would "
                            f"rewrite it without them (add them to --conditions, or choose another --out)")
        counts = {c: v.get("seeds", v.get("n")) for c, v in held.items()}     # sweep.json: seeds, summary.json: n
        fewer = {c: n for c, n in counts.items() if isinstance(n, int) and n > seeds[c]}
        if fewer:
            raise UserError(f"{out / name} holds more seeds than this call trains ("
                            + ", ".join(f"{c}: {n}" for c, n in fewer.items())
                            + f"); pass --seeds {max(fewer.values())}, or choose another --out")


def search(args, record, conditions, scales, out):
    """1. Seed 0, the same budget for every condition: the grid, then extensions until no input-scale
    choice of any condition has its best rate at an end of its grid (or the ladder ends). Fills
    record["search"], record["grids"] and record["open_edges"]; returns each condition's best setting."""
    CONDS = conditions_of(args)
    folder = lambda c, lr, s: out / "search" / f"{c}__lr{lr}__scale-{s}"
    grids = {c: list(CONDS[c][2]) for c in conditions}
    # a short search scores the end of each run; one at the full budget scores it as a seed run is kept
    record["search_selection"] = search_selection(args)
    full = record["search_selection"] == "best evaluation"
    every = args.eval_every if full else args.search_steps
    for _ in range(len(LADDER)):        # the grid, then one ladder step at each end a best rate sits on
        search = [(c, lr, s) for c in conditions for lr in grids[c] for s in scales(c)]
        train_all([(folder(c, lr, s), train_cmd(args, c, lr, s, 0, args.search_steps, every, folder(c, lr, s)),
                    args.search_steps) for c, lr, s in search], args.jobs)
        record["search"] = [{"condition": c, "lr": lr, "input_scale": s, "seed": 0, "steps": args.search_steps,
                             "val_error": selection_error(folder(c, lr, s), args, best=full),
                             "evaluations": len(train_evaluations(folder(c, lr, s))) if full else 1,
                             "run": portable(folder(c, lr, s))}
                            for c, lr, s in search]
        chosen = {}
        for c in conditions:
            rows = [r for r in record["search"] if r["condition"] == c]
            best = min(rows, key=lambda r: r["val_error"])
            chosen[c] = {"lr": best["lr"], "input_scale": best["input_scale"], "val_error": best["val_error"]}
        grown = False
        for c in conditions:
            grown |= extend_at_edges(grids[c], [r for r in record["search"] if r["condition"] == c])
        record["grids"] = {c: {**record["grids"][c], "lr": grids[c]} for c in conditions}
        if not grown:
            break
    record["open_edges"] = open_edges(grids, record["search"], conditions)
    return chosen


def best_rates(rows):
    """The best learning rate of every input-scale choice among one condition's search rows."""
    return {sc: min((r for r in rows if r["input_scale"] == sc), key=lambda r: r["val_error"])["lr"]
            for sc in dict.fromkeys(r["input_scale"] for r in rows)}


def extend_at_edges(grid, rows):
    """Grow one condition's learning-rate grid by a ladder step beyond each end where the best rate of
    any input-scale choice sits (the confirmation reruns every choice's best, so each needs a closed
    grid, not only the overall winner). Returns whether the grid grew."""
    lrs = sorted(grid, key=float)
    grown = False
    for lr in set(best_rates(rows).values()):
        i = LADDER.index(lr)
        if lr == lrs[-1] and i + 1 < len(LADDER) and LADDER[i + 1] not in grid:
            grid.append(LADDER[i + 1])
            grown = True
        elif lr == lrs[0] and i > 0 and LADDER[i - 1] not in grid:
            grid.insert(0, LADDER[i - 1])
            grown = True
    return grown


def open_edges(grids, rows, conditions):
    """Where a best rate still sits at an end of its grid after the extensions (the ladder ran out):
    {condition: {input scale: lr}}, recorded in sweep.json and printed."""
    out = {}
    for c in conditions:
        lrs = sorted(grids[c], key=float)
        edge = {sc: lr for sc, lr in best_rates([r for r in rows if r["condition"] == c]).items() if lr in (lrs[0], lrs[-1])}
        if edge:
            out[c] = edge
            print(f"warning: {c}: best learning rate at an end of its grid after the extensions: {edge}", flush=True)
    return out


def confirm_settings(rows, scales, at_floor=lambda sc: False):
    """The settings the confirmation reruns for one condition: for every input-scale choice, the
    search's best learning rate and its two ladder neighbours (those on the ladder); for a choice
    whose search did not beat the floor (at_floor(scale)), every rate it searched: its best is noise,
    and a window around noise could miss the rate that learns at the full budget."""
    out = []
    for sc in scales:
        mine = [r for r in rows if r["input_scale"] == sc]
        if at_floor(sc):
            out += [(lr, sc) for lr in sorted({r["lr"] for r in mine}, key=float)]
            continue
        i = LADDER.index(best_rates(mine)[sc])
        out += [(LADDER[j], sc) for j in (i - 1, i, i + 1) if 0 <= j < len(LADDER)]
    return out


def confirmed_scales(args, rows, scales, chosen):
    """The input-scale choices one condition's confirmation reruns (--confirm-scales), with why."""
    if getattr(args, "confirm_scales", "all") == "all" or len(scales) == 1:
        return {"scales": scales, "why": "all"}
    if not beats_floor(args, chosen["val_error"], search_tries(rows)):
        return {"scales": scales, "grid": True,
                "why": "every searched setting: the search did not beat the floor, so it could rank neither rates nor scales"}
    return {"scales": [chosen["input_scale"]], "why": "the search's best"}


def confirm(args, record, conditions, scales, out, chosen):
    """1b. A short search can misjudge what a setting reaches at the full budget (a rate that starts
    fast may plateau, a slower one may overtake it), so for every condition and input-scale choice
    (--confirm-scales best: the search's best choice; a condition whose search sat at the floor:
    every searched setting) the search's best learning rate and its two ladder neighbours are rerun
    on seed 0 for --steps, and the winner is chosen again on the same validation stream at that
    budget; a winner at an end of the rates rerun gets the rate beyond it too (confirm_extension).
    Fills record["confirm"] and record["confirm_open_edges"]; returns the confirmed settings."""
    rows = {c: [r for r in record["search"] if r["condition"] == c] for c in conditions}
    record["confirm_scales"] = {c: confirmed_scales(args, rows[c], scales(c), chosen[c]) for c in conditions}
    rules = record.get("confirm_edges", True)      # a folder confirmed before the current rules keeps its choices

    def scale_at_floor(c, sc):
        """Did this input-scale choice's search sit at the floor (so it could rank no rate)?"""
        best = min(r["val_error"] for r in rows[c] if r["input_scale"] == sc)
        return rules and not beats_floor(args, best, search_tries(rows[c]))
    which = lambda c: ([(r["lr"], r["input_scale"]) for r in rows[c]] if record["confirm_scales"][c].get("grid")
                       else confirm_settings(rows[c], record["confirm_scales"][c]["scales"], lambda sc: scale_at_floor(c, sc)))
    runs = [(c, lr, sc) for c in conditions for lr, sc in which(c)]

    def confirm_dir(c, lr, sc):
        """The run folder of one confirmation; a seed-0 run already trained at this setting and
        budget is the same run, so it is reused."""
        seed0 = out / "runs" / f"{args.task}__{c}__0"
        if finished(seed0, args.steps):
            cfg = read_json(seed0 / "results.json")["config"]
            if float(cfg["lr"]) == float(lr) and str(cfg["input_scale"]) == str(sc):
                return seed0
        return out / "confirm" / f"{c}__lr{lr}__scale-{sc}"
    # the best validation error over the run's evaluations: the checkpoint a seed run would keep
    best_of = lambda d: selection_error(d, args, best=True)

    def off_floor(c, error):
        """A best that does not beat the floor is noise: no edge to follow (tries counted as refuse_noise does)."""
        tries = search_tries(rows[c]) + sum(1 for r in runs if r[0] == c) * -(-args.steps // args.eval_every)
        return beats_floor(args, error, tries)
    while runs:
        train_all([(confirm_dir(c, lr, sc), train_cmd(args, c, lr, sc, 0, args.steps, args.eval_every, confirm_dir(c, lr, sc)),
                    args.steps) for c, lr, sc in runs], args.jobs)
        if not rules:
            break
        more = confirm_extension(runs, lambda c, lr, sc: best_of(confirm_dir(c, lr, sc)), off_floor)
        if not more:
            break
        print(f"confirmation: a best rate sits at an end of the rates rerun; adding {more}", flush=True)
        runs += more
    runs.sort(key=lambda r: (conditions.index(r[0]), scales(r[0]).index(r[2]), float(r[1])))   # table order
    searched = lambda c, lr, sc: next((r["val_error"] for r in rows[c] if (r["lr"], r["input_scale"]) == (lr, sc)), None)
    record["confirm"] = [{"condition": c, "lr": lr, "input_scale": sc, "seed": 0, "steps": args.steps,
                          "search_val_error": searched(c, lr, sc), "val_error": best_of(confirm_dir(c, lr, sc)),
                          "run": portable(confirm_dir(c, lr, sc))} for c, lr, sc in runs]
    record["chosen_by_search"] = chosen
    record["confirm_open_edges"] = confirm_open_edges(record["confirm"])
    chosen = {}
    for c in conditions:
        best = min((r for r in record["confirm"] if r["condition"] == c), key=lambda r: r["val_error"])
        chosen[c] = {"lr": best["lr"], "input_scale": best["input_scale"], "val_error": best["val_error"],
                     "confirmed_at_steps": args.steps}
    return chosen


def confirm_extension(runs, error, off_floor=lambda c, error: True):
    """The confirmation's own edges: where the best of the rates rerun for one condition and input-scale
    choice is the highest or lowest of them (and beats the others, and the floor: off_floor(c, error)),
    the next ladder rate beyond it was never run at the full budget, so it is added (the caller
    repeats until no best sits at an end, or the ladder ends).
    runs: [(condition, lr, input scale)]; error(c, lr, sc): the run's best validation error."""
    more = []
    for c, sc in dict.fromkeys((c, sc) for c, _, sc in runs):
        lrs = sorted((lr for c2, lr, sc2 in runs if (c2, sc2) == (c, sc)), key=float)
        best = strict_best(lrs, lambda lr: error(c, lr, sc))
        if best is None or not off_floor(c, error(c, best, sc)):
            continue
        i = LADDER.index(best)
        for j, end in ((i + 1, lrs[-1]), (i - 1, lrs[0])):
            if best == end and 0 <= j < len(LADDER) and (c, LADDER[j], sc) not in runs:
                more.append((c, LADDER[j], sc))
    return more


def strict_best(lrs, error):
    """The rate with the lowest error if it beats every other one (a tie, as at chance, ranks nothing)."""
    errs = sorted(error(lr) for lr in lrs)
    return min(lrs, key=error) if len(errs) > 1 and errs[0] < errs[1] else None


def confirm_open_edges(rows):
    """Where a confirmed best rate still sits at an end of the rates rerun for its input-scale choice (the
    ladder ran out, the best did not beat the floor, or the folder's confirmation predates the edge
    rule: sweep.json confirm_edges false): {condition: {scale: lr}}."""
    out = {}
    for c, sc in dict.fromkeys((r["condition"], r["input_scale"]) for r in rows):
        group = [r for r in rows if (r["condition"], r["input_scale"]) == (c, sc)]
        lrs = sorted((r["lr"] for r in group), key=float)
        best = strict_best(lrs, lambda lr: next(r["val_error"] for r in group if r["lr"] == lr))
        if best in (lrs[0], lrs[-1]):
            out.setdefault(c, {})[sc] = best
    return out


def beats_floor(args, error, tries):
    """Does `error`, the lowest of `tries` validation errors, beat the task's no-learning floor by the
    margin of tasks/floors.py? A task without a floor (images) always does."""
    task = tasks.module(args.task)
    return not hasattr(task, "floor_check") or task.floor_check(args, error, tries)["learned"]


def refuse_noise(args, record, conditions, chosen):
    """1c. No choice from noise: a condition whose chosen validation error (the lowest of every one its
    search and confirmation looked at) does not beat the task's no-learning floor at --select-len by
    the margin of tasks/floors.py is not learned at this budget and gets no seeds. Fills
    record["floors"]; a task without a floor (images) is left as it was."""
    task = tasks.module(args.task)
    if not hasattr(task, "floor_check"):
        return chosen
    record["floors"] = task.sweep_floors(args)
    for c in conditions:
        tries = search_tries([r for r in record["search"] if r["condition"] == c])
        # a confirmation run's error is the lowest over its evaluations: every one is a try
        tries += sum(-(-r.get("steps", args.steps) // args.eval_every) for r in record.get("confirm", []) if r["condition"] == c)
        verdict = task.floor_check(args, chosen[c]["val_error"], tries)
        chosen[c] = {**chosen[c], "learned": verdict["learned"], "floor_check": verdict}
        if not verdict["learned"]:
            print(f"{c}: not learned at this budget (validation error {verdict['error']:.4f} at length "
                  f"{verdict['length']}, floor {verdict['floor']:.4f}, {verdict['tries']} tries)"
                  + (": no seeds" if args.floor_check else ""), flush=True)
    return chosen


def floor_summary(args, record, chosen):
    """The summary's floors at the held-out lengths and the conditions found not learned, if the task has a floor."""
    if "floors" not in record:
        return {}
    lengths = [s.strip() for s in args.eval_lengths.split(",") if s.strip()]
    return {"floors": {L: record["floors"][L] for L in lengths},
            "not_learned": {c: v["floor_check"] for c, v in chosen.items() if not v.get("learned", True) and args.floor_check}}


def train_seeds(args, record, conditions, out, chosen):
    """2. Seeds at the chosen setting (a seed run trained at another setting is set aside first)."""
    CONDS = conditions_of(args)
    first = getattr(args, "first_seed", 0)         # records written before --first-seed started at 0
    seed_runs = {c: [out / "runs" / f"{args.task}__{c}__{s}" for s in range(first, first + seed_count(args, CONDS[c]))]
                 for c in conditions}
    for c in conditions:
        for d in seed_runs[c]:
            set_aside_if_other_setting(d, out, chosen[c])
    train_all([(d, train_cmd(args, c, chosen[c]["lr"], chosen[c]["input_scale"], s, args.steps, args.eval_every, d), args.steps)
               for c in conditions for s, d in enumerate(seed_runs[c], start=first)], args.jobs)
    record["seed_runs"] = {c: [str(d) for d in ds] for c, ds in seed_runs.items()}
    save_atomic(record, out / "sweep.json")
    return seed_runs


def evaluate_seeds(args, seed_runs, chosen):
    """3. Held-out evaluation of every seed's best.pt, then the summary."""
    evals = [(d / "best.pt", d / "eval_best.json") for ds in seed_runs.values() for d in ds]
    pending = [(ck, e) for ck, e in evals if not e.exists()]
    # checkpoints are not committed: a seed run finished in another sitting or on another machine,
    # but never evaluated, has nothing left to evaluate
    lost = [str(ck.parent) for ck, _ in pending if not ck.exists()]
    if lost:
        raise UserError(f"{len(lost)} finished seed run(s) have no best.pt and no eval_best.json (checkpoints are "
                          f"not kept in git): {', '.join(lost)}; delete those folders and rerun this command to retrain them")
    extra = tasks.module(args.task).held_out_flags(args)
    todo = [(["evaluate.py", "--ckpt", str(ck), *extra, "--out", str(e)], e.parent / "eval.log") for ck, e in pending]
    run_all(todo, args.jobs)
    per = {c: [read_json(d / "eval_best.json") for d in ds] for c, ds in seed_runs.items()}
    return summarise(args, per, chosen, seed_runs)


def checkpoint_regime(run_dir, ev):
    """The regime (model.regime) the evaluated checkpoint's body ran in, at that checkpoint's input
    scale: from eval_best.json, or, for runs evaluated before it was recorded there, rebuilt from the
    run's config (frozen bodies only: a trained scratch stack needs its lost weights)."""
    if "regime" in ev or ev["config"]["substrate"] in ("scratch", "none"):
        return ev.get("regime")
    history = read_json(run_dir / "results.json")["history"]
    scale = next(h["input_scale"] for h in history if h["step"] == ev["checkpoint_step"] and "input_scale" in h)
    cfg = ev["config"]
    body, _ = M.body_from_config(cfg, pick_device("cpu"), known_scale=scale)
    return M.regime(body, scale)


def summarise(args, per, chosen, seed_runs):
    """Per condition the held-out values with CIs (token tasks: per-bit error per length; images:
    test and validation accuracy), then each control against pretrained, seeds paired by index (the
    task's versus_pretrained: ratios control / pretrained, or differences pretrained - control)."""
    task = tasks.module(args.task)
    head, keys, get = task.summary_values(args)
    summary = {"task": args.task, **head, "chosen": chosen, "conditions": {}, task.COMPARISON: {}}
    for c, results in per.items():
        summary["conditions"][c] = {
            "n": len(results), "seeds": [r["seed"] for r in results], "lr": chosen[c]["lr"],
            "input_scale": chosen[c]["input_scale"], "input_scale_value": [r["body"]["input_scale"] for r in results],
            "trainable_params": results[0]["trainable_params"], "frozen_params": results[0]["frozen_params"],
            "best_step": [r["checkpoint_step"] for r in results],
            "regime": [checkpoint_regime(d, r) for d, r in zip(seed_runs[c], results)],
            summary["values"]: {k: stats.describe([get(r, k) for r in results]) for k in keys}}
    if "pretrained" not in per:
        return summary
    by_key = lambda results: {k: [get(r, k) for r in results] for k in keys}
    for c in per:
        if c != "pretrained":
            summary[task.COMPARISON][c] = task.versus_pretrained(args, by_key(per[c]), by_key(per["pretrained"]))
    return summary

def restate(out):
    """--restate: the summary's statistics recomputed from the per-run JSON; what they summarise (the
    chosen settings, seeds, regimes, steps) is kept as the finished suite recorded it."""
    for name in ("sweep.json", "summary.json"):
        if not (out / name).is_file():
            raise UserError(f"--restate: no {name} in {out}")
    record, summary = tables.load(out / "sweep.json"), tables.load(out / "summary.json")
    args = argparse.Namespace(**record["protocol"])
    task = tasks.module(args.task)
    head, keys, get = task.summary_values(args)
    per = {}
    for c, row in summary["conditions"].items():
        files = [out / "runs" / f"{args.task}__{c}__{s}" / "eval_best.json" for s in row["seeds"]]
        lost = [str(f) for f in files if not f.is_file()]
        if lost:
            raise UserError(f"--restate: no {', '.join(lost)}")
        results = [tables.load(f) for f in files]
        per[c] = {k: [get(r, k) for r in results] for k in keys}
        row[head["values"]] = {k: stats.describe(per[c][k]) for k in keys}
    if "pretrained" in per:
        summary[task.COMPARISON] = {c: task.versus_pretrained(args, per[c], per["pretrained"]) for c in per if c != "pretrained"}
    save_atomic(summary, out / "summary.json")
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    run_main(main)
