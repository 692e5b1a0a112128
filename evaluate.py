"""
Re-evaluate a checkpoint, or summarise a folder of runs.

    python evaluate.py --ckpt runs/ar__pretrained__0__<hash>/best.pt --lengths 10,20,30,40,60 --samples 1024
    python evaluate.py --aggregate results/token_suite/mqar/runs --stream held-out   # the README's table: mean, 95% CI
    python evaluate.py --aggregate runs/ --metric final         # validation curves; walker2d runs too: score per target
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

import model as M
import stats
import tasks
from runs import UserError, file_sha256, load_checkpoint, need_at_least, portable, refuse_existing, run_main, save_atomic
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
    p.add_argument("--compile", default=None, action=argparse.BooleanOptionalAction,
                   help="run the body through torch.compile, or not (default: as the run was trained)")
    p.add_argument("--aggregate", metavar="DIR", help="summarise every results.json under DIR instead")
    p.add_argument("--metric", default="best", choices=("best", "final"),
                   help="with --aggregate: the best checkpoint (best.pt) or the run's end (last.pt) (default best)")
    p.add_argument("--stream", default="validation", choices=("validation", "held-out"),
                   help="with --aggregate: validation = the evaluations during training in results.json (seed + 1, the "
                        "stream best.pt was chosen on); held-out = evaluate.py's eval_best.json / eval_last.json beside "
                        "each run (seed + 2, never used for selection: the numbers sweep.py's summary and the READMEs "
                        "report) (default validation)")
    p.add_argument("--force", action="store_true", help="with --aggregate: overwrite an existing --out")
    return p


STREAMS = {"validation": "validation: results.json's evaluations during training (seed + 1, the stream best.pt was chosen on)",
           "held-out": "held-out: evaluate.py's eval_<checkpoint>.json beside each run (seed + 2, never used for selection)"}


def held_out_values(ev):
    """(name, {key: value}) of an evaluate.py result: per-bit errors per length, accuracies, scores per
    target or a success rate."""
    for name, key in (("errors", "errors"), ("accuracy", "accuracy"), ("scores", "scores_mean"), ("success", "success_rate")):
        value = ev.get(key)
        if isinstance(value, dict):
            return name, {k: v for k, v in value.items() if isinstance(v, (int, float))}
        if isinstance(value, (int, float)):
            return name, {key: value}
    return None


def aggregate(folder, which="best", stream="validation"):
    """Group results.json files by task and condition; mean, std and bootstrap 95% CI of each value the
    task reports for a run (tasks/<module>.run_values: errors per length, scores per target, ...), from
    the validation curve in results.json or, with stream="held-out", from the run's eval_best.json
    (which="best") or eval_last.json (which="final"); a run without that file is left out."""
    groups = defaultdict(list)
    for f in sorted(Path(folder).rglob("results.json")):
        r = read_json(f)
        if not (isinstance(r, dict) and isinstance(r.get("config"), dict) and "task" in r["config"]):
            raise UserError(f"{f} is not a results.json of this project (no config with a task)")
        if stream == "held-out":
            ev_file = f.parent / f"eval_{'best' if which == 'best' else 'last'}.json"
            found = held_out_values(read_json(ev_file)) if ev_file.is_file() else None
            if found is None:
                continue
            curve = {"step": read_json(ev_file).get("checkpoint_step")}
            name, values = found
        else:
            found = tasks.module(r["config"]["task"]).run_values(r, which)
            if found is None:          # nothing evaluated yet
                continue
            name, curve, values = found
        key = (r["config"]["task"], r["condition"], r.get("slice"), name)
        groups[key].append({"seed": r["seed"], "step": curve["step"], "values": values, "run": portable(f.parent)})
    out = []
    for (task, condition, slice_, name), runs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        row = {"task": task, "condition": condition, "slice": slice_, "n": len(runs), "seeds": [r["seed"] for r in runs],
               "curve": which, "stream": stream, "runs": [r["run"] for r in runs], name: {}}
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
        rows = aggregate(args.aggregate, args.metric, args.stream)
        if not rows:
            raise UserError(f"no results.json under {args.aggregate}" if args.stream == "validation" else
                            f"no run under {args.aggregate} has an eval_{'best' if args.metric == 'best' else 'last'}.json "
                            f"(evaluate.py --ckpt RUN/{'best' if args.metric == 'best' else 'last'}.pt writes it)")
        # never into the folder read (it may be committed results): under runs/ unless --out says where
        tag = portable(args.aggregate).strip("/").replace("/", "-") or "runs"
        out = Path(args.out or Path("runs") / "summaries" / f"{tag}__{args.stream}__{args.metric}.json")
        refuse_overwrite(out, [*Path(args.aggregate).rglob("results.json"), *Path(args.aggregate).rglob("eval_*.json")])
        refuse_existing(out, args.force)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"source": portable(args.aggregate), "stream": STREAMS[args.stream], "curve": args.metric,
                     "conditions": rows}, out)
        print(f"stream {STREAMS[args.stream]}; checkpoint: {args.metric}")
        for r in rows:
            name = next(k for k in ("errors", "scores", "success", "accuracy") if k in r)
            label = {"errors": "len", "scores": "target ", "success": "", "accuracy": ""}[name]
            print(r["task"], r["condition"], f"n={r['n']}", " ".join(
                f"{label}{k}={v['mean']:.5f} [{v['ci95'][0]:.5f}, {v['ci95'][1]:.5f}]" for k, v in r[name].items()))
        print("mean over seeds [bootstrap 95% CI]")
        print(f"wrote {out}")
        return
    if not args.ckpt:
        raise UserError("give --ckpt PATH or --aggregate DIR")
    out = Path(args.out or Path(args.ckpt).with_name(f"eval_{Path(args.ckpt).stem}.json"))
    refuse_overwrite(out, [args.ckpt, *Path(args.ckpt).parent.glob("*.pt"), Path(args.ckpt).with_name("results.json")])
    task = tasks.module(load_checkpoint(args.ckpt)["config"]["task"])
    M.COMPILE_OVERRIDE = args.compile
    result = task.evaluate_run(args.ckpt, args)
    result["checkpoint_sha256"] = file_sha256(args.ckpt)     # run folders get reused: name exactly what was read
    save_atomic(result, out)
    print(task.summary_line(result), f"-> {out}")


if __name__ == "__main__":
    run_main(main)
