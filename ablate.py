"""
Which heads does a trained interface rely on? Zero-ablate heads of the checkpoint's slice and re-measure.

    python ablate.py --ckpt runs/copy__pretrained__0__<hash>/best.pt             # every head, one at a time
    python ablate.py --ckpt ... --heads L7.2,L9.0                                # one set of heads together
    python ablate.py --ckpt ... --heads L7.2,L9.0 --keep-only                    # all heads but these (sufficiency)
    python ablate.py --ckpt runs/ogbench-.../last.pt --episodes 50              # IQL agent: success-rate drop per head
    python ablate.py --ckpt runs/images__mnist5k__pretrained__0__<hash>/best.pt   # accuracy drop per head, test images
    python ablate.py --joint results/probe/probe_gemma3-270m.json abl_copy.json abl_ar.json --out runs/joint.json
    python ablate.py --stability abl_mqar_s0.json abl_mqar_s1.json abl_ar_s0.json --out runs/stability.json

A head is zeroed at the input of its layer's o_proj, where heads are still separate. Every
ablation is scored on the same evaluation data as the intact model (paired: the same sequences or
test images, or for walker2d and ogbench the same episode seeds; McNemar's exact P where outcomes are 0/1). Output per head: delta = ablated - intact, impact = how much
worse the model got (delta for an error, -delta for a score; positive = the head was helping), the
rank and the z-score of the impact within the task. --joint names the heads that are top-tier on both the text probe and the ablation signal,
with the hypergeometric P and a permutation P that also varies the primitive and the thresholds.
"""
import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

import model as M
import stats
from runs import (UserError, all_gather, condition_name, distributed, environment, file_sha256, finish_distributed,
                  load_checkpoint, need_at_least, need_positive_float, portable, refuse_existing, run_main, save_atomic, sources_record)
from runs import read_json, refuse_overwrite, seed_arg
import tasks


def sweep(ckpt, opts, heads=None, keep_only=False):
    """Zero heads of a checkpoint's body and re-measure (opts: ablate.py's flags, read by the task)."""
    task = tasks.module(load_checkpoint(ckpt)["config"]["task"])
    body, measure, cfg, meta, device = task.ablation_target(ckpt, opts)
    if body is None:
        raise UserError("this checkpoint has no body (--substrate none): nothing to ablate")
    sign = -1 if meta["higher_is_better"] else 1  # impact > 0: the model got worse without the head
    t0 = time.time()
    intact, intact_detail = measure()
    # the hash binds the analysis to the exact file it read: a later run written to the same path is another checkpoint
    out = {"checkpoint": portable(ckpt), "checkpoint_sha256": file_sha256(ckpt), "config": cfg, "task": cfg["task"], **meta, "intact": intact, "intact_detail": intact_detail}
    if heads is not None:
        chosen = M.parse_heads(heads, body)
        if keep_only:
            chosen = {layer: set(range(body.num_heads)) - chosen.get(layer, set()) for layer in body.layer_ids}
        M.set_ablation(body, chosen)
        value, detail = measure()
        M.set_ablation(body, {})
        out.update({"ablated_heads": sorted(f"L{l}.{h}" for l, hs in chosen.items() for h in hs), "keep_only": keep_only,
                    "ablated": value, "ablated_detail": detail, "delta": value - intact, "impact": sign * (value - intact)})
        if task.PAIRED:      # per episode / per image 0/1 outcomes, paired with the intact model's
            out["mcnemar"] = dict(zip(("intact_only", "ablated_only", "p"),
                                      stats.mcnemar_exact(intact_detail[task.PAIRED], detail[task.PAIRED])))
    else:
        labels = M.head_labels(body)
        rank, world, _ = distributed()    # under torchrun each rank sweeps every world-th head
        mine = {}
        for label in tqdm(labels[rank::world], desc="heads", disable=rank != 0):
            M.set_ablation(body, M.parse_heads(label, body))
            value, detail = measure()
            mine[label] = (value - intact, detail)
        M.set_ablation(body, {})
        gathered = {k: v for part in all_gather(mine) for k, v in part.items()}
        deltas = {l: gathered[l][0] for l in labels}
        details = {l: gathered[l][1] for l in labels}
        impact = {l: sign * d for l, d in deltas.items()}
        z = dict(zip(labels, stats.zscores([impact[l] for l in labels]).tolist()))
        order = sorted(labels, key=lambda l: -impact[l])
        out["heads"] = {l: {"delta": deltas[l], "impact": impact[l], "rank": order.index(l) + 1, "z": z[l],
                            **task.head_extra(intact_detail, details[l])} for l in labels}
        if task.PAIRED:
            for l in labels:
                out["heads"][l]["mcnemar_p"] = stats.mcnemar_exact(intact_detail[task.PAIRED], details[l][task.PAIRED])[2]
        out["top5"] = order[:5]
    out.update(environment(device))
    out["world_size"] = distributed()[1]
    out["wall_time_s"] = time.time() - t0
    return out


