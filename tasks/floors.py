"""
What a token-task run must beat before it counts as having learned anything.

The no-learning floor of a task at a length is the expected per-bit error of the best predictor
blind to what the task tests (each task module's floor(length) says what it is blind to and how the
number follows: associative recall and MQAR blind to the query, copy, Rule 90 and addition blind to
the data, a constant or per-position majority). It is exact, not sampled.

A validation error beats the floor only if a blind predictor would reach it by luck with probability
below ALPHA / tries, where tries is the number of validation errors the error was the lowest of
(every search setting, every evaluation of a confirmation run or learnability run). A blind
predictor's wrong bits on n scored bits are Binomial(n, floor) (its errors on different scored bits
are independent: distinct code bits, fair coins); the Bonferroni split over the tries pays for taking
the minimum, which is how the Rule 90 search once chose a rate from noise (0.485 against 0.5). On
256 sequences of Rule 90 at 20 cells (5,120 bits) and 15 tries the margin is about 0.02.

    python -m tasks.floors floors --out results/token_suite/floors.json   # every token task, per length
    python -m tasks.floors verdict RUN... --out OUT/learnability.json     # runs judged as one family
"""
import argparse
import json
import sys
from pathlib import Path

from runs import UserError, portable, run_main, save_atomic, write_or_print
from tasks import TABLE

ALPHA = 0.01        # a run sitting at the floor is called learned in at most 1 of 100 searches
LENGTHS = "1,2,3,4,6,8,10,12,16,20,30,40,60"   # the lengths the suites use, for the floors table


def token_task(name):
    import tasks.tokens
    return tasks.tokens.get_task(name)


def floors(task_name, lengths):
    """{length: no-learning floor} of a token task."""
    task = token_task(task_name)
    return {str(L): task.floor(int(L)) for L in lengths}


def scored_bits(task_name, length, samples):
    import tasks.tokens
    return tasks.tokens.scored_bits(task_name, length, samples)


def threshold(task_name, length, samples, tries, alpha=ALPHA):
    """The margin at one length: the floor, the bits a validation pass scores there, and the highest
    error that beats the floor after `tries` looks (None: no error can, e.g. a floor of 0)."""
    from scipy.stats import binom     # here, not at the top: importing scipy.stats costs about 1.5 s at every start
    f = token_task(task_name).floor(length)
    n = scored_bits(task_name, length, samples)
    k = int(binom.ppf(alpha / tries, n, f))
    k = k if binom.cdf(k, n, f) <= alpha / tries else k - 1     # the largest k with P(X <= k) <= alpha / tries
    return {"length": length, "floor": f, "bits": n, "tries": tries, "alpha": alpha,
            "max_error": None if k < 0 else k / n}


def check(task_name, length, samples, error, tries, alpha=ALPHA):
    """threshold() with the verdict on one error (the lowest of `tries` validation errors)."""
    t = threshold(task_name, length, samples, tries, alpha)
    wrong = round(error * t["bits"])                             # errors are wrong / scored, exact counts
    return {**t, "error": error, "learned": t["max_error"] is not None and wrong <= t["max_error"] * t["bits"] + 1e-9}


def need_floor_above_zero(task_name, length):
    """A selection length whose floor is 0 cannot show learning: refuse it before any run."""
    if token_task(task_name).floor(length) == 0:
        raise UserError(f"--select-len {length}: the no-learning floor of {task_name} there is 0 (nothing to "
                        f"recall or compute), so no error can show learning; select at a longer length")


def floors_table(args):
    """python -m tasks.floors floors: every token task (or --task) at --lengths it supports."""
    names = [args.task] if args.task else [t for t, m in TABLE.items() if m == "tokens"]
    out = {"what": "expected per-bit error of the best predictor blind to what the task tests (exact)",
           "alpha": ALPHA, "tasks": {}}
    for name in names:
        task = token_task(name)
        lengths = [int(s) for s in args.lengths.split(",") if s.strip()]
        ok = [L for L in lengths if task.MIN_LEN <= L <= task.MAX_LEN]
        out["tasks"][name] = {"blind_to": " ".join(task.floor.__doc__.split()), "floors": floors(name, ok)}
    write_or_print(out, args.out)


