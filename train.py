"""
Train the linear interface around a frozen Gemma slice (or a control) on a token-pattern task.

    python train.py --task ar --layers 6-11                  # embedded Gemma 3 270M, CPU
    python train.py --task copy --init random                # same slice, re-initialised weights
    python train.py --task ar --substrate scratch            # trainable transformer of the same shape
    python train.py --task ar --model google/gemma-4-31B --layers 24-29   # the paper's setting, GPU
    python train.py --task walker2d --layers 6-10            # Decision Transformer (tasks/walker2d.py; --help there)
    python train.py --task ogbench --layers 8                # offline IQL on OGBench (tasks/ogbench.py; --help there)
    python train.py --task images --dataset mnist5k          # image classifier (tasks/images.py; --help there)

Steps: parse flags -> build body (model.py) -> build task (tasks/) -> loop -> evaluate -> JSON.
Writes OUT/last.pt, OUT/best.pt (trainable weights + full config) and OUT/results.json.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import model as M
import pretrained
import tasks
from runs import (UserError, barrier, condition_name, data_parallel, environment, finish_distributed, global_loss,
                  need_at_least, need_positive_float, open_run, pick_device, portable, refuse_changed_scale,
                  resolve_dtype, results_head, resume_training, run_folder, run_main, save_atomic, training_state,
                  warm_up, wrap_ddp, add_run_args, checkpoint_due, log_scalars, parse_run_args, scalar_writer, load_checkpoint)
from tasks.floors import floors
from runs import seed_arg, stop_at_step_boundary, stop_requested, stopped
from tasks.tokens import bit_errors, build, get_task, max_length, parse_lengths, task_loss


# Flags that define what a run is: --resume refuses to continue with any of them changed
# (--steps may grow, --eval-every may change: neither changes what is trained), but for --lr:
# a lower rate after a divergence is allowed and recorded (runs.open_run).
IDENTITY = ("task", "model", "layers", "substrate", "init", "seed", "input_scale", "train_len", "lr", "batch_size",
            "warmup", "select_len", "eval_lengths", "eval_samples", "dtype", "compile")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True,
                   help=f"one of {', '.join(tasks.TABLE)} (tasks/__init__.py); walker2d, ogbench and images have "
                        "flags of their own: train.py --task images --help")
    M.add_body_args(p)
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per step (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps, then constant LR (default 50)")
    p.add_argument("--train-len", type=int, default=10,
                   help="training lengths are drawn uniformly from the task's minimum up to this edge (default 10)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds init, data and random-init weights (default 0)")
    p.add_argument("--eval-every", type=int, default=250, help="evaluate and checkpoint every N steps (default 250)")
    p.add_argument("--eval-lengths", default="10,20,30,40,60", help="comma-separated lengths to evaluate (default 10,20,30,40,60)")
    p.add_argument("--eval-samples", type=int, default=256, help="sequences per length per evaluation (default 256)")
    p.add_argument("--select-len", type=int, default=30, help="length whose error picks best.pt (default 30: 'L30')")
    p.add_argument("--out", default=None, help="run folder (default runs/{task}__{condition}__{seed}__{hash of the settings})")
    add_run_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the bytes to download and the peak weight memory of this slice in the chosen --dtype, "
                        "then exit; fetches only config and index (works with every --task)")
    return p


def gigabytes(n):
    return f"{n / 1e9:.2f} GB"


def dry_run(args):
    """Print what a run would download and hold, before any weight is fetched (config and index only).
    args: the task's own flags (its default slice included)."""
    device = pick_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    ckpt = pretrained.Checkpoint(args.model)
    first, last = M.parse_layers(args.layers, ckpt.num_layers)
    if args.substrate != "gemma":
        print(f"dry run: --substrate {args.substrate} loads no Gemma weights (config only)")
        print(json.dumps({"substrate": args.substrate, "bytes_to_fetch": 0}))
        return
    mode = M.parse_input_scale(args.input_scale)
    calibrate = mode in ("auto", "learn") and pretrained.cached_calibration(ckpt, first) is None
    plan = pretrained.plan_load(ckpt, first, last, dtype, calibrate)
    print(f"dry run: {ckpt.name}, layers {first}-{last}, {plan['dtype']} on {device}")
    where = "from the Hugging Face hub" if ckpt.repo_id else "already on disk (local files)"
    print(f"  shards needed: {len(plan['shards_to_fetch'])} of {plan['checkpoint_shards']}, "
          f"{gigabytes(plan['bytes_of_those_shards'])} of {gigabytes(plan['checkpoint_bytes'])}, {where}; "
          f"to download now: {gigabytes(plan['bytes_to_fetch'])} (shards already in the HF cache are not fetched again)")
    print(f"  slice in memory: {gigabytes(plan['slice_bytes_in_memory'])} ({plan['slice_params']:,} weights in {plan['dtype']})")
    if calibrate:
        print(f"  input-scale calibration (not cached yet): streams the embedding and layers 0-{first - 1} one at a time, "
              f"{gigabytes(plan['calibration_bytes_in_memory'])} at once, before the slice is loaded; "
              f"--input-scale NUMBER skips it")
    print(f"  peak weight memory: {gigabytes(plan['peak_weight_bytes_in_memory'])} "
          f"(plus activations, the interface and its optimizer state)")
    print(json.dumps(plan))