def joint(probe_file, ablation_files, probe_ratio=1.5, ablate_z=2.0, primitives=("copying", "induction", "prev_token"),
          thresholds=(1.25, 1.5, 2.0, 2.5), z_mins=(1.5, 2.0, 2.5, 3.0), n_perm=10000, seed=0):
    """Heads top-tier on both signals; hypergeometric P and a multiplicity-aware permutation P."""
    probe = read_json(probe_file)
    impact = {}
    for f in ablation_files:
        a = read_json(f)
        if "heads" not in a:
            raise UserError(f"{f} is not a per-head ablation sweep (run ablate.py without --heads)")
        if a["task"] in impact:
            raise UserError(f"two ablation files for task {a['task']}; give one per task")
        impact[a["task"]] = {h: v.get("impact", v["delta"]) for h, v in a["heads"].items()}
    ablated = set.intersection(*(set(v) for v in impact.values()))
    scores = {p: {h: d["scores"][p] for h, d in probe["heads"].items() if h in ablated} for p in primitives}
    if not scores[primitives[0]]:
        raise UserError("the probe file scores none of the ablated heads (check --layers of probe.py)")
    # Ratios are taken against the mean over the ablated heads, the population N of the test.
    main = stats.joint_coincidence(scores["copying"], impact, lambda s: stats.top_by_ratio(s, probe_ratio),
                                   lambda imp: stats.top_by_z(imp, ablate_z))
    perm = stats.permutation_test(scores, impact, thresholds=thresholds, z_min=z_mins, n_perm=n_perm, seed=seed)
    per_task_top = {t: sorted(stats.top_by_z({t: v}, ablate_z)) for t, v in impact.items()}
    return {"probe": portable(probe_file), "probe_sha256": file_sha256(probe_file),
            "ablations": [portable(f) for f in ablation_files], "read": sources_record(ablation_files), "tasks": sorted(impact),
            "rule": {"probe": f"copying score >= {probe_ratio}x the mean over the ablated heads",
                     "ablation": f"within-task z >= {ablate_z} on any task"},
            "both": main["heads"], "hypergeometric": main, "per_task_ablation_top": per_task_top,
            "permutation": {**perm, "primitives": list(primitives), "thresholds": list(thresholds), "z_mins": list(z_mins)}}


