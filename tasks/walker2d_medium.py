"""
A medium-quality Walker2d dataset made on this machine, the way Minari made mujoco/walker2d/medium-v0:
train SAC on Walker2d-v5 until its stochastic policy returns about a third to two thirds of an expert,
stop, and record that policy as a local Minari dataset.

    python -m tasks.walker2d_medium make                         # both stages, from nothing (hours on one core)
    python -m tasks.walker2d_medium sac --out runs/sac_walker2d   # stage 1 alone; run it again to resume
    python -m tasks.walker2d_medium record --sac runs/sac_walker2d --id local/walker2d-medium-sac-v0

SAC is stable-baselines3's (the default SAC hyperparameters of its RL zoo for MuJoCo: Adam 3e-4,
batch 256, buffer 1M, tau 0.005, gamma 0.99, automatic entropy, 10,000 random steps first).
Every --eval-every steps the policy plays --eval-episodes episodes twice (stochastic, as it will be
recorded, and deterministic) and a checkpoint is written; training stops once the stochastic mean
return reaches --stop-return (default 3,000: D4RL-normalised about 65), or at --max-steps.

Checkpoints hold tensors and arrays only (torch.save read back with weights_only=True, and an .npz
replay buffer), never a pickled SB3 model. A resumed run continues from the last checkpoint with the
same replay buffer and optimiser state; the episode that was running starts afresh.
"""
import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from runs import (UserError, environment, file_sha256, log_scalars, need_at_least, need_package, run_main, save_atomic,
                  scalar_writer, subcommands)
from runs import need_positive_float
from runs import hold_lock, read_json, seed_arg, stop_at_step_boundary, stop_requested, stopped
from tasks.walker2d import ENV_ID, REF_MAX_RETURN, REF_MIN_RETURN, d4rl_score

DEFAULT_ID = "local/walker2d-medium-sac-v0"
MEDIUM_TAG = "borrowed-geometry medium SAC"   # the dataset's algorithm_name starts with this (never the stand-in tag)
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def sac_model(env, args):
    """The SAC learner; the same construction for a new run, a resumed one and the recorder."""
    SAC = need_package("stable_baselines3", "stable-baselines3", "walker2d_medium").SAC
    return SAC("MlpPolicy", env, learning_rate=args.lr, buffer_size=args.buffer_size, learning_starts=args.learning_starts,
               batch_size=256, tau=0.005, gamma=0.99, seed=args.seed, device="cpu", verbose=0)


def save_checkpoint(model, out, history, wall):
    """Tensors and arrays only: the learner's state dicts, the entropy coefficient, the replay buffer."""
    buf = model.replay_buffer
    n = buf.buffer_size if buf.full else buf.pos
    # the buffer first, under a temporary name: a crash between the two writes leaves the old pair valid
    tmp = out / "buffer.tmp.npz"
    state = {"params": model.get_parameters(), "log_ent_coef": model.log_ent_coef.detach().clone(),
             "num_timesteps": model.num_timesteps, "n_updates": model._n_updates, "history": json.dumps(history),
             "wall_time_s": wall}
    try:
        np.savez(tmp, pos=buf.pos, full=buf.full, **{k: getattr(buf, k)[:n] for k in BUFFER_FIELDS})
        torch.save(state, out / "sac.tmp.pt")
    except (OSError, RuntimeError):      # a full disk: the previous pair stays as it was
        for f in (tmp, out / "sac.tmp.pt"):
            f.unlink(missing_ok=True)
        raise UserError(f"cannot write the SAC checkpoint in {out} (is the disk full?); the previous one is kept")
    os.replace(tmp, out / "buffer.npz")
    os.replace(out / "sac.tmp.pt", out / "sac.pt")


def load_checkpoint_into(model, out, with_buffer=True):
    """Restore what save_checkpoint wrote; returns (history, wall time so far)."""
    try:
        state = torch.load(out / "sac.pt", weights_only=True, map_location="cpu")
        model.set_parameters(state["params"], exact_match=True)
    except Exception as e:
        raise UserError(f"{out}/sac.pt: not a readable SAC checkpoint of this code ({type(e).__name__}: {str(e)[:120]})")
    with torch.no_grad():
        model.log_ent_coef.copy_(state["log_ent_coef"])
    model.num_timesteps, model._n_updates = int(state["num_timesteps"]), int(state["n_updates"])
    if with_buffer:
        try:
            with np.load(out / "buffer.npz") as z:
                buf = model.replay_buffer
                n = len(z["observations"])
                if n > buf.buffer_size:
                    raise UserError(f"{out}/buffer.npz holds {n} transitions, more than --buffer-size {buf.buffer_size}")
                for k in BUFFER_FIELDS:
                    getattr(buf, k)[:n] = z[k]
                buf.pos, buf.full = int(z["pos"]), bool(z["full"])
        except UserError:
            raise
        except Exception as e:    # truncated or damaged: zipfile, zlib and numpy each fail their own way
            raise UserError(f"{out}/buffer.npz is not a readable replay buffer (truncated or damaged?): {type(e).__name__}")
    return json.loads(state["history"]), float(state["wall_time_s"])


