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
import json
import time
from collections import defaultdict
from pathlib import Path

import model as M
import stats
from runs import environment, load_checkpoint, need_at_least, save_atomic
from tasks.tokens import bit_errors, fresh_seed, load_trained, parse_lengths


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint written by train.py (best.pt or last.pt)")
    p.add_argument("--lengths", default=None, help="comma-separated lengths (default: the run's --eval-lengths)")
    p.add_argument("--samples", type=int, default=1024, help="sequences per length (default 1024)")
    p.add_argument("--eval-seed", type=int, default=None,
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


def evaluate(ckpt_path, lengths=None, samples=1024, eval_seed=None, device="auto", dtype=None):
    task, net, cfg, info, step, device = load_trained(ckpt_path, device, dtype)
    lengths = parse_lengths(lengths or cfg["eval_lengths"], task, net.longest)
    seed = fresh_seed(cfg, eval_seed)
    t0 = time.time()
    errors = bit_errors(net, task, lengths, samples, seed, device)
    return {"config": cfg, "seed": cfg["seed"], "model": cfg["model"], "slice": info["layers"], "body": info,
            **M.param_counts(net), **environment(device), "checkpoint": str(ckpt_path), "checkpoint_step": step,
            "metric": "per_bit_error", "eval_seed": seed, "eval_samples": samples, "errors": errors,
            "regime": M.regime(net.body, net.input_scale()), "wall_time_s": time.time() - t0}


def evaluate_control(ckpt_path, task, episodes=None, device="auto"):
    """walker2d / ogbench checkpoints: fresh episode seeds (stream 2), never used during training."""
    t0 = time.time()
    if task == "walker2d":
        from tasks import walker2d
        result = walker2d.evaluate_checkpoint(ckpt_path, episodes or 10, device=device)
        result["scores_mean"] = {k: v["score_mean"] for k, v in result["scores"].items()}
    else:
        from tasks import ogbench
        result = ogbench.evaluate_checkpoint(ckpt_path, episodes or 50, device=device)
    return {**result, **environment(M.pick_device(device)), "wall_time_s": time.time() - t0}


def evaluate_images(ckpt_path, device="auto", dtype=None):
    """An image checkpoint's top-1 accuracy on its validation and test splits (the split is fixed by
    the run's --split-seed, so this is the number training reported, recomputed)."""
    from tasks import images
    t0 = time.time()
    net, cfg, info, state = images.load_trained(ckpt_path, device, dtype)
    data = images.load_run_data(cfg)
    device = next(net.parameters()).device
    acc = {k: images.accuracy(net, *data[k], cfg, device) for k in ("val", "test")}
    return {"config": cfg, "seed": cfg["seed"], "model": cfg["model"], "slice": info["layers"], "body": info,
            **M.param_counts(net), **environment(device), "checkpoint": str(ckpt_path), "checkpoint_step": state["step"],
            "metric": "top1_accuracy", "accuracy": acc, "images": {k: len(data[k][1]) for k in ("val", "test")},
            "regime": M.regime(net.body, net.input_scale()), "wall_time_s": time.time() - t0}


def aggregate(folder, which="best"):
    """Group results.json files by condition; mean, std and bootstrap 95% CI of each length's error."""
    groups = defaultdict(list)
    for f in sorted(Path(folder).rglob("results.json")):
        r = json.loads(f.read_text())
        if r["config"]["task"] == "images":
            curve = r["best"] if which == "best" else r["final"]
            if curve is None:
                continue
            name, values = "accuracy", {"val": curve["val_accuracy"], "test": curve["test_accuracy"]}
        elif r["config"]["task"] == "ogbench":
            # IQL runs keep no best checkpoint: the summary is the mean of the last three evaluations
            if not r["history"]:
                continue
            curve = r["final"]
            name, values = "success", {"last_three_mean": r["last_three_mean"], "final": curve["eval"]["success_rate"]}
        else:
            curve = r["best"] if which == "best" else r["final"]
            if curve is None:
                continue
            # token tasks: per-bit error per length; control tasks: normalised score per target return
            name, values = ("errors", curve["errors"]) if "errors" in curve else \
                ("scores", {t: v["score_mean"] for t, v in curve["scores"].items()})
        key = (r["config"]["task"], r["condition"], name)
        groups[key].append({"seed": r["seed"], "step": curve["step"], "values": values, "run": str(f.parent)})
    out = []
    for (task, condition, name), runs in sorted(groups.items()):
        row = {"task": task, "condition": condition, "n": len(runs), "seeds": [r["seed"] for r in runs],
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
            raise M.UserError(f"--aggregate {args.aggregate}: no such folder")
        rows = aggregate(args.aggregate, args.metric)
        if not rows:
            raise M.UserError(f"no results.json under {args.aggregate}")
        out = Path(args.out or Path(args.aggregate) / f"summary_{args.metric}.json")
        save_atomic({"source": args.aggregate, "curve": args.metric, "conditions": rows}, out)
        for r in rows:
            name = next(k for k in ("errors", "scores", "success", "accuracy") if k in r)
            label = {"errors": "len", "scores": "target ", "success": "", "accuracy": ""}[name]
            print(r["task"], r["condition"], f"n={r['n']}", " ".join(
                f"{label}{k}={v['mean']:.4f}±{v['std']:.4f}" for k, v in r[name].items()))
        print(f"wrote {out}")
        return
    if not args.ckpt:
        raise M.UserError("give --ckpt PATH or --aggregate DIR")
    task = load_checkpoint(args.ckpt)["config"]["task"]
    if task == "images":
        result = evaluate_images(args.ckpt, args.device, args.dtype)
        summary = " ".join(f"{k} accuracy {v:.4f}" for k, v in result["accuracy"].items())
    elif task in ("walker2d", "ogbench"):
        result = evaluate_control(args.ckpt, task, args.episodes, args.device)
        summary = json.dumps({k: v for k, v in result.items() if k in ("success_rate", "scores_mean", "episodes")})
    else:
        result = evaluate(args.ckpt, args.lengths, args.samples, args.eval_seed, args.device, args.dtype)
        summary = " ".join(f"len{L}={e:.4f}" for L, e in result["errors"].items())
    out = Path(args.out or Path(args.ckpt).with_name(f"eval_{Path(args.ckpt).stem}.json"))
    save_atomic(result, out)
    print(summary, f"-> {out}")


if __name__ == "__main__":
    M.run_main(main)
