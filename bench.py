"""
Speed and memory of the frozen slice, printed as JSON.

    python bench.py                           # embedded Gemma 3 270M, slice 6-11, CPU
    python bench.py --model google/gemma-4-31B --layers 24-29 --device cuda
    python bench.py --iql                     # OGBench IQL agent: step time and evaluation episodes/s

Reports: slice forward+backward throughput (tokens/s; the backward pass computes input gradients
only, since the slice is frozen) and achieved FLOP/s next to a plain matmul peak measured in the
same run on the slice's own weight shapes; with --compare-dtypes, which of fp32 and bf16 is faster
on this machine; slice-only load time and peak RSS against loading the full model with transformers.
With --iql: seconds per IQL gradient step for the slice agent and the MLP baseline at two batch
sizes, and evaluation throughput in the real MuJoCo env, 1 episode alone against a lockstep batch.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

import model as M
import pretrained
from runs import DTYPES, REPO, UserError, cpu_info, dtype_name, need_at_least, pick_device, resolve_dtype, run_main

LOAD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
import model as M
def kb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
ckpt = pretrained.Checkpoint(sys.argv[2])
M.decoder_stack(ckpt.text_config)   # import and build the classes before timing
from transformers import AutoModelForCausalLM
base = kb("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
t = time.time()
dtype = DTYPES[sys.argv[4]]
if sys.argv[3] == "full":
    net = AutoModelForCausalLM.from_pretrained(ckpt.dir, dtype=dtype)
else:
    a, b = M.parse_layers(sys.argv[3], ckpt.num_layers)
    net = M.load_slice(ckpt, a, b, dtype=dtype)
# transformers may map the file lazily: touch every weight so both loads are counted as usable
with torch.no_grad():
    sum(p.sum().item() for p in net.parameters())
held = sum(p.numel() * p.element_size() for p in net.parameters())
print(json.dumps({"load_s": time.time() - t, "peak_rss_mb": (kb("VmHWM:") - base) / 1024, "weight_bytes_held": held,
                  "dtypes": sorted({str(p.dtype) for p in net.parameters()})}))
"""


def timeit(fn, iters, sync, warm=True):
    if warm:
        fn()
        sync()
    t = time.time()
    for _ in range(iters):
        fn()
    sync()
    return (time.time() - t) / iters


