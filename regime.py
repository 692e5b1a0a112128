"""
The regime a frozen body runs in: how much it changes the residual stream, and how much one token
moves the others, for each control and input scale (model.regime, on random tokens).

    python regime.py                                   # slice 6-11 of the embedded 270M, scales 1, 4, auto
    python regime.py --conditions pretrained,shuffled --scales 1,32 --seeds 0,1,2 --out runs/regime_L6-11.json

Why: a control can lose to the pretrained slice through its operating point alone. At the calibrated
scale (~32 for slice 6-11 of the 270M) a re-initialised Gemma 3 slice is close to the identity (its
norms scale by 1 + 0, so each branch adds a unit-RMS update to a stream of RMS ~32), while a slice
that keeps the pretrained values (shuffled, matched) moves the stream as much as the pretrained one.
"""
import argparse
import time
from pathlib import Path

import model as M
import pretrained
import stats
from runs import UserError, dtype_name, environment, pick_device, resolve_dtype, run_main, save_atomic

# the condition names of sweep.py and every results JSON
BODIES = ("pretrained", "random-init", "shuffled", "matched", "gpt2-random")


def measure(model, layers, body_name, seed, scales, device, dtype):
    substrate, init = ("gpt2-random", "pretrained") if body_name == "gpt2-random" else ("gemma", body_name)
    init = "random" if init == "random-init" else init       # --init's name for the re-initialised slice
    body, info = M.build_body(model, layers, substrate, init, device, dtype, seed, input_scale="auto")
    rows = {}
    for s in scales:
        value = info["input_scale"] if s == "auto" else float(s)
        rows[s] = M.regime(body, value)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=pretrained.DEFAULT_MODEL, help="as train.py --model (default gemma3-270m)")
    p.add_argument("--layers", default="6-11", help="as train.py --layers (default 6-11)")
    p.add_argument("--conditions", "--bodies", dest="bodies", default=",".join(BODIES),
                   help=f"comma-separated subset of {','.join(BODIES)}, as sweep.py --conditions (default: all; "
                        "--bodies is the old name)")
    p.add_argument("--scales", default="1,4,auto",
                   help="input scales (RMS of the random tokens): numbers, or auto = the calibrated scale of the "
                        "slice (1 for gpt2-random) (default 1,4,auto)")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the controls' weights (default 0,1,2; pretrained has one body)")
    p.add_argument("--out", default=None, help="JSON path (default: print only)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"), help="as train.py --dtype (default auto)")
    args = p.parse_args()
    # 'random' is the name results/regime/L6-11.json was written with
    bodies = list(dict.fromkeys("random-init" if b.strip() == "random" else b.strip() for b in args.bodies.split(",") if b.strip()))
    for b in bodies:
        if b not in BODIES:
            raise UserError(f"unknown condition {b!r}; choose from {', '.join(BODIES)}")
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    for s in scales:
        if s != "auto" and not isinstance(M.parse_input_scale(s), float):
            raise UserError(f"--scales: {s!r} is not 'auto' or a positive number")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    device = pick_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.time()
    result = {"model": args.model, "layers": args.layers, "scales": scales, "bodies": {}}
    print(f"{'body':12s} " + " ".join(f"{'change@' + s:>14s} {'token0@' + s:>14s}" for s in scales))
    for b in bodies:
        per_seed = {sd: measure(args.model, args.layers, b, sd, scales, device, dtype)
                    for sd in (seeds[:1] if b == "pretrained" else seeds)}
        summary = {s: {k: stats.describe([per_seed[sd][s][k] for sd in per_seed])
                       for k in ("stream_change", "token0_effect", "token0_share_of_update")} for s in scales}
        result["bodies"][b] = {"per_seed": per_seed, "summary": summary}
        print(f"{b:12s} " + " ".join(f"{summary[s]['stream_change']['mean']:14.3f} {summary[s]['token0_effect']['mean']:14.3f}"
                                     for s in scales))
    result.update({**environment(device), "dtype": dtype_name(dtype), "wall_time_s": time.time() - t0})
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        save_atomic(result, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main)