def evaluate(model, episodes, seed, deterministic):
    """Mean return of `episodes` episodes on fresh env seeds seed, seed+1, ..."""
    gym = need_package("gymnasium", "gymnasium[mujoco]", "walker2d_medium")
    env = gym.make(ENV_ID)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return returns


def sac(args):
    """Stage 1: SAC until the stochastic policy is medium (or --max-steps); resumable."""
    gym = need_package("gymnasium", "gymnasium[mujoco]", "walker2d_medium")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hold_lock(out / ".lock", f"--out {out}")
    cfg_file = out / "config.json"
    cfg = {k: getattr(args, k) for k in ("seed", "lr", "buffer_size", "learning_starts", "eval_every", "eval_episodes",
                                          "stop_return", "max_steps")}
    if cfg_file.exists():
        old = read_json(cfg_file)
        fixed = ("seed", "lr", "buffer_size", "learning_starts", "eval_episodes")   # what defines the run
        diff = [k for k in fixed if old.get(k) != cfg[k]]
        if diff:
            raise UserError(f"{out} holds a SAC run with other " + ", ".join(f"{k}={old.get(k)!r}" for k in diff)
                            + "; use another --out")
    save_atomic(cfg, cfg_file)
    torch.set_num_threads(1)       # SAC's small networks gain nothing from more threads; keep a core free
    env = gym.make(ENV_ID)
    model = sac_model(env, args)
    history, wall_before = ([], 0.0)
    if (out / "sac.pt").exists():
        history, wall_before = load_checkpoint_into(model, out)
        print(f"resuming {out} at step {model.num_timesteps:,}")
    t0 = time.time()
    medium = history and history[-1]["stochastic_return_mean"] >= args.stop_return
    bar = tqdm(total=args.max_steps, initial=model.num_timesteps, desc="SAC Walker2d-v5", dynamic_ncols=True)
    writer = scalar_writer(out, model.num_timesteps)      # the evaluation returns, live (tensorboard --logdir)

    def keep_going(*_):
        """SB3 calls this after every environment step; False ends learn() there."""
        if stop_requested():
            model.num_timesteps -= 1     # SB3 has counted this step but does not store it
            return False
        return True
    stop_at_step_boundary()
    while not medium and model.num_timesteps < args.max_steps:
        chunk = min(args.eval_every - model.num_timesteps % args.eval_every, args.max_steps - model.num_timesteps)
        before = model.num_timesteps
        model.learn(total_timesteps=chunk, reset_num_timesteps=False, progress_bar=False, callback=keep_going)
        bar.update(model.num_timesteps - before)
        if stop_requested():
            save_checkpoint(model, out, history, wall_before + time.time() - t0)
            raise stopped(out, f"{model.num_timesteps:,}", saved="sac.pt", how="run the same command again")
        eval_seed = 10_000 + model.num_timesteps     # fresh episodes at every evaluation
        stoch = evaluate(model, args.eval_episodes, eval_seed, deterministic=False)
        det = evaluate(model, args.eval_episodes, eval_seed, deterministic=True)
        history.append({"step": model.num_timesteps, "stochastic_return_mean": float(np.mean(stoch)),
                        "stochastic_returns": stoch, "deterministic_return_mean": float(np.mean(det)),
                        "deterministic_returns": det, "d4rl_score_stochastic": d4rl_score(float(np.mean(stoch))),
                        "wall_time_s": wall_before + time.time() - t0})
        bar.set_postfix(stoch=f"{np.mean(stoch):.0f}", det=f"{np.mean(det):.0f}")
        log_scalars(writer, {k: v for k, v in history[-1].items() if k.endswith(("_mean", "_stochastic"))},
                    model.num_timesteps, "eval")
        medium = history[-1]["stochastic_return_mean"] >= args.stop_return
        save_checkpoint(model, out, history, wall_before + time.time() - t0)
        write_curve(out, cfg, history, model.num_timesteps, medium, wall_before + time.time() - t0)
    bar.close()
    writer.close()
    env.close()
    if not history:
        raise UserError(f"{out}: --max-steps {args.max_steps} leaves nothing to train")
    last = history[-1]
    state = "medium" if medium else f"NOT medium (stopped at --max-steps {args.max_steps:,})"
    print(f"SAC at step {last['step']:,}: stochastic return {last['stochastic_return_mean']:.0f} "
          f"(D4RL-normalised {last['d4rl_score_stochastic']:.1f}): {state}")
    return out, medium