def stability(ablation_files, n_perm=10000, seed=0):
    """Are head-importance fingerprints stable? Spearman of the per-head impact vectors for every pair
    of sweeps (same task, other seed; or another task), each with a permutation P over head labels."""
    sweeps = []
    for f in ablation_files:
        a = read_json(f)
        if "heads" not in a:
            raise UserError(f"{f} is not a per-head ablation sweep (run ablate.py without --heads)")
        sweeps.append({"file": portable(f), "task": a["task"], "seed": a["config"]["seed"],
                       "condition": condition_name(a["config"]),
                       "impact": {h: v["impact"] for h, v in a["heads"].items()}})
    heads = sorted(set.intersection(*(set(s["impact"]) for s in sweeps)))
    if len(heads) < 3:
        raise UserError("the sweeps share fewer than 3 heads; were they run on the same slice?")
    pairs = []
    for i in range(len(sweeps)):
        for j in range(i + 1, len(sweeps)):
            a, b = sweeps[i], sweeps[j]
            va, vb = [a["impact"][h] for h in heads], [b["impact"][h] for h in heads]
            r = stats.spearman_permutation(va, vb, n_perm, seed)
            # the same rho against a null that keeps each head in its layer: a profile over layers
            # shared by any two networks (early layers matter more, say) does not count as a fingerprint
            within = stats.spearman_permutation(va, vb, n_perm, seed, groups=[h.split(".")[0] for h in heads])
            kind = "across tasks" if a["task"] != b["task"] else \
                "same task, same condition" if a["condition"] == b["condition"] else "same task, other condition"
            pairs.append({"a": a["file"], "b": b["file"], "kind": kind, "tasks": [a["task"], b["task"]],
                          "conditions": [a["condition"], b["condition"]], "seeds": [a["seed"], b["seed"]], **r,
                          "p_perm_within_layer": within["p_perm"]})
    kinds = ("same task, same condition", "same task, other condition", "across tasks")
    return {"files": [s["file"] for s in sweeps], "read": sources_record(ablation_files), "heads": heads, "pairs": pairs,
            "null": "p_perm: head labels shuffled over all heads; p_perm_within_layer: shuffled within each layer",
            "mean_rho": {k: float(sum(p["rho"] for p in pairs if p["kind"] == k) / max(1, sum(p["kind"] == k for p in pairs)))
                         for k in kinds if any(p["kind"] == k for p in pairs)}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint written by train.py")
    p.add_argument("--lengths", default=None, help="comma-separated lengths (default: the run's --select-len)")
    p.add_argument("--samples", type=int, default=1024, help="sequences per length (default 1024, as evaluate.py)")
    p.add_argument("--eval-seed", type=seed_arg, default=None, help="seed of the evaluation sequences (default: run seed + 2)")
    p.add_argument("--episodes", type=int, default=None, help="walker2d: episodes per target return (default 10); ogbench: episodes (default 50)")
    p.add_argument("--max-ep-len", type=int, default=None, help="walker2d / ogbench: episode cut-off (default: the run's / the env's)")
    p.add_argument("--heads", default=None, help="ablate this set together, e.g. L7.2,L9.0 (default: sweep every head)")
    p.add_argument("--keep-only", action="store_true", help="with --heads: ablate every head except these")
    p.add_argument("--joint", nargs="+", metavar="JSON", help="probe.json then one ablation JSON per task")
    p.add_argument("--stability", nargs="+", metavar="JSON",
                   help="per-head sweeps (2 or more): Spearman of the impact vectors for every pair, permutation P")
    p.add_argument("--probe-ratio", type=float, default=1.5, help="--joint: probe top tier, ratio to mean (default 1.5)")
    p.add_argument("--ablate-z", type=float, default=2.0, help="--joint: ablation top tier, within-task z (default 2.0)")
    p.add_argument("--n-perm", type=int, default=10000, help="--joint: permutations (default 10000)")
    p.add_argument("--out", default=None, help="JSON path (default: beside the checkpoint; --joint, --stability: "
                   "runs/joint.json, runs/stability.json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=("auto", "bf16", "fp32"),
                   help="precision of the frozen body (default: the run's own --dtype; auto = bf16 on CUDA, fp32 on CPU)")
    args = p.parse_args()
    M.COMPILE_OVERRIDE = False   # eager: a compiled body would recompile for every set of ablated heads
    need_at_least(args, 1, "samples", "episodes", "max_ep_len", "n_perm")
    need_positive_float(args, "probe_ratio")
    if args.stability:
        if len(args.stability) < 2:
            raise UserError("--stability needs at least two ablation sweeps")
        for f in args.stability:
            if not Path(f).is_file():
                raise UserError(f"--stability: no such file {f}")
        out = Path(args.out or "runs/stability.json")
        refuse_overwrite(out, args.stability)
        refuse_existing(out, args.force)
        result = stability(args.stability, n_perm=args.n_perm)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(result, out)
        for p in result["pairs"]:
            print(f"{p['kind']:27s} {p['tasks']} {p['conditions']} seeds {p['seeds']}: rho {p['rho']:+.3f}, "
                  f"permutation P {p['p_perm']:.4g} (within layers {p['p_perm_within_layer']:.4g})")
        print(f"wrote {out}")
        return
    if args.joint:
        if len(args.joint) < 2:
            raise UserError("--joint needs the probe JSON and at least one ablation JSON")
        for f in args.joint:
            if not Path(f).is_file():
                raise UserError(f"--joint: no such file {f}")
        out = Path(args.out or "runs/joint.json")
        refuse_overwrite(out, args.joint)
        refuse_existing(out, args.force)
        result = joint(args.joint[0], args.joint[1:], args.probe_ratio, args.ablate_z, n_perm=args.n_perm)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(result, out)
        h = result["hypergeometric"]
        print(f"both signals: {result['both']}  (N={h['N']} K={h['K']} n={h['n']} k={h['k']}, "
              f"hypergeometric P={h['p']:.4g}, permutation P={result['permutation']['p_perm']:.4g})")
        print(f"wrote {out}")
        return
    if not args.ckpt:
        raise UserError("give --ckpt PATH (or --joint FILES)")
    if args.keep_only and not args.heads:
        raise UserError("--keep-only needs --heads")
    rank, world, local_rank = distributed()
    if world > 1 and args.device in ("auto", "cuda") and torch.cuda.is_available():
        args.device = f"cuda:{local_rank}"      # one GPU per rank
    tag = "sweep" if args.heads is None else ("keep_" if args.keep_only else "ablate_") + args.heads.replace(",", "_")
    out = Path(args.out or Path(args.ckpt).with_name(f"ablate_{Path(args.ckpt).stem}_{tag}.json"))
    refuse_overwrite(out, [args.ckpt, *Path(args.ckpt).parent.glob("*.pt"), Path(args.ckpt).with_name("results.json")])
    refuse_existing(out, args.force)
    result = sweep(args.ckpt, args, args.heads, args.keep_only)
    rank = distributed()[0]
    finish_distributed()
    if rank != 0:       # torchrun: rank 0 holds every head's result and writes the one JSON
        return
    save_atomic(result, out)
    if args.heads is None:
        print("top heads by impact: " + ", ".join(f"{l} {result['heads'][l]['impact']:+.4f} (z {result['heads'][l]['z']:.1f})"
                                                 for l in result["top5"]))
    else:
        print(f"{result['metric']}: intact {result['intact']:.4f} -> ablated {result['ablated']:.4f} (delta {result['delta']:+.4f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
