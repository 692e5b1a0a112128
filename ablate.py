"""
Which heads does a trained interface rely on? Zero-ablate heads of the checkpoint's slice and re-measure.

    python ablate.py --ckpt runs/copy__pretrained-L6-11__0/best.pt               # every head, one at a time
    python ablate.py --ckpt ... --heads L7.2,L9.0                                # one set of heads together
    python ablate.py --ckpt ... --heads L7.2,L9.0 --keep-only                    # all heads but these (sufficiency)
    python ablate.py --joint results/probe/probe_gemma3-270m.json abl_copy.json abl_ar.json --out joint.json

A head is zeroed at the input of its layer's o_proj, where heads are still separate. Every
ablation is scored on the same evaluation sequences as the intact model (paired). Output per head:
delta = ablated - intact (positive = the head was helping), its rank, and its z-score within the
task. --joint names the heads that are top-tier on both the text probe and the ablation signal,
with the hypergeometric P and a permutation P that also varies the primitive and the thresholds.
"""
import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

import model as M
import stats
from evaluate import evaluate
from train import bit_errors, environment, load_checkpoint, save_atomic


def measure(net, task, lengths, samples, seed, device):
    """Mean per-bit error over `lengths` (lower is better)."""
    errors = bit_errors(net, task, lengths, samples, seed, device)
    return sum(errors.values()) / len(errors), errors


def sweep(ckpt, lengths=None, samples=256, eval_seed=None, heads=None, keep_only=False, device="auto"):
    intact_result, (task, net, cfg, device) = evaluate(ckpt, lengths, samples, eval_seed, device)
    if net.body is None:
        raise M.UserError("this checkpoint has no substrate (--substrate none): nothing to ablate")
    body = net.body
    seed, lengths = intact_result["eval_seed"], [int(L) for L in intact_result["errors"]]
    intact = sum(intact_result["errors"].values()) / len(lengths)
    labels = M.head_labels(body)
    t0 = time.time()
    out = {"checkpoint": str(ckpt), "config": cfg, "task": cfg["task"], "slice": intact_result["slice"],
           "metric": "per_bit_error", "lengths": lengths, "samples": samples, "eval_seed": seed,
           "intact": intact, "intact_errors": intact_result["errors"]}
    if heads is not None:
        chosen = M.parse_heads(heads, body)
        if keep_only:
            chosen = {layer: set(range(body.num_heads)) - chosen.get(layer, set()) for layer in body.layer_ids}
        M.set_ablation(body, chosen)
        value, errors = measure(net, task, lengths, samples, seed, device)
        M.set_ablation(body, {})
        out.update({"ablated_heads": sorted(f"L{l}.{h}" for l, hs in chosen.items() for h in hs),
                    "keep_only": keep_only, "ablated": value, "ablated_errors": errors, "delta": value - intact})
    else:
        deltas = {}
        for label in tqdm(labels, desc="heads"):
            M.set_ablation(body, M.parse_heads(label, body))
            value, _ = measure(net, task, lengths, samples, seed, device)
            deltas[label] = value - intact
        M.set_ablation(body, {})
        z = dict(zip(labels, stats.zscores([deltas[l] for l in labels]).tolist()))
        order = sorted(labels, key=lambda l: -deltas[l])
        out["heads"] = {l: {"delta": deltas[l], "rank": order.index(l) + 1, "z": z[l]} for l in labels}
        out["top5"] = order[:5]
    out.update(environment(device))
    out["wall_time_s"] = time.time() - t0
    return out