def verdict(args):
    """python -m tasks.floors verdict RUN...: train.py runs of one task judged together (their tries
    add up), each by the lowest validation error at its --select-len over its evaluations; with the
    best checkpoint's error at every tracked length beside the floor there."""
    if args.out and Path(args.out).suffix != ".json":
        raise UserError(f"--out {args.out}: the verdict is JSON; give a path ending in .json")
    runs = {}
    for d in args.runs:
        f = Path(d) / "results.json"
        if not f.is_file():
            raise UserError(f"{d}: no results.json")
        try:
            runs[d] = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{f}: not valid JSON ({e.msg})")
    cfgs = [r["config"] for r in runs.values()]
    keys = {(c["task"], c["select_len"], c["eval_samples"]) for c in cfgs}
    if len(keys) != 1:
        raise UserError(f"the runs differ in task, --select-len or --eval-samples ({sorted(keys)}): judge them apart")
    task_name, select, samples = keys.pop()
    history = {d: [h for h in r["history"] if h.get("phase", "train") == "train"] for d, r in runs.items()}
    at = lambda h: h["errors"][str(select)]        # an evaluation's error at the selection length
    tries = sum(len(h) for h in history.values())
    out = {"task": task_name, "select_len": select, "eval_samples": samples, "alpha": ALPHA, "tries": tries,
           "rule": "learned if the lowest validation error at select_len is at most max_error, the largest error a "
                   "blind predictor reaches with probability <= alpha / tries", "runs": {}}
    for d, r in runs.items():
        if not history[d]:
            raise UserError(f"{d}: no evaluation yet")
        best = min(history[d], key=at)
        # when the run left the floor (by the family's margin), and when it first went under 1% (the
        # paper's "error below 0.01 within about 2k steps" for AR): how long a search must run to see it
        first = lambda ok: next((h["step"] for h in history[d] if ok(h)), None)
        out["runs"][portable(d)] = {
            "condition": r.get("condition"), "lr": r["config"]["lr"], "input_scale": r["config"]["input_scale"],
            "seed": r["config"]["seed"], "steps_done": r["steps_done"], "best_step": best["step"],
            "first_step_off_floor": first(lambda h: check(task_name, select, samples, at(h), tries)["learned"]),
            "first_step_under_1pct": first(lambda h: at(h) < 0.01),
            "errors": best["errors"], "floors": floors(task_name, best["errors"]),
            "check": check(task_name, select, samples, at(best), tries)}
    out["learned"] = any(v["check"]["learned"] for v in out["runs"].values())
    if args.out:
        save_atomic(out, Path(args.out))
    for d, v in out["runs"].items():
        c = v["check"]
        need = "nothing can" if c["max_error"] is None else f"needed <= {c['max_error']:.4f}"
        print(f"{d}: len{select} {c['error']:.4f} (floor {c['floor']:.4f}, {need} after {tries} tr{'y' if tries == 1 else 'ies'}): "
              + ("learned" if c["learned"] else "not learned at this budget"))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tasks.floors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("floors", help="the floor of every token task per length (JSON)")
    f.add_argument("--task", default=None, help="one token task (default: all)")
    f.add_argument("--lengths", default=LENGTHS, help=f"lengths (default {LENGTHS}; each task keeps those it supports)")
    f.add_argument("--out", default=None, help="JSON file (default: print)")
    v = sub.add_parser("verdict", help="have these runs (one task) beaten the floor? (JSON)")
    v.add_argument("runs", nargs="+", help="train.py run folders (their results.json)")
    v.add_argument("--out", default=None, help="JSON file (default: print the verdict lines only)")
    args = p.parse_args(argv)
    if args.command == "floors":
        if args.task is not None:
            token_task(args.task)
        return floors_table(args)
    return verdict(args)


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