def bench_iql(args, device):
    """IQL on OGBench: gradient-step time (slice agent and MLP) and lockstep evaluation speed."""
    import gymnasium
    from tasks import ogbench as O
    O.need_ogbench()
    _, env_name = O.split_name(args.iql_env)
    env = gymnasium.make(env_name)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    cfg = {"seed": 0, "model": args.model, "layers": args.iql_layers, "init": "pretrained", "input_scale": "auto",
           "obs_dim": obs_dim, "act_dim": act_dim, "obs_tokens": 4, "hidden": 256, "discount": 0.99,
           "expectile": 0.9, "temperature": 10.0, "env": args.iql_env, "obs_mean": [0.0] * obs_dim, "obs_std": [1.0] * obs_dim}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {"env": args.iql_env, "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(), "slice": args.iql_layers,
           "model": args.model, "step_s": {}, "trainable_params": {}}
    # the reference agent, then the cheaper settings one flag away (fewer observation tokens, a target
    # critic that reuses the online pass), then the MLP baseline
    variants = {"gemma": {}, "gemma_obs2": {"obs_tokens": 2}, "gemma_target-shared": {"target": "shared"},
                "gemma_obs2_target-shared": {"obs_tokens": 2, "target": "shared"}, "mlp": {"substrate": "mlp"}}
    for name, extra in variants.items():
        substrate = extra.get("substrate", "gemma")
        net = O.build({**cfg, "substrate": substrate, "dtype": args.dtype, **extra}, device)
        vcfg = {**cfg, **extra}
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 3e-4)
        out["trainable_params"][name] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        for bs in args.iql_batches:
            batch = {"observations": torch.randn(bs, obs_dim, device=device), "actions": torch.rand(bs, act_dim, device=device) * 2 - 1,
                     "next_observations": torch.randn(bs, obs_dim, device=device), "rewards": -torch.rand(bs, device=device),
                     "masks": torch.ones(bs, device=device)}

            def step():
                loss, _ = O.iql_losses(net, batch, vcfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                O.polyak(net, 0.005)
            out["step_s"][f"{name}_batch{bs}"] = timeit(step, args.iters, sync)
        if name == "gemma" and not args.iql_skip_eval:
            evals = {}
            for n in (1, args.iql_episodes):
                t = time.time()
                O.success_rate(net, {**cfg, "substrate": substrate}, n, 0, device, max_steps=1)   # builds the envs once
                setup = time.time() - t
                t = time.time()
                O.success_rate(net, {**cfg, "substrate": substrate}, n, 0, device, max_steps=args.iql_eval_steps)
                per_step = (time.time() - t) / args.iql_eval_steps    # includes the n seeded resets
                with torch.no_grad():
                    x = torch.randn(n, obs_dim, device=device)
                    policy_s = timeit(lambda: net.policy(x), args.iters, sync)
                evals[n] = {"s_per_lockstep_timestep": per_step, "policy_forward_s": policy_s,
                            "env_step_s_per_episode": (per_step - policy_s) / n,
                            "env_build_s_first_evaluation_only": setup,
                            "episodes_per_s_at_750_steps": n / (per_step * 750)}
            out["eval"] = {f"{n}_episodes": v for n, v in evals.items()}
            out["eval"]["timed_steps"] = args.iql_eval_steps
            out["eval"]["policy_calls_per_evaluation"] = "one per timestep, whatever the number of episodes"
    return out


def matmul_peak(body, tokens, device, dtype, iters, sync):
    """The best FLOP/s of a plain matmul on the slice's own shapes ([tokens, in] @ [in, out] for every
    distinct weight shape of its linear layers): a peak measured on an unrepresentative shape can sit
    far from what the slice can reach (on a CPU without bf16 matrix units, a large bf16 square matmul
    measured 0.0003 TFLOP/s, and the slice then 'ran at 6.6x its peak')."""
    shapes = sorted({tuple(m.weight.shape) for m in body.modules() if isinstance(m, torch.nn.Linear)})
    per_shape = {}
    for out_f, in_f in shapes:
        a = torch.randn(tokens, in_f, device=device, dtype=dtype)
        w = torch.randn(in_f, out_f, device=device, dtype=dtype)
        first = timeit(lambda: a @ w, 1, sync, warm=False)
        # a dtype the CPU has no matrix units for (bf16 on AVX2) runs tens of times slower: one call is enough to tell
        t = first if first > 1.0 else timeit(lambda: a @ w, iters, sync)
        per_shape[f"{tokens}x{in_f}@{in_f}x{out_f}"] = 2 * tokens * in_f * out_f / t
    return max(per_shape.values()), per_shape


def bounded_iters(expected_s, iters, budget_s):
    """Timed iterations that fit the budget at the expected time per call (a warm-up call comes first);
    0 when not even one fits."""
    if 2 * expected_s > budget_s:
        return 0
    return max(1, min(iters, int(budget_s / expected_s) - 1))


def slice_speed(args, device, dtype, sync):
    """Forward+backward throughput of the slice in `dtype`, against a matmul peak on its own shapes."""
    body, info = M.build_body(args.model, args.layers, device=device, dtype=dtype, input_scale=1.0)
    net = M.InterfaceModel(body, info["d_model"], 16, 16).to(device)
    assert info["dtype"] == dtype_name(dtype)   # the slice runs in the dtype this bench reports
    x = torch.randn(args.batch_size, args.seq_len, 16, device=device)

    def step():
        net(x).pow(2).mean().backward()

    tokens = args.batch_size * args.seq_len
    # the peak first: it says how long one step of the slice can take, so a pathologically slow dtype is cut short
    peak, per_shape = matmul_peak(body, tokens, device, dtype, args.iters, sync)
    frozen = M.param_counts(net)["frozen_params"]
    # Matmul FLOPs only: 2 per weight per token forward, 2 more backward for the input gradient
    # (no weight gradients: the slice is frozen). Attention scores are left out (small at these lengths).
    flops_step = 4 * frozen * tokens
    result = {"device": str(device), "dtype": info["dtype"], "model": args.model, "slice": info["layers"],
              "frozen_params": frozen, "batch_size": args.batch_size, "seq_len": args.seq_len, "threads": torch.get_num_threads(),
              "cpu": cpu_info(), "load_average": os.getloadavg(), "compiled": args.compile,
              "matmul_peak_tflops": peak / 1e12, "matmul_tflops_per_shape": {k: v / 1e12 for k, v in per_shape.items()},
              "matmul_peak_measured_in": f"{info['dtype']} on the slice's own weight shapes, {tokens} tokens, {device}"}
    if args.compile:
        body.compile(dynamic=None)
        t = time.time()
        step()
        with torch.no_grad():
            net(x)
        result["compile_s_first_calls"] = time.time() - t
    iters = bounded_iters(flops_step / peak, args.iters, args.budget_s)
    result["timed_iters"], result["expected_step_s_at_peak"] = iters, flops_step / peak
    if iters < args.iters:
        result["cut"] = (f"one step takes about {flops_step / peak:.0f} s at this dtype's matmul peak: {iters} of "
                         f"{args.iters} iterations fit --budget-s {args.budget_s:g}")
    if iters == 0:
        return result
    t_step = timeit(step, iters, sync)
    result.update({"fwd_bwd_tokens_per_s": tokens / t_step, "fwd_bwd_tflops": flops_step / t_step / 1e12,
                   "fwd_bwd_fraction_of_matmul_peak": flops_step / t_step / peak})
    if bounded_iters(flops_step / peak / 3, args.iters, args.budget_s / 2) == args.iters:
        with torch.no_grad():
            result["fwd_tokens_per_s"] = tokens / timeit(lambda: net(x), args.iters, sync)
    if args.profile:
        result["profile"] = profile_step(step)
    if result["fwd_bwd_fraction_of_matmul_peak"] > 1:
        result["warning"] = "the slice ran faster than the measured matmul peak: timing noise or a machine under load"
    if device.type == "cuda":   # model FLOPs utilisation against the peak measured above, same dtype and device
        result["mfu_vs_measured_peak"] = result["fwd_bwd_fraction_of_matmul_peak"]
    return result


PROFILE_KINDS = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
                 "attention": ("scaled_dot_product", "flash_attention", "efficient_attention"),
                 "copies": ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous"),
                 "gelu": ("gelu",),
                 "elementwise": ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::pow", "aten::rsqrt",
                                 "aten::mean", "aten::tanh", "aten::neg", "aten::cat", "aten::sum", "aten::fill_")}