def write_curve(out, cfg, history, steps, medium, wall):
    """The training curve as JSON beside the checkpoint (what results/walker2d/ keeps)."""
    save_atomic({"what": "SAC on Walker2d-v5 (stable-baselines3), stopped at medium quality",
                 "config": cfg, "steps_done": steps, "medium_reached": bool(medium), "history": history,
                 "wall_time_s": wall, **environment(torch.device("cpu")),
                 "normalisation": {"ref_min_return": REF_MIN_RETURN, "ref_max_return": REF_MAX_RETURN}},
                out / "curve.json")


def record(args):
    """Stage 2: the stopped SAC policy, stochastic, recorded into a local Minari dataset."""
    gym = need_package("gymnasium", "gymnasium[mujoco]", "walker2d_medium")
    minari = need_package("minari", "minari h5py", "walker2d_medium")
    from minari.data_collector import EpisodeBuffer  # a plain dataclass; DataCollector would pull in jax
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*-v\d+", args.id):
        raise UserError(f"--id {args.id!r}: a Minari id looks like 'namespace/name-v0'")
    if args.id in minari.list_local_datasets():
        raise UserError(f"Minari dataset {args.id} already exists; remove it with `minari delete {args.id}` or pick another --id")
    sac_dir = Path(args.sac)
    if not (sac_dir / "sac.pt").is_file():
        raise UserError(f"--sac {sac_dir}: no sac.pt (train it first: python -m tasks.walker2d_medium sac --out {sac_dir})")
    curve = read_json(sac_dir / "curve.json")
    if not curve["medium_reached"] and not args.allow_not_medium:
        raise UserError(f"{sac_dir}: SAC stopped before medium quality (last stochastic return "
                        f"{curve['history'][-1]['stochastic_return_mean']:.0f}); resume it or pass --allow-not-medium")
    env = gym.make(ENV_ID)
    cfg = argparse.Namespace(**{**curve["config"], "buffer_size": 1})   # the recorder needs no replay buffer
    model = sac_model(env, cfg)
    load_checkpoint_into(model, sac_dir, with_buffer=False)
    torch.manual_seed(args.seed)                   # the policy's action noise
    buffers, steps, i = [], 0, 0
    bar = tqdm(total=args.transitions, desc=f"record {args.id}", dynamic_ncols=True)
    while steps < args.transitions:
        obs, _ = env.reset(seed=args.seed + i)
        observations, acts, rews, terms, truncs = [obs], [], [], [], []
        while True:
            a, _ = model.predict(obs, deterministic=False)
            obs, r, term, trunc, _ = env.step(a)
            observations.append(obs)
            acts.append(np.asarray(a, np.float32))
            rews.append(float(r))
            terms.append(bool(term))
            truncs.append(bool(trunc))
            if term or trunc:
                break
        buffers.append(EpisodeBuffer(id=i, seed=args.seed + i, observations=np.array(observations), actions=np.array(acts),
                                     rewards=rews, terminations=terms, truncations=truncs, infos={}))
        steps += len(acts)
        i += 1
        bar.update(len(acts))
    bar.close()
    env.close()
    returns = [sum(b.rewards) for b in buffers]
    policy_hash = file_sha256(sac_dir / "sac.pt")
    last = curve["history"][-1]
    description = (f"Medium-quality Walker2d-v5 data made by borrowed-geometry: stable-baselines3 SAC trained "
                   f"{last['step']:,} steps (seed {curve['config']['seed']}) and stopped at an evaluated stochastic "
                   f"return of {last['stochastic_return_mean']:.0f}; {len(buffers)} episodes recorded with the stochastic "
                   f"policy (env seeds {args.seed}..{args.seed + len(buffers) - 1}). Policy checkpoint sha256 {policy_hash}. "
                   f"Not the D4RL or Minari file.")
    ds = minari.create_dataset_from_buffers(
        args.id, buffers, env=ENV_ID, eval_env=ENV_ID, algorithm_name=f"{MEDIUM_TAG}: {last['step']} steps, return {last['stochastic_return_mean']:.0f}",
        author="borrowed-geometry", author_email="none", code_permalink="tasks/walker2d_medium.py",
        ref_min_score=REF_MIN_RETURN, ref_max_score=REF_MAX_RETURN, description=description)
    summary = {"dataset_id": args.id, "episodes": ds.total_episodes, "transitions": ds.total_steps,
               "return_mean": float(np.mean(returns)), "return_min": float(np.min(returns)), "return_max": float(np.max(returns)),
               "return_std": float(np.std(returns)), "d4rl_score_mean": d4rl_score(float(np.mean(returns))),
               "terminated_episodes": int(sum(b.terminations[-1] for b in buffers)), "record_seed": args.seed,
               "policy_sha256": policy_hash, "sac_steps": last["step"], "sac_eval_stochastic_return": last["stochastic_return_mean"],
               "description": description}
    save_atomic(summary, sac_dir / "dataset_summary.json")
    print(f"wrote {args.id}: {ds.total_episodes} episodes, {ds.total_steps:,} transitions, return mean "
          f"{summary['return_mean']:.0f} (min {summary['return_min']:.0f}, max {summary['return_max']:.0f}), "
          f"D4RL-normalised {summary['d4rl_score_mean']:.1f}")
    return summary