def main():
    # Which module runs --task comes from the task table (tasks/__init__.py): the token tasks share
    # the loop below, the others own their loop and flags.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task")
    pre.add_argument("--dry-run", action="store_true")
    pre.add_argument("--resume", nargs="?", const=True, default=False)
    pre.add_argument("--out")
    known = pre.parse_known_args()[0]
    if known.task is None and known.resume is not False and (known.out or known.resume is not True):
        # resume by folder: the task, like every other setting, comes from the run's checkpoint
        known.task = load_checkpoint(Path(known.out if known.resume is True else known.resume) / "last.pt")["config"]["task"]
        sys.argv[1:1] = ["--task", known.task]
    module = tasks.module(known.task) if known.task is not None else None
    own_loop = module is not None and module.__name__ != "tasks.tokens"
    if known.dry_run:
        return dry_run((module.get_parser() if own_loop else get_parser()).parse_known_args()[0])
    if own_loop:
        return module.main(sys.argv[1:])
    parser = get_parser()
    args = parse_run_args(parser)
    cfg = {**vars(args), "out": portable(args.out)}   # as recorded in JSON: no machine's absolute path
    need_at_least(args, 1, "steps", "batch_size", "eval_every", "eval_samples", "train_len")
    need_at_least(args, 0, "warmup")
    need_positive_float(args, "lr")
    M.parse_input_scale(args.input_scale)
    task = get_task(args.task)
    rank, world, device = data_parallel(args.batch_size, args.device)   # (0, 1, device) unless under torchrun
    longest = max_length(task, M.attention_window(pretrained.Checkpoint(args.model).text_config))
    if not task.MIN_LEN <= args.train_len <= longest:
        raise UserError(f"--train-len {args.train_len}: task {args.task} supports lengths {task.MIN_LEN}-{longest} with this model")
    eval_lengths = parse_lengths(args.eval_lengths, task, longest)
    if args.select_len not in eval_lengths:
        raise UserError(f"--select-len {args.select_len} must be one of --eval-lengths {args.eval_lengths}")
    out = Path(args.out or run_folder(args.task, cfg))
    defaults = {k: parser.get_default(k) for k in IDENTITY}   # for checkpoints older than a flag
    state = open_run(out, cfg, IDENTITY, args.resume, defaults, check_write=rank == 0)
    barrier()                   # nobody starts while rank 0 might still refuse the folder
    env = {**environment(device), "world_size": world}   # git commit of the code that starts the run
    main_rank = rank == 0

    task, net, info = build(cfg, device)
    refuse_changed_scale(state, info["input_scale"], out, args.input_scale)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    model = wrap_ddp(net, device, world)
    data_gen = torch.Generator().manual_seed(args.seed)
    step, history, best, wall_before = resume_training(state, net, opt, data_gen)
    if state is not None and main_rank:
        print(f"resuming {out} at step {step}")
    counts = M.param_counts(net)
    if main_rank:
        print(f"{args.task} | {condition_name(cfg)} | trainable {counts['trainable_params']:,} | "
              f"frozen {counts['frozen_params']:,} | {device}" + (f" x {world} ranks" if world > 1 else ""))

    def checkpoint(name):
        if not main_rank:
            return
        save_atomic(training_state(cfg, info, step, M.trainable_state(net), opt, data_gen, history, best,
                                   wall_before + time.time() - t0, loss_since_eval=[loss_sum, loss_n]), out / name)

    def write_results():
        if not main_rank:
            return
        save_atomic({**results_head(cfg, info, condition_name(cfg), counts, env, step, wall_before + time.time() - t0),
                     "metric": "per_bit_error",
                     "select_len": args.select_len, "floors": floors(args.task, eval_lengths),
                     "history": history, "best": best,
                     "final": history[-1] if history else None, **M.end_regime(net)}, out / "results.json")

    t0 = saved_at = time.time()
    shown = {f"len{args.select_len}": f"{history[-1]['errors'][str(args.select_len)]:.4f}"} if history else {}
    bar = tqdm(total=args.steps, initial=step, desc=f"{args.task}", dynamic_ncols=True, disable=not main_rank)
    # mean training loss since the last evaluation (a wall-clock checkpoint between evaluations keeps it)
    loss_sum, loss_n = state.get("loss_since_eval", (0.0, 0)) if state is not None else (0.0, 0)
    writer = scalar_writer(out, step, main_rank)
    stop_at_step_boundary()
    while step < args.steps:
        if stop_requested(world):
            checkpoint("last.pt")
            write_results()
            raise stopped(out, step)
        L = int(torch.randint(task.MIN_LEN, args.train_len + 1, (1,), generator=data_gen))
        # every rank draws the whole global batch from the same stream and keeps its share: N ranks
        # see exactly the sequences one process would (every sequence of a step has the same length,
        # hence the same number of scored bits, so the mean of the ranks' means is the global mean)
        x, y, mask = task.make_batch(args.batch_size, L, data_gen)
        share = slice(rank * args.batch_size // world, (rank + 1) * args.batch_size // world)
        x, y, mask = x[share].to(device), y[share].to(device), mask[share].to(device)
        warm_up(opt, args.lr, step, args.warmup)
        loss = task_loss(model(x), y, mask)
        loss_value = global_loss(loss, world, step, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
        bar.update(1)
        if writer and (step % args.log_every == 0 or step == 1):
            log_scalars(writer, {"loss": loss_value, "lr": opt.param_groups[0]["lr"]}, step, "train")
        if step % args.eval_every == 0 or step == args.steps:
            errors = bit_errors(net, task, eval_lengths, args.eval_samples, args.seed + 1, device, rank=rank, world=world)
            history.append({"step": step, "loss": loss_sum / loss_n, "errors": errors, "input_scale": net.input_scale()})
            loss_sum, loss_n = 0.0, 0
            last_sel = errors[str(args.select_len)]
            shown = {f"len{args.select_len}": f"{last_sel:.4f}"}
            if best is None or last_sel < best["errors"][str(args.select_len)]:
                best = {"step": step, "errors": errors}
                checkpoint("best.pt")
            checkpoint("last.pt")
            write_results()
            saved_at = time.time()
            log_scalars(writer, {"errors": errors, "input_scale": net.input_scale()}, step, "val")
            bar.unpause()           # the rate shown counts training steps, not evaluation time
        elif checkpoint_due(saved_at, args.checkpoint_minutes):
            checkpoint("last.pt")
            saved_at = time.time()
            bar.unpause()
        # the bar shows the mean since the last evaluation: one batch's loss swings with the length drawn
        # for it (a 2-item AR batch is solved by position alone, a 6-item one is not)
        bar.set_postfix(loss=f"{(loss_sum / loss_n if loss_n else loss_value):.4f}", **shown)
    bar.close()
    write_results()
    if writer:
        writer.close()
    finish_distributed()
    if main_rank:
        print(f"done: best len{args.select_len} {best['errors'][str(args.select_len)]:.4f} at step {best['step']}; {out}/results.json")


if __name__ == "__main__":
    run_main(main)