def profile_step(step):
    """Share of one step's own CPU time per kind of operation (self time, so a matmul inside a linear
    counts once), with call counts and the ten costliest ops."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]
    total = sum(t for _, t, _ in ops) or 1
    kinds = {}
    for name, t, n in ops:
        kind = next((k for k, keys in PROFILE_KINDS.items() if any(key in name for key in keys)), "other")
        share, calls = kinds.get(kind, (0.0, 0))
        kinds[kind] = (share + t / total, calls + n)
    top = sorted(ops, key=lambda o: -o[1])[:10]
    return {"share_of_time": {k: v[0] for k, v in kinds.items()}, "calls": {k: v[1] for k, v in kinds.items()},
            "top_ops": [{"op": name, "share": t / total, "calls": n} for name, t, n in top]}


def ab_step(args, device, dtype):
    """(training step, what it is) of --ab-task on random data of the task's shapes, its body compiled
    the way --compile compiles it (model.compile_body)."""
    from tasks import ogbench as O
    from tasks import walker2d as W
    cfg = {"model": args.model, "layers": args.layers, "substrate": "gemma", "init": "pretrained", "seed": 0,
           "input_scale": "1.0", "dtype": dtype, "compile": True}
    B = args.batch_size
    if args.ab_task in ("tokens", "images"):
        # images: MNIST 28x28 in 7x7 patches, 16 tokens of 49 pixels + a one-hot position, 10 classes
        in_dim, out_dim, T = (16, 16, args.seq_len) if args.ab_task == "tokens" else (49 + 16, 10, 16)
        body, info = M.body_from_config(cfg, device)
        M.compile_body(body, cfg)
        net = M.InterfaceModel(body, info["d_model"], in_dim, out_dim).to(device)
        x = torch.randn(B, T, in_dim, device=device)
        loss_fn = lambda: net(x).pow(2).mean()
        what = f"{args.ab_task}: InterfaceModel, batch {B} x {T} tokens, Adam"
    elif args.ab_task == "iql":
        obs_dim, act_dim = 40, 5      # OGBench scene
        icfg = {**cfg, "obs_dim": obs_dim, "act_dim": act_dim, "obs_tokens": 4, "hidden": 256, "discount": 0.99,
                "expectile": 0.9, "temperature": 10.0, "target": "separate"}
        net = O.build(icfg, device)
        batch = {"observations": torch.randn(B, obs_dim, device=device), "actions": torch.rand(B, act_dim, device=device) * 2 - 1,
                 "next_observations": torch.randn(B, obs_dim, device=device), "rewards": -torch.rand(B, device=device),
                 "masks": torch.ones(B, device=device)}
        loss_fn = lambda: O.iql_losses(net, batch, icfg)[0]
        what = f"iql: SliceIQL (4 observation tokens, separate target), batch {B}, Adam, no Polyak update"
    else:
        K = 20
        net, _ = W.build({**cfg, "dropout": 0.1}, device)
        s, a = torch.randn(B, K, W.STATE_DIM, device=device), torch.rand(B, K, W.ACT_DIM, device=device) * 2 - 1
        r, ts = torch.randn(B, K, device=device), torch.arange(K, device=device).expand(B, -1)
        loss_fn = lambda: (net(s, a, r, ts) - a).pow(2).mean()
        what = f"dt: DecisionTransformer, batch {B} x {K} timesteps ({3 * K} tokens), Adam"
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-4)

    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step, what


def ab_compile(args, device):
    """Eager against compiled steps per second, alternating (eager, compiled, compiled, eager, ...)
    so that load drift on a shared machine hits both sides; the compilation is timed apart."""
    from runs import compilations
    dtype = resolve_dtype(args.dtype, device)
    step, what = ab_step(args, device, dtype_name(dtype))
    load_before = os.getloadavg()
    t = time.time()
    step()            # compiles
    compile_s = time.time() - t
    with torch.compiler.set_stance("force_eager"):
        step()        # eager warm-up
    rounds = []
    for r in range(args.ab_compile):
        times = {}
        for side in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            if side == "eager":
                with torch.compiler.set_stance("force_eager"):
                    times[side] = timeit(step, args.iters, lambda: None, warm=False)
            else:
                times[side] = timeit(step, args.iters, lambda: None, warm=False)
        rounds.append({k: 1 / v for k, v in times.items()})
    ratios = sorted(r["compiled"] / r["eager"] for r in rounds)
    return {"task": args.ab_task, "step": what, "model": args.model, "slice": args.layers, "dtype": dtype_name(dtype),
            "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "compile_s_first_step": compile_s, "compilations": compilations(), "iters_per_side_per_round": args.iters,
            "steps_per_s": rounds, "eager_steps_per_s_median": statistics.median([r["eager"] for r in rounds]),
            "compiled_steps_per_s_median": statistics.median([r["compiled"] for r in rounds]),
            "speedup_median": statistics.median(ratios), "speedup_range": [ratios[0], ratios[-1]]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=pretrained.DEFAULT_MODEL, help="model id or path (default: embedded gemma3-270m)")
    p.add_argument("--layers", default="6-11", help="slice, 0-based inclusive (default 6-11)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per pass (default 16)")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per sequence (default 64)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (default 5)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                   help="precision the frozen body holds and computes in: auto = bf16 on CUDA, fp32 on CPU. "
                        "The trainable interface keeps fp32 weights; losses and metrics are fp32 (default auto)")
    p.add_argument("--skip-load", action="store_true", help="skip the load-time/RSS comparison")
    p.add_argument("--compare-dtypes", action="store_true",
                   help="also time the slice in the other precision (bf16 <-> fp32) and say which is faster here: "
                        "on CPUs bf16 can be much faster or much slower than fp32, so measure before a long run")
    p.add_argument("--budget-s", type=float, default=120,
                   help="seconds the slice's timing may take per dtype, judged from its measured matmul peak: fewer "
                        "iterations (or none) where a dtype is pathologically slow, said in the JSON (default 120)")
    p.add_argument("--compile", action="store_true", help="time the slice compiled with torch.compile (after compiling)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one forward+backward step: the share of time per kind of operation")
    p.add_argument("--ab-compile", type=int, default=0, metavar="ROUNDS",
                   help="time eager against compiled steps of --ab-task, alternating for ROUNDS rounds (load drift "
                        "hits both sides) and print that JSON instead")
    p.add_argument("--ab-task", default="tokens", choices=("tokens", "images", "iql", "dt"),
                   help="--ab-compile: the training step timed: a token task, MNIST patches, the IQL agent or the "
                        "Decision Transformer, on random data of the task's shapes (default tokens)")
    p.add_argument("--iql", action="store_true", help="bench the OGBench IQL agent instead of the slice")
    p.add_argument("--iql-env", default="scene-play-singletask-task1-v0", help="--iql: single-task env (default scene task1)")
    p.add_argument("--iql-layers", default="8", help="--iql: slice of the agent (default 8)")
    p.add_argument("--iql-episodes", type=int, default=50, help="--iql: episodes in the lockstep evaluation (default 50)")
    p.add_argument("--iql-eval-steps", type=int, default=100, help="--iql: timesteps timed per evaluation (default 100)")
    p.add_argument("--iql-batches", default="64,256", help="--iql: batch sizes timed (default 64,256)")
    p.add_argument("--iql-skip-eval", action="store_true", help="--iql: time the gradient steps only")
    args = p.parse_args()
    need_at_least(args, 1, "batch_size", "seq_len", "iters", "iql_episodes", "iql_eval_steps")
    device = pick_device(args.device)
    if args.ab_compile:
        print(json.dumps(ab_compile(args, device), indent=1))
        return
    if args.iql:
        try:
            args.iql_batches = [int(b) for b in args.iql_batches.split(",") if b.strip()]
        except ValueError:
            raise UserError(f"--iql-batches must be comma-separated integers, got {args.iql_batches!r}")
        print(json.dumps(bench_iql(args, device), indent=1))
        return
    dtype = resolve_dtype(args.dtype, device)
    # synchronise the device the work runs on (torch.cuda.synchronize() alone syncs the current one)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    result = slice_speed(args, device, dtype, sync)
    if args.compare_dtypes:
        other = DTYPES["fp32" if dtype == torch.bfloat16 else "bf16"]
        alt = slice_speed(args, device, other, sync)
        both = {r["dtype"]: r for r in (result, alt)}
        # a dtype cut by the budget counts at its matmul peak: an upper bound on what its slice reaches
        speeds = {d: r.get("fwd_bwd_tokens_per_s", r["matmul_peak_tflops"] * 1e12 / (4 * r["frozen_params"]))
                  for d, r in both.items()}
        faster = max(speeds, key=speeds.get)
        result["dtype_comparison"] = {
            "fwd_bwd_tokens_per_s": speeds, "matmul_peak_tflops": {d: r["matmul_peak_tflops"] for d, r in both.items()},
            # each dtype against its own peak, never the other's
            "fraction_of_own_peak": {d: r.get("fwd_bwd_fraction_of_matmul_peak") for d, r in both.items()},
            "cut": {d: r["cut"] for d, r in both.items() if "cut" in r},
            "untimed_tokens_per_s_are": "the bound its matmul peak sets (a dtype not timed at all)",
            "faster": faster, "speedup": speeds[faster] / min(speeds.values()),
            "advice": f"on this machine pass --dtype {faster} for long runs (CPU bf16 speed depends on bf16 matrix units)"}
        result["other_dtype"] = alt
        for d, r in both.items():
            fraction = r.get("fwd_bwd_fraction_of_matmul_peak")
            print(f"{d}: slice forward+backward at " + (f"{fraction:.2f} of the {d} matmul peak" if fraction is not None else
                  f"(not timed: {r['cut']})") + f" ({r['matmul_peak_tflops'] * 1e3:.1f} GFLOP/s)", file=sys.stderr)
    if not args.skip_load:
        ckpt = pretrained.Checkpoint(args.model)
        ckpt_dir = str(ckpt.dir or args.model)
        for what in (args.layers, "full"):
            key = "load_full" if what == "full" else "load_slice"
            if what == "full" and ckpt.repo_id is not None:
                result[key] = {"skipped": "hub id: loading the full model would download every shard; "
                                          "pass a local directory to --model to compare"}
                continue
            out = subprocess.run([sys.executable, "-c", LOAD, str(REPO), ckpt_dir, what, result["dtype"]],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                result[key] = {"error": out.stderr.strip().splitlines()[-1]}
                continue
            result[key] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    run_main(main)