def joint(probe_file, ablation_files, probe_ratio=1.5, ablate_z=2.0, primitives=("copying", "induction", "prev_token"),
          thresholds=(1.25, 1.5, 2.0, 2.5), z_mins=(1.5, 2.0, 2.5, 3.0), n_perm=10000, seed=0):
    """Heads top-tier on both signals; hypergeometric P and a multiplicity-aware permutation P."""
    probe = json.loads(Path(probe_file).read_text())
    impact = {}
    for f in ablation_files:
        a = json.loads(Path(f).read_text())
        if "heads" not in a:
            raise M.UserError(f"{f} is not a per-head ablation sweep (run ablate.py without --heads)")
        if a["task"] in impact:
            raise M.UserError(f"two ablation files for task {a['task']}; give one per task")
        impact[a["task"]] = {h: v["delta"] for h, v in a["heads"].items()}
    ablated = set.intersection(*(set(v) for v in impact.values()))
    scores = {p: {h: d["scores"][p] for h, d in probe["heads"].items() if h in ablated} for p in primitives}
    if not scores[primitives[0]]:
        raise M.UserError("the probe file scores none of the ablated heads (check --layers of probe.py)")
    # Ratios are taken against the mean over the ablated heads, the population N of the test.
    main = stats.joint_coincidence(scores["copying"], impact, lambda s: stats.top_by_ratio(s, probe_ratio),
                                   lambda imp: stats.top_by_z(imp, ablate_z))
    perm = stats.permutation_test(scores, impact, thresholds=thresholds, z_min=z_mins, n_perm=n_perm, seed=seed)
    per_task_top = {t: sorted(stats.top_by_z({t: v}, ablate_z)) for t, v in impact.items()}
    return {"probe": str(probe_file), "ablations": [str(f) for f in ablation_files], "tasks": sorted(impact),
            "rule": {"probe": f"copying score >= {probe_ratio}x the mean over the ablated heads",
                     "ablation": f"within-task z >= {ablate_z} on any task"},
            "both": main["heads"], "hypergeometric": main, "per_task_ablation_top": per_task_top,
            "permutation": {**perm, "primitives": list(primitives), "thresholds": list(thresholds), "z_mins": list(z_mins)}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint written by train.py")
    p.add_argument("--lengths", default=None, help="comma-separated lengths (default: the run's --select-len)")
    p.add_argument("--samples", type=int, default=256, help="sequences per length (default 256)")
    p.add_argument("--eval-seed", type=int, default=None, help="seed of the evaluation sequences (default: run seed + 2)")
    p.add_argument("--heads", default=None, help="ablate this set together, e.g. L7.2,L9.0 (default: sweep every head)")
    p.add_argument("--keep-only", action="store_true", help="with --heads: ablate every head except these")
    p.add_argument("--joint", nargs="+", metavar="JSON", help="probe.json then one ablation JSON per task")
    p.add_argument("--probe-ratio", type=float, default=1.5, help="--joint: probe top tier, ratio to mean (default 1.5)")
    p.add_argument("--ablate-z", type=float, default=2.0, help="--joint: ablation top tier, within-task z (default 2.0)")
    p.add_argument("--n-perm", type=int, default=10000, help="--joint: permutations (default 10000)")
    p.add_argument("--out", default=None, help="JSON path (default: beside the checkpoint, or joint.json)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    args = p.parse_args()
    if args.joint:
        if len(args.joint) < 2:
            raise M.UserError("--joint needs the probe JSON and at least one ablation JSON")
        for f in args.joint:
            if not Path(f).is_file():
                raise M.UserError(f"--joint: no such file {f}")
        result = joint(args.joint[0], args.joint[1:], args.probe_ratio, args.ablate_z, n_perm=args.n_perm)
        out = Path(args.out or "joint.json")
        save_atomic(result, out)
        h = result["hypergeometric"]
        print(f"both signals: {result['both']}  (N={h['N']} K={h['K']} n={h['n']} k={h['k']}, "
              f"hypergeometric P={h['p']:.4g}, permutation P={result['permutation']['p_perm']:.4g})")
        print(f"wrote {out}")
        return
    if not args.ckpt:
        raise M.UserError("give --ckpt PATH (or --joint FILES)")
    if args.keep_only and not args.heads:
        raise M.UserError("--keep-only needs --heads")
    state_cfg = load_checkpoint(args.ckpt)["config"]
    lengths = args.lengths or str(state_cfg["select_len"])
    result = sweep(args.ckpt, lengths, args.samples, args.eval_seed, args.heads, args.keep_only, args.device)
    tag = "sweep" if args.heads is None else ("keep_" if args.keep_only else "ablate_") + args.heads.replace(",", "_")
    out = Path(args.out or Path(args.ckpt).with_name(f"ablate_{Path(args.ckpt).stem}_{tag}.json"))
    save_atomic(result, out)
    if args.heads is None:
        print("top heads by delta: " + ", ".join(f"{l} {result['heads'][l]['delta']:+.4f} (z {result['heads'][l]['z']:.1f})"
                                                 for l in result["top5"]))
    else:
        print(f"intact {result['intact']:.4f} -> ablated {result['ablated']:.4f} (delta {result['delta']:+.4f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    M.run_main(main)
