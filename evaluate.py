"""
Re-evaluate a checkpoint, or summarise a folder of runs.

    python evaluate.py --ckpt runs/ar__pretrained-L6-11__0/best.pt --lengths 10,20,30,40,60 --samples 1024
    python evaluate.py --aggregate results/token_suite          # mean, std, bootstrap 95% CI per condition
    python evaluate.py --aggregate runs/ --metric final         # walker2d runs too: normalised score per target
    python evaluate.py --ckpt runs/ogbench-.../last.pt --episodes 50   # IQL agent: success on fresh episode seeds
    python evaluate.py --ckpt runs/images__mnist5k__.../best.pt        # image classifier: val and test accuracy

The checkpoint holds only the trainable weights and the run config; the frozen body is
rebuilt from the config (same model, slice, init and seed). By default the sequences are drawn
from a stream (--eval-seed) that training never used for selecting best.pt, so the number is
free of selection bias.
"""
import argparse
from collections import defaultdict
from pathlib import Path

import stats
import tasks
from runs import UserError, load_checkpoint, need_at_least, portable, run_main, save_atomic
from runs import read_json, refuse_overwrite, seed_arg


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint written by train.py (best.pt or last.pt)")
    p.add_argument("--lengths", default=None, help="comma-separated lengths (default: the run's --eval-lengths)")
    p.add_argument("--samples", type=int, default=1024, help="sequences per length (default 1024)")
    p.add_argument("--eval-seed", type=seed_arg, default=None,
                   help="seed of the evaluation sequences (default: run seed + 2, a stream training never selected on)")
    p.add_argument("--episodes", type=int, default=None,
                   help="walker2d: episodes per target (default 10); ogbench: episodes (default 50); seeds never used in training")
    p.add_argument("--out", default=None, help="JSON path (default: eval_<ckpt name>.json beside the checkpoint)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=("auto", "bf16", "fp32"),
                   help="precision of the frozen body (default: the run's own --dtype; auto = bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--aggregate", metavar="DIR", help="summarise every results.json under DIR instead")
    p.add_argument("--metric", default="best", choices=("best", "final"),
                   help="with --aggregate: the best checkpoint's curve or the last evaluation's (default best)")
    return p


def aggregate(folder, which="best"):
    """Group results.json files by task and condition; mean, std and bootstrap 95% CI of each value the
    task reports for a run (tasks/<module>.run_values: errors per length, scores per target, ...)."""
    groups = defaultdict(list)
    for f in sorted(Path(folder).rglob("results.json")):
        r = read_json(f)
        if not (isinstance(r, dict) and isinstance(r.get("config"), dict) and "task" in r["config"]):
            raise UserError(f"{f} is not a results.json of this project (no config with a task)")
        found = tasks.module(r["config"]["task"]).run_values(r, which)
        if found is None:          # nothing evaluated yet
            continue
        name, curve, values = found
        key = (r["config"]["task"], r["condition"], r.get("slice"), name)
        groups[key].append({"seed": r["seed"], "step": curve["step"], "values": values, "run": portable(f.parent)})
    out = []
    for (task, condition, slice_, name), runs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        row = {"task": task, "condition": condition, "slice": slice_, "n": len(runs), "seeds": [r["seed"] for r in runs],
               "curve": which, "runs": [r["run"] for r in runs], name: {}}
        for key in runs[0]["values"]:
            row[name][key] = stats.describe([r["values"][key] for r in runs if key in r["values"]])
        out.append(row)
    return out


def main():
    args = get_parser().parse_args()
    need_at_least(args, 1, "samples", "episodes")
    if args.aggregate:
        if not Path(args.aggregate).is_dir():
            raise UserError(f"--aggregate {args.aggregate}: no such folder")
        rows = aggregate(args.aggregate, args.metric)
        if not rows:
            raise UserError(f"no results.json under {args.aggregate}")
        out = Path(args.out or Path(args.aggregate) / f"summary_{args.metric}.json")
        refuse_overwrite(out, Path(args.aggregate).rglob("results.json"))
        save_atomic({"source": portable(args.aggregate), "curve": args.metric, "conditions": rows}, out)
        for r in rows:
            name = next(k for k in ("errors", "scores", "success", "accuracy") if k in r)
            label = {"errors": "len", "scores": "target ", "success": "", "accuracy": ""}[name]
            print(r["task"], r["condition"], f"n={r['n']}", " ".join(
                f"{label}{k}={v['mean']:.4f}±{v['std']:.4f}" for k, v in r[name].items()))
        print(f"wrote {out}")
        return
    if not args.ckpt:
        raise UserError("give --ckpt PATH or --aggregate DIR")
    out = Path(args.out or Path(args.ckpt).with_name(f"eval_{Path(args.ckpt).stem}.json"))
    refuse_overwrite(out, [args.ckpt, *Path(args.ckpt).parent.glob("*.pt"), Path(args.ckpt).with_name("results.json")])
    task = tasks.module(load_checkpoint(args.ckpt)["config"]["task"])
    result = task.evaluate_run(args.ckpt, args)
    save_atomic(result, out)
    print(task.summary_line(result), f"-> {out}")


if __name__ == "__main__":
    run_main(main)