def add_sac_args(p):
    p.add_argument("--out", default="runs/sac_walker2d", help="SAC run folder: sac.pt, buffer.npz, curve.json (default runs/sac_walker2d)")
    p.add_argument("--seed", type=seed_arg, default=0, help="SAC seed (default 0)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--buffer-size", type=int, default=1_000_000, help="replay buffer capacity (default 1,000,000)")
    p.add_argument("--learning-starts", type=int, default=10_000, help="uniform random steps before learning (default 10,000)")
    p.add_argument("--eval-every", type=int, default=10_000, help="steps between evaluations and checkpoints (default 10,000)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation, each mode (default 10)")
    p.add_argument("--stop-return", type=float, default=3000.0,
                   help="stop once the stochastic policy's mean evaluation return reaches this (default 3000: medium)")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="stop here at the latest (default 1,000,000)")


def add_record_args(p, with_sac=True):
    if with_sac:
        p.add_argument("--sac", default="runs/sac_walker2d", help="the SAC run folder to record (default runs/sac_walker2d)")
    p.add_argument("--id", default=DEFAULT_ID, help=f"Minari dataset id to create (default {DEFAULT_ID}; stored under "
                   "MINARI_DATASETS_PATH or ~/.minari)")
    p.add_argument("--transitions", type=int, default=1_000_000,
                   help="record whole episodes until at least this many transitions (default 1,000,000)")
    p.add_argument("--record-seed", dest="seed_record", type=int, default=100_000,
                   help="episode i runs on env seed record-seed + i; also seeds the action noise (default 100,000)")
    p.add_argument("--allow-not-medium", action="store_true", help="record even if SAC stopped before --stop-return")


def cli(argv):
    subcommands("python -m tasks.walker2d_medium", __doc__, {
        "make": (lambda rest: command("make", rest), "both stages: SAC to medium quality, then record its dataset"),
        "sac": (lambda rest: command("sac", rest), "stage 1 alone: SAC until medium quality; run it again to resume"),
        "record": (lambda rest: command("record", rest), "stage 2 alone: record a stopped SAC run as a Minari dataset")}, argv)


def command(cmd, rest):
    p = argparse.ArgumentParser(prog=f"python -m tasks.walker2d_medium {cmd}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if cmd in ("make", "sac"):
        add_sac_args(p)
    if cmd in ("make", "record"):
        add_record_args(p, with_sac=cmd == "record")
    args = p.parse_args(rest)
    if cmd in ("make", "sac"):
        need_at_least(args, 1, "buffer_size", "eval_every", "eval_episodes", "max_steps")
        if args.learning_starts < 0:
            raise UserError("--learning-starts must be >= 0")
        need_positive_float(args, "lr")
        out, medium = sac(args)
        if cmd == "sac":
            return
        if not medium and not args.allow_not_medium:
            raise UserError("SAC stopped at --max-steps before medium quality; resume with a larger --max-steps")
        args.sac = str(out)
    need_at_least(args, 1, "transitions")
    args.seed = args.seed_record
    record(args)


if __name__ == "__main__":
    run_main(lambda: cli(sys.argv[1:]))
