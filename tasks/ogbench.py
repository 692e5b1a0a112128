"""
OGBench manipulation, single-task offline RL: IQL whose shared trunk is a frozen Gemma slice.

    python -m tasks.ogbench generate --env scene-play-v0 --episodes 100     # data offline, ~/.ogbench/data
    python -m tasks.ogbench check scene-play-singletask-task1-v0            # does the data reach the goal?
    python train.py --task ogbench --env scene-play-singletask-task1-v0 --layers 8
    python train.py --task ogbench --env scene-play-singletask-task1-v0 --substrate mlp   # plain MLP IQL
    python -m tasks.ogbench seeds RUNS/*__[012] --reference L8_pretrained --out summary.json   # over seeds

Tokens: the observation (standardised with the training set's mean and std) is cut into
--obs-tokens contiguous chunks, zero-padded to equal length; chunk i enters through its own Linear
map into d_model, and the action through one more, giving the sequence [o_1 .. o_k, a], times the
slice's input scale. One causal pass of the frozen slice serves the critic: the observation
tokens cannot see the action, so V(s) reads the RMS-normalised states of o_1..o_k (concatenated)
and the twin Q(s, a) read those plus the action token's state. The actor has its own interface and
runs the same frozen slice over [o_1 .. o_k]. The heads are small
MLPs (LayerNorm on V and Q, as in the OGBench/FQL IQL). The interfaces, heads and nothing else train.
`--substrate mlp` is the plain IQL of FQL/OGBench instead: separate 4x512 MLPs, no slice.

IQL (Kostrikov et al. 2021): V by expectile regression on the target twin-Q, Q by TD to r + g V(s'),
policy by advantage-weighted regression with a constant unit std; rewards and masks are those
`ogbench.make_env_and_datasets` relabels for the task. Success rate is measured in the real MuJoCo
env, all episodes stepped in lockstep so the policy runs once per timestep for the whole batch.
"""
import argparse
import copy
import json
import math
import os
import sys
import time
import warnings
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import model as M
import stats
from runs import (UserError, condition_name, environment, episode_seed_base, file_sha256, global_loss, host_reachable,
                  load_checkpoint, load_weights, need_at_least, need_package, need_positive_float, open_run,
                  pick_device, portable, refuse_changed_scale, results_head, resume_training, run_folder, run_main,
                  save_atomic, training_state, write_or_print, add_run_args, checkpoint_due, log_scalars, parse_run_args,
                  scalar_writer, subcommands)
from runs import read_json, seed_arg, stop_at_step_boundary, stop_requested, stopped

DEFAULT_ENV = "scene-play-singletask-task1-v0"
DEFAULT_DATA_DIR = "~/.ogbench/data"
DATA_HOST = "rail.eecs.berkeley.edu"     # where ogbench downloads its datasets from
SUBSTRATES = M.SUBSTRATES + ("mlp",)
# Flags that define what a checkpoint is; a resumed run must agree on all of them.
IDENTITY = ("env", "model", "layers", "substrate", "init", "seed", "input_scale", "obs_tokens", "hidden",
            "discount", "expectile", "temperature", "tau", "batch_size", "lr", "dataset_dir", "dtype", "success_timing",
            "target", "compile")


# Harmless on headless machines (nothing here renders) and printed once per env otherwise.
warnings.filterwarnings("ignore", module="glfw")
warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")


def need_ogbench():
    return need_package("ogbench", "ogbench", "OGBench tasks")


# ----------------------------------------------------------------------------- data

def split_name(name):
    """'scene-play-singletask-task1-v0' -> (dataset 'scene-play-v0', env 'scene-singletask-task1-v0')."""
    parts = name.split("-")
    if "singletask" not in parts or parts.index("singletask") < 2:
        raise UserError(f"--env {name!r}: expected an OGBench single-task name such as {DEFAULT_ENV}")
    i = parts.index("singletask")
    return "-".join(parts[:i] + parts[-1:]), "-".join(parts[:i - 1] + parts[i:])


def load(name, dataset_dir=DEFAULT_DATA_DIR):
    """(env, train, val) exactly as ogbench gives them; missing files offline fail fast and say how to get them."""
    ogbench = need_ogbench()
    dataset, _ = split_name(name)
    folder = Path(os.path.expanduser(dataset_dir))
    missing = [f for f in (f"{dataset}.npz", f"{dataset}-val.npz") if not (folder / f).exists()]
    if missing and not host_reachable(DATA_HOST):
        raise UserError(
            f"{folder}/{missing[0]} is missing and {DATA_HOST} cannot be reached. Either download it with internet "
            f"(this command does it on first use, or `python -c \"import ogbench; ogbench.download_datasets(['{dataset}'], "
            f"'{dataset_dir}')\"`), or generate a stand-in offline: "
            f"`python -m tasks.ogbench generate --env {dataset} --episodes 100 --dataset-dir {dataset_dir}`")
    try:
        return ogbench.make_env_and_datasets(name, dataset_dir=str(folder))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:   # a damaged .npz
        raise UserError(f"{folder}/{dataset}.npz or {dataset}-val.npz cannot be read (truncated or damaged?): "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")


def data_file_sha256(name, dataset_dir=DEFAULT_DATA_DIR):
    """SHA-256 of the training .npz a run reads: generated files differ between machines, and runs
    compare only on one file."""
    dataset, _ = split_name(name)
    return file_sha256(Path(os.path.expanduser(dataset_dir)) / f"{dataset}.npz")


def make_oracles(env, env_name, noise, smoothing):
    """The scripted 'play' oracles that ship in the ogbench wheel, one per subtask kind."""
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle
    kw = dict(env=env, noise=noise, noise_smoothing=smoothing)
    if env_name.startswith("cube"):
        return {"cube": CubePlanOracle(**kw)}
    if env_name.startswith("scene"):
        return {"cube": CubePlanOracle(**kw), "button": ButtonPlanOracle(**kw),
                "drawer": DrawerPlanOracle(**kw), "window": WindowPlanOracle(**kw)}
    if env_name.startswith("puzzle"):
        return {"button": ButtonPlanOracle(gripper_always_closed=True, **kw)}
    raise UserError(f"generate: no oracle for {env_name!r}; use a cube-*, scene- or puzzle-* play dataset")


def stack_probability(env_name, rng):
    """How often a cube target is placed on another cube, per episode (more cubes, more stacking)."""
    for kind, (lo, hi) in {"single": (0, 0), "double": (0, 0.25), "triple": (0.05, 0.35),
                           "quadruple": (0.1, 0.5), "octuple": (0, 0.35)}.items():
        if kind in env_name:
            return rng.uniform(lo, hi)
    return 0.5


def scene_healthy(qpos):
    """Scene episodes whose cube leaves the visible table (except into the drawer) are redrawn."""
    xyz = qpos[:, 14:17]
    too_right = (xyz[:, 1] >= 0.29).any()
    too_left = ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()
    return not (too_right or too_left)


def generate(argv=None):
    """Drive the shipped oracles in 'play' mode and write ogbench's X-play-v0.npz / X-play-v0-val.npz."""
    p = argparse.ArgumentParser(prog="python -m tasks.ogbench generate", description=generate.__doc__)
    p.add_argument("--env", default="scene-play-v0", help="dataset name, e.g. scene-play-v0, cube-double-play-v0 (default scene-play-v0)")
    p.add_argument("--episodes", type=int, default=100, help="training episodes; validation gets a tenth, at least 1 (default 100; official data: 1000)")
    p.add_argument("--episode-steps", type=int, default=1001, help="steps per episode (default 1001, as the official play data)")
    p.add_argument("--noise", type=float, default=0.1, help="plan noise of the oracles (default 0.1)")
    p.add_argument("--noise-smoothing", type=float, default=0.5, help="temporal smoothing of that noise (default 0.5)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds the env and the oracles (default 0)")
    p.add_argument("--dataset-dir", "--out", dest="out", default=DEFAULT_DATA_DIR,
                   help=f"folder ogbench reads from, as train's --dataset-dir (default {DEFAULT_DATA_DIR}; --out is the old name)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    args = p.parse_args(argv)
    need_ogbench()
    import gymnasium
    parts = args.env.split("-")
    if len(parts) < 3 or parts[-2] != "play":
        raise UserError(f"--env {args.env!r}: give a play dataset name such as scene-play-v0")
    if args.episodes < 1 or args.episode_steps < 2:
        raise UserError("need --episodes >= 1 and --episode-steps >= 2")
    env_name = "-".join(parts[:-2] + parts[-1:])
    out = Path(os.path.expanduser(args.out))
    train_path, val_path = out / f"{args.env}.npz", out / f"{args.env}-val.npz"
    if train_path.exists() and val_path.exists() and not args.force:
        print(f"{train_path} and {val_path.name} exist; nothing to do (--force to regenerate)")
        return
    out.mkdir(parents=True, exist_ok=True)

    np.random.seed(args.seed)                 # the oracles draw their plans from the global numpy RNG
    rng = np.random.default_rng(args.seed)
    env = gymnasium.make(env_name, terminate_at_goal=False, mode="data_collection", max_episode_steps=args.episode_steps)
    oracles = make_oracles(env, env_name, args.noise, args.noise_smoothing)
    n_val = max(1, args.episodes // 10)
    episodes, redrawn = [], 0
    first = True
    for _ in tqdm(range(args.episodes + n_val), desc=f"generate {args.env}", dynamic_ncols=True):
        while True:
            ob, info = env.reset(seed=args.seed if first else None)
            first = False
            p_stack = stack_probability(env_name, rng)
            oracle = oracles[info["privileged/target_task"]]
            oracle.reset(ob, info)
            ep = defaultdict(list)
            done = False
            while not done:
                action = np.clip(np.asarray(oracle.select_action(ob, info)), -1, 1)
                next_ob, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                if oracle.done:       # subtask finished: the env picks the next one, play-style
                    ob2, info2 = env.unwrapped.set_new_target(p_stack=p_stack)
                    oracle = oracles[info2["privileged/target_task"]]
                    oracle.reset(ob2, info2)
                ep["observations"].append(ob)
                ep["actions"].append(action)
                ep["terminals"].append(done)
                ep["qpos"].append(info["prev_qpos"])   # the state `ob` was computed from
                ep["qvel"].append(info["prev_qvel"])
                if "prev_button_states" in info:
                    ep["button_states"].append(info["prev_button_states"])
                ob = next_ob
            if not env_name.startswith("scene") or scene_healthy(np.array(ep["qpos"])):
                break
            redrawn += 1
        episodes.append(ep)
    dtypes = {"observations": np.float32, "actions": np.float32, "terminals": bool, "qpos": np.float32,
              "qvel": np.float32, "button_states": np.int64}
    for path, eps in ((train_path, episodes[:args.episodes]), (val_path, episodes[args.episodes:])):
        arrays = {k: np.concatenate([np.asarray(e[k], dtype=dt) for e in eps]) for k, dt in dtypes.items() if k in eps[0]}
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)                  # an interrupted run leaves no half-written dataset behind
    print(f"wrote {train_path} ({args.episodes} episodes) and {val_path.name} ({n_val}); "
          f"{redrawn} unhealthy scene episodes redrawn")


# ----------------------------------------------------------------------------- agents

def fql_linear(a, b, scale=1.0):
    """A Dense layer as FQL initialises it: variance_scaling(scale, 'fan_avg', 'uniform') kernel,
    i.e. Xavier-uniform with gain sqrt(scale), and a zero bias."""
    layer = nn.Linear(a, b)
    nn.init.xavier_uniform_(layer.weight, gain=math.sqrt(scale))
    nn.init.zeros_(layer.bias)
    return layer


def mlp(sizes, layer_norm=False, final_scale=1.0):
    """FQL's MLP: per hidden layer Dense -> GELU (tanh approximation, flax's default) -> LayerNorm
    (if layer_norm); a plain Dense at the end, initialised at final_scale (the actor uses 0.01)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(fql_linear(a, b, final_scale if last else 1.0))
        if not last:
            layers.append(nn.GELU(approximate="tanh"))
            layers += [nn.LayerNorm(b)] if layer_norm else []
    return nn.Sequential(*layers)


class TokenInterface(nn.Module):
    """Observation chunks (and the action, if act_dim) as tokens: one Linear map per token into d_model."""

    def __init__(self, obs_dim, act_dim, d_model, k, in_scale):
        super().__init__()
        self.k, self.chunk = k, math.ceil(obs_dim / k)
        self.pad = self.k * self.chunk - obs_dim
        self.w_obs = nn.Parameter(torch.randn(k, self.chunk, d_model) / math.sqrt(self.chunk))   # unit-RMS tokens
        self.b_obs = nn.Parameter(torch.zeros(k, d_model))       # doubles as a learned token-position code
        self.act = nn.Linear(act_dim, d_model) if act_dim else None
        self.register_buffer("in_scale", torch.tensor(float(in_scale)))

    def forward(self, obs, act=None):
        x = F.pad(obs, (0, self.pad)).view(len(obs), self.k, self.chunk)
        tokens = torch.einsum("bkc,kcd->bkd", x, self.w_obs) + self.b_obs
        if act is not None:
            tokens = torch.cat([tokens, self.act(act).unsqueeze(1)], 1)
        return tokens * self.in_scale


class SliceIQL(nn.Module):
    """IQL networks sharing one frozen trunk (or none): V, twin Q and the policy are heads on it.

    The critic (V and twin Q) and the actor each have their own token interface, as IQL keeps its
    networks separate: a shared interface let the critic's gradients move the policy's inputs
    faster than the advantage-weighted actor loss could follow (see results/ogbench/README.md)."""

    def __init__(self, body, info, obs_dim, act_dim, k, hidden, target="separate"):
        super().__init__()
        d = info["d_model"]
        self.body, self.info, self.k, self.shared_target = body, info, k, target == "shared"
        self.critic_in = TokenInterface(obs_dim, act_dim, d, k, info["input_scale"])
        self.actor_in = TokenInterface(obs_dim, None, d, k, info["input_scale"])
        self.v = mlp([k * d, hidden, hidden, 1], layer_norm=True)
        self.q = nn.ModuleList([mlp([(k + 1) * d, hidden, hidden, 1], layer_norm=True) for _ in range(2)])
        self.pi = mlp([k * d, hidden, hidden, act_dim], final_scale=0.01)
        # Target critic: its own interface and Q heads, moved by Polyak averaging; the trunk is frozen anyway.
        # --target shared: only the Q heads are averaged and they read the online critic's pass, which
        # saves one pass of the slice per step (the target interface is then the online one).
        self.target_critic_in = None if self.shared_target else copy.deepcopy(self.critic_in)
        self.target_q = copy.deepcopy(self.q)
        for p in self.target_q.parameters() if self.shared_target else \
                list(self.target_critic_in.parameters()) + list(self.target_q.parameters()):
            p.requires_grad_(False)

    def input_scale(self):
        return float(self.info["input_scale"])

    def trunk(self, interface, obs, act=None):
        h = interface(obs, act)
        if self.body is not None:
            h = M.run_body(self.body, h)
        return M.rms_norm(h).flatten(1)       # (B, tokens * d): obs tokens first, the action token last

    def forward(self, obs, act, with_trunk=False):
        """V(s) and (Q1, Q2)(s, a) from one pass over [o_1 .. o_k, a]; the policy mean from [o_1 .. o_k].
        with_trunk: also return that pass's states (what a shared target critic reads)."""
        h = self.trunk(self.critic_in, obs, act)
        v = self.v(h[:, :self.k * self.info["d_model"]]).squeeze(-1)
        out = (v, [q(h).squeeze(-1) for q in self.q], self.policy(obs))
        return out + (h,) if with_trunk else out

    def value(self, obs):
        return self.v(self.trunk(self.critic_in, obs)).squeeze(-1)

    def target(self, obs, act, trunk=None):
        """min of the target twin Q. Shared target: on `trunk`, the online critic pass's states."""
        h = trunk if self.shared_target else self.trunk(self.target_critic_in, obs, act)
        return torch.min(*[q(h).squeeze(-1) for q in self.target_q])

    def policy(self, obs):
        return self.pi(self.trunk(self.actor_in, obs))

    def target_pairs(self):
        if self.shared_target:
            return list(zip(self.q.parameters(), self.target_q.parameters()))
        return list(zip(list(self.critic_in.parameters()) + list(self.q.parameters()),
                        list(self.target_critic_in.parameters()) + list(self.target_q.parameters())))


class MLPIQL(nn.Module):
    """The standard OGBench/FQL IQL networks: separate MLPs, LayerNorm on V and Q, no body."""

    def __init__(self, obs_dim, act_dim, hidden=512, depth=4):
        super().__init__()
        self.body, self.info = None, {"substrate": "mlp", "layers": None, "d_model": None, "input_scale": None}
        sizes = [hidden] * depth
        self.v = mlp([obs_dim, *sizes, 1], layer_norm=True)
        self.q = nn.ModuleList([mlp([obs_dim + act_dim, *sizes, 1], layer_norm=True) for _ in range(2)])
        self.pi = mlp([obs_dim, *sizes, act_dim], final_scale=0.01)
        self.target_q = copy.deepcopy(self.q)
        for p in self.target_q.parameters():
            p.requires_grad_(False)

    def input_scale(self):
        return None   # no body: nothing is scaled

    def forward(self, obs, act):
        sa = torch.cat([obs, act], -1)
        return self.v(obs).squeeze(-1), [q(sa).squeeze(-1) for q in self.q], self.pi(obs)

    def value(self, obs):
        return self.v(obs).squeeze(-1)

    def target(self, obs, act):
        sa = torch.cat([obs, act], -1)
        return torch.min(*[q(sa).squeeze(-1) for q in self.target_q])

    def policy(self, obs):
        return self.pi(obs)

    def target_pairs(self):
        return list(zip(self.q.parameters(), self.target_q.parameters()))


TARGET = ("target",)   # the target critic's parameters: no gradient, but training moves them (Polyak)


def build(cfg, device, known_scale=None):
    """The agent a run config describes; net.info describes its body for results. known_scale: a
    trained checkpoint's input scale, used as it is (never recalibrated)."""
    torch.manual_seed(cfg["seed"])
    if cfg["substrate"] == "mlp":
        return MLPIQL(cfg["obs_dim"], cfg["act_dim"]).to(device)
    body, info = M.body_from_config(cfg, device, known_scale)
    M.compile_body(body, cfg)
    return SliceIQL(body, info, cfg["obs_dim"], cfg["act_dim"], cfg["obs_tokens"], cfg["hidden"],
                    cfg.get("target", "separate")).to(device)


def load_trained(path, device="auto"):
    """(net, checkpoint dict) with the trained weights in place."""
    state = load_checkpoint(path, ("ogbench",))
    net = build(state["config"], pick_device(device), known_scale=state["body"]["input_scale"])
    load_weights(net, state["model"], path, also=TARGET)
    return net, state


def iql_losses(net, batch, cfg):
    """Value (expectile), critic (TD) and actor (AWR) losses of one batch, as in OGBench/FQL IQL."""
    obs, act = batch["observations"], batch["actions"]
    if getattr(net, "shared_target", False):
        v, qs, mean, h = net(obs, act, with_trunk=True)
        with torch.no_grad():
            q_target = net.target(obs, act, trunk=h.detach())
    else:
        v, qs, mean = net(obs, act)
        with torch.no_grad():
            q_target = net.target(obs, act)
    with torch.no_grad():
        y = batch["rewards"] + cfg["discount"] * batch["masks"] * net.value(batch["next_observations"])
    diff = q_target - v
    weight = torch.where(diff > 0, cfg["expectile"], 1 - cfg["expectile"])
    value_loss = (weight * diff ** 2).mean()
    critic_loss = sum(((q - y) ** 2).mean() for q in qs)
    adv = (torch.min(*qs) - v).detach()
    w = torch.exp(adv * cfg["temperature"]).clamp(max=100.0)
    log_prob = -0.5 * ((mean - act) ** 2).sum(-1)          # unit std Gaussian, constants dropped
    actor_loss = -(w * log_prob).mean()
    logs = {"value_loss": value_loss.item(), "critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
            "v_mean": v.mean().item(), "adv_mean": adv.mean().item(), "bc_mse": ((mean - act) ** 2).mean().item()}
    return value_loss + critic_loss + actor_loss, logs


@torch.no_grad()
def polyak(net, tau):
    for p, tp in net.target_pairs():
        tp.mul_(1 - tau).add_(p.detach(), alpha=tau)


# ----------------------------------------------------------------------------- data on the device

def prepare(train, device):
    """Tensors for sampling, and the observation standardisation every condition uses."""
    mean = train["observations"].mean(0)
    std = np.maximum(train["observations"].std(0), 1e-2)   # constant dims (e.g. a fixed cube axis) stay finite
    norm = lambda x: torch.tensor((x - mean) / std, dtype=torch.float32, device=device)
    data = {"observations": norm(train["observations"]), "next_observations": norm(train["next_observations"])}
    for k in ("actions", "rewards", "masks"):
        data[k] = torch.tensor(train[k], dtype=torch.float32, device=device)
    succ = float((train["masks"] == 0).mean())
    stats = {"transitions": len(train["observations"]), "obs_dim": int(train["observations"].shape[1]),
             "act_dim": int(train["actions"].shape[1]), "reward_mean": float(train["rewards"].mean()),
             "task_success_fraction": succ}
    return data, mean.tolist(), std.tolist(), stats


def sample(data, batch_size, gen):
    idx = torch.randint(len(data["observations"]), (batch_size,), generator=gen).to(data["observations"].device)
    return {k: v[idx] for k, v in data.items()}


# ----------------------------------------------------------------------------- evaluation

# env name -> built envs. Building one costs 1-4 s of MJCF compilation and a seeded reset is exact,
# so envs are reused across evaluations; each holds ~170 MB (scene), hence --eval-batch.
_ENV_POOL = {}


def task_envs(env_name, n, success_timing="pre"):
    """success_timing: ogbench >= 1.2 scores success, reward and termination on the state before the
    action ('pre', its default); ogbench 1.1.0, behind FQL's published numbers, after it ('post')."""
    import gymnasium
    pool = _ENV_POOL.setdefault((env_name, success_timing), [])
    while len(pool) < n:
        pool.append(gymnasium.make(env_name, success_timing=success_timing))
    return pool[:n]


@torch.no_grad()
def success_rate(net, cfg, episodes, seed, device, max_steps=None, batch=None):
    """Run `episodes` task episodes, `batch` at a time in lockstep (default: all), with the policy mean
    as action (OGBench/FQL evaluate at temperature 0). The policy runs once per timestep per batch."""
    need_ogbench()
    _, env_name = split_name(cfg["env"])
    batch = min(batch or episodes, episodes)
    was_training = net.training
    net.eval()
    mean, std = np.array(cfg["obs_mean"], np.float32), np.array(cfg["obs_std"], np.float32)
    success, lengths = np.zeros(episodes, bool), np.zeros(episodes, int)
    # graded progress: the task reward is (subtasks at their goal) - (number of subtasks), 0 at success
    best, final = np.full(episodes, -np.inf), np.zeros(episodes)
    for start in range(0, episodes, batch):
        ids = np.arange(start, min(start + batch, episodes))
        envs = task_envs(env_name, len(ids), cfg.get("success_timing", "pre"))
        obs = np.stack([env.reset(seed=seed + int(i))[0] for env, i in zip(envs, ids)]).astype(np.float32)
        alive = np.ones(len(ids), bool)
        t = 0
        while alive.any() and (max_steps is None or t < max_steps):
            live = np.flatnonzero(alive)
            x = torch.tensor((obs[live] - mean) / std, device=device)
            actions = net.policy(x).clamp(-1, 1).cpu().numpy()
            for a, j in zip(actions, live):
                ob, r, terminated, truncated, info = envs[j].step(a)
                obs[j], lengths[ids[j]] = ob, lengths[ids[j]] + 1
                best[ids[j]], final[ids[j]] = max(best[ids[j]], r), r
                success[ids[j]] = bool(info["success"])
                alive[j] = not (terminated or truncated)
            t += 1
    net.train(was_training)
    return {"success_rate": float(success.mean()), "success_timing": cfg.get("success_timing", "pre"),
            "successes": success.astype(int).tolist(),
            "lengths": lengths.tolist(), "episode_seed_base": seed,
            "best_reward_mean": float(best.mean()), "final_reward_mean": float(final.mean()),
            "best_rewards": best.tolist(), "final_rewards": final.tolist()}


PAIRED = "successes"   # key of the per-item 0/1 outcomes in a measurement's detail (McNemar), if any
METRIC, HIGHER_IS_BETTER = "success_rate", True


def load_run(ckpt_path, device="auto", dtype=None):
    net, state = load_trained(ckpt_path, device)
    return net, state["config"], state


def evaluate_run(ckpt_path, opts):
    """Success rate on fresh episode seeds (stream 2), never used in training."""
    t0 = time.time()
    result = evaluate_checkpoint(ckpt_path, opts.episodes or 50, max_steps=getattr(opts, "max_ep_len", None),
                                 device=opts.device)
    return {**result, **environment(pick_device(opts.device)), "wall_time_s": time.time() - t0}


def summary_line(result):
    return json.dumps({k: result[k] for k in ("success_rate", "episodes")})


def ablation_target(ckpt_path, opts):
    """Success rate of the IQL policy; episode i always resets with the same seed."""
    net, state = load_trained(ckpt_path, opts.device)
    cfg = state["config"]
    device = next(net.parameters()).device
    seed = episode_seed_base(cfg["seed"], 2)
    episodes, max_ep_len = opts.episodes or 50, opts.max_ep_len

    def measure():
        result = success_rate(net, cfg, episodes, seed, device, max_ep_len)
        return result["success_rate"], {k: result[k] for k in ("successes", "best_reward_mean", "best_rewards")}

    meta = {"metric": METRIC, "higher_is_better": HIGHER_IS_BETTER, "episodes": episodes, "max_ep_len": max_ep_len,
            "episode_seed_base": seed, "slice": net.info["layers"], "env": cfg["env"], "checkpoint_step": state["step"]}
    return net.body, measure, cfg, meta, device


def run_values(r, which="best"):
    """IQL runs keep no best checkpoint: the last three evaluations' mean success and the last one."""
    if not r["history"]:
        return None
    return "success", r["final"], {"last_three_mean": r["last_three_mean"], "final": r["final"]["eval"]["success_rate"]}


def head_extra(intact_detail, detail):
    """Each head's per-episode outcomes, and the change in best reward."""
    return {**detail, "best_reward_delta": detail["best_reward_mean"] - intact_detail["best_reward_mean"]}


def evaluate_checkpoint(ckpt_path, episodes=50, seed=None, max_steps=None, device="auto"):
    """Rebuild a checkpoint's agent and measure it; seed None = the run's fresh stream (never used in training)."""
    net, state = load_trained(ckpt_path, device)
    cfg = state["config"]
    seed = episode_seed_base(cfg["seed"], 2) if seed is None else seed
    result = success_rate(net, cfg, episodes, seed, next(net.parameters()).device, max_steps)
    return {"config": cfg, "seed": cfg["seed"], "env": cfg["env"], "slice": net.info["layers"], "body": net.info,
            "checkpoint": portable(ckpt_path), "checkpoint_step": state["step"], "metric": "success_rate",
            "episodes": episodes, **result}


def last_three(history):
    """The OGBench-paper summary: mean success of a run's last three evaluations."""
    rates = [h["eval"]["success_rate"] for h in history[-3:]]
    return float(np.mean(rates)) if rates else None


# ----------------------------------------------------------------------------- training

def get_parser():
    p = argparse.ArgumentParser(prog="python train.py --task ogbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="ogbench", choices=("ogbench",), help="always ogbench (lets train.py pass its flags on)")
    p.add_argument("--env", default=DEFAULT_ENV, help=f"OGBench single-task dataset name (default {DEFAULT_ENV})")
    p.add_argument("--dataset-dir", default=DEFAULT_DATA_DIR, help=f"where the .npz files are, or go (default {DEFAULT_DATA_DIR})")
    M.add_body_args(p, layers="8", substrates=SUBSTRATES, learn=False)
    p.add_argument("--obs-tokens", type=int, default=4, help="chunks the observation is cut into, one token each (default 4)")
    p.add_argument("--hidden", type=int, default=256, help="width of the two hidden layers of each V/Q/policy head (default 256)")
    p.add_argument("--steps", type=int, default=100_000, help="gradient steps (default 100000)")
    p.add_argument("--batch-size", type=int, default=256, help="transitions per step (default 256)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--discount", type=float, default=0.99, help="discount (default 0.99)")
    p.add_argument("--expectile", type=float, default=0.9, help="IQL expectile for V (default 0.9)")
    p.add_argument("--temperature", type=float, default=10.0, help="AWR inverse temperature alpha; weights exp(alpha * adv), capped at 100 (default 10)")
    p.add_argument("--tau", type=float, default=0.005, help="target critic Polyak rate (default 0.005)")
    p.add_argument("--target", default="separate", choices=("separate", "shared"),
                   help="target critic of the slice agent: separate = its own Polyak-averaged interface and Q heads "
                        "with its own pass of the slice (the reference); shared = only the Q heads are averaged and "
                        "read the online critic's pass (one slice pass fewer per step) (default separate)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds init, batches and evaluation episodes (default 0)")
    p.add_argument("--eval-every", type=int, default=10_000, help="evaluate and checkpoint every N steps (default 10000)")
    p.add_argument("--fql-budget", action="store_true",
                   help="FQL's reference budget instead of the paper's: 1,000,000 steps, evaluation every 100,000 "
                        "(overrides --steps and --eval-every)")
    p.add_argument("--success-timing", default="pre", choices=("pre", "post"),
                   help="when the env scores success: 'pre' = on the state before the action (ogbench >= 1.2, default), "
                        "'post' = after it (ogbench 1.1.0, as behind FQL's published numbers)")
    p.add_argument("--eval-episodes", type=int, default=50, help="episodes per evaluation (default 50)")
    p.add_argument("--eval-batch", type=int, default=None, help="episodes stepped together; each live env holds ~170 MB of RAM "
                                                                  "(default: all --eval-episodes at once)")
    p.add_argument("--out", default=None, help="run folder (default runs/ogbench-{env}__{condition}__{seed}__{hash of the settings})")
    add_run_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="through train.py --task ogbench: print the bytes to download and the peak weight memory, then exit")
    return p


def main(argv=None):
    args = parse_run_args(get_parser(), argv)
    if args.dry_run:
        raise UserError("--dry-run is train.py's: python train.py --task ogbench --dry-run [flags]")
    if M.parse_input_scale(args.input_scale) == "learn":
        raise UserError("--input-scale learn is for the token tasks; give 'auto' or a number here")
    if args.fql_budget:
        args.steps, args.eval_every = 1_000_000, 100_000
    cfg = {**vars(args), "out": portable(args.out)}   # as recorded in JSON: no machine's absolute path
    if args.obs_tokens < 1 or args.hidden < 1 or args.eval_episodes < 1 or args.steps < 1 or args.eval_every < 1:
        raise UserError("need --obs-tokens, --hidden, --eval-episodes, --steps and --eval-every >= 1")
    if args.eval_batch is not None and args.eval_batch < 1:
        raise UserError("--eval-batch must be >= 1")
    if args.substrate == "mlp" and args.target != "separate":
        raise UserError("--target shared is for the slice agent (the MLP agent has no shared trunk)")
    if args.substrate == "mlp" and args.init != "pretrained":
        raise UserError(f"--init {args.init} applies to --substrate gemma only")
    need_at_least(args, 1, "batch_size")
    need_positive_float(args, "lr", "temperature")
    if not 0 < args.discount <= 1 or not 0 < args.expectile < 1 or not 0 < args.tau <= 1:
        raise UserError("need 0 < --discount <= 1, 0 < --expectile < 1 and 0 < --tau <= 1")
    split_name(args.env)
    device = pick_device(args.device)
    condition = condition_name(cfg)
    out = Path(args.out or run_folder(f"ogbench-{args.env}", cfg))
    parser = get_parser()
    state = open_run(out, cfg, IDENTITY, args.resume, {k: parser.get_default(k) for k in IDENTITY})

    env, train_set, _ = load(args.env, args.dataset_dir)
    env.close()
    data, obs_mean, obs_std, data_stats = prepare(train_set, device)
    data_stats["sha256"] = data_file_sha256(args.env, args.dataset_dir)
    if state is not None and state.get("data_sha256") not in (None, data_stats["sha256"]):
        raise UserError(f"--resume: {out} was trained on another {args.env} file (sha256 {state['data_sha256'][:12]}..., "
                        f"now {data_stats['sha256'][:12]}...); a run continues only on the data it started on")
    cfg.update(obs_mean=obs_mean, obs_std=obs_std, obs_dim=data_stats["obs_dim"], act_dim=data_stats["act_dim"])
    out.mkdir(parents=True, exist_ok=True)
    net = build(cfg, device)
    refuse_changed_scale(state, net.info["input_scale"], out, args.input_scale)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    data_gen = torch.Generator().manual_seed(args.seed)
    step, history, _, wall_before = resume_training(state, net, opt, data_gen)
    if state is not None:
        print(f"resuming {out} at step {step}")
    # trainable: what the optimiser moves; target: its Polyak copy; frozen: the body's weights
    counts = {"trainable_params": sum(p.numel() for p in params),
              "target_params": sum(p.numel() for n, p in net.named_parameters() if n.startswith("target")),
              "frozen_params": sum(p.numel() for p in net.body.parameters() if not p.requires_grad) if net.body is not None else 0}
    print(f"ogbench {args.env} | {condition} | trainable {counts['trainable_params']:,} | frozen {counts['frozen_params']:,} | "
          f"{data_stats['transitions']:,} transitions | {device}")
    eval_seed = episode_seed_base(args.seed, 1)
    env = environment(device)   # git commit of the code that starts the run
    t0 = time.time()

    def checkpoint(name):
        save_atomic({**training_state(cfg, net.info, step, M.trainable_state(net, TARGET), opt, data_gen, history, None,
                                      wall_before + time.time() - t0, train_since_eval=[dict(sums), n]),
                     "data_sha256": data_stats["sha256"]}, out / name)

    def write_results():
        save_atomic({**results_head(cfg, net.info, condition, counts, env, step, wall_before + time.time() - t0),
                     "model": None if args.substrate == "mlp" else args.model, **M.end_regime(net),
                     "env": args.env, "dataset_dir": portable(args.dataset_dir),
                     "dataset_stats": data_stats, "metric": "success_rate",
                     "eval": {"episodes": args.eval_episodes, "batch": args.eval_batch or args.eval_episodes,
                              "episode_seed_base": eval_seed},
                     "history": history, "final": history[-1] if history else None,
                     "last_three_mean": last_three(history),
                     "last_three_note": "mean success rate of the last three evaluations (the OGBench/paper summary)"},
                    out / "results.json")

    bar = tqdm(total=args.steps, initial=step, desc=f"iql {condition}", dynamic_ncols=True)
    # training losses summed since the last evaluation (a wall-clock checkpoint between evaluations keeps them)
    kept = state.get("train_since_eval", ({}, 0)) if state is not None else ({}, 0)
    sums, n = defaultdict(float, kept[0]), kept[1]
    writer = scalar_writer(out, step)
    saved_at = time.time()
    stop_at_step_boundary()
    while step < args.steps:
        if stop_requested():
            checkpoint("last.pt")
            write_results()
            raise stopped(out, step)
        loss, logs = iql_losses(net, sample(data, args.batch_size, data_gen), cfg)
        global_loss(loss, 1, step, out)   # one process: checks the loss is finite before the update
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        polyak(net, args.tau)
        step += 1
        for k, v in logs.items():
            sums[k] += v
        n += 1
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(critic=f"{logs['critic_loss']:.3f}", bc_mse=f"{logs['bc_mse']:.3f}")
        if step % args.log_every == 0 or step == 1:
            log_scalars(writer, {**logs, "lr": opt.param_groups[0]["lr"]}, step, "train")
        if step % args.eval_every == 0 or step == args.steps:
            t_eval = time.time()
            result = success_rate(net, cfg, args.eval_episodes, eval_seed, device, batch=args.eval_batch)
            result["wall_s"] = time.time() - t_eval
            history.append({"step": step, "train": {k: v / n for k, v in sums.items()}, "eval": result,
                            "wall_time_s": wall_before + time.time() - t0})
            sums, n = defaultdict(float), 0
            checkpoint("last.pt")
            write_results()
            saved_at = time.time()
            log_scalars(writer, {"success_rate": result["success_rate"]}, step, "eval")
            bar.write(f"step {step}: success {result['success_rate']:.3f} over {args.eval_episodes} episodes "
                      f"({result['wall_s']:.0f} s)")
            bar.unpause()           # the rate shown counts training steps, not evaluation time
        elif checkpoint_due(saved_at, args.checkpoint_minutes):
            checkpoint("last.pt")
            saved_at = time.time()
            bar.unpause()
    bar.close()
    write_results()
    writer.close()
    print(f"done: last-three mean success {last_three(history):.3f}; {out}/results.json")


def read_results(run):
    """(path, results.json) of an OGBench training run, given its folder or the file; damage is one line."""
    f = Path(run) / "results.json" if Path(run).is_dir() else Path(run)
    if not f.is_file():
        raise UserError(f"{run}: no results.json")
    r = read_json(f)
    if not isinstance(r, dict) or "history" not in r or r.get("metric") != "success_rate":
        raise UserError(f"{f}: not an OGBench training run's results.json")
    return f, r


def compare(argv=None):
    """Success of each run per evaluation with its exact 95% interval; then each run against the first
    (the reference, e.g. the pretrained slice), pooling the episodes of the last --last evaluations
    both share: the same episode seeds in both runs, so each episode is a pair (exact McNemar test)."""
    p = argparse.ArgumentParser(prog="python -m tasks.ogbench compare", description=compare.__doc__)
    p.add_argument("runs", nargs="+", help="run folders (or their results.json); the first is the reference")
    p.add_argument("--last", type=int, default=3, help="evaluations pooled for the paired test (default 3)")
    p.add_argument("--out", help="write the comparison here as JSON (default: print it)")
    args = p.parse_args(argv)
    if args.last < 1:
        raise UserError("--last must be at least 1")
    results = {}
    for run in args.runs:
        f, r = read_results(run)
        results[f.parent.name] = (f, r)      # the run folder names the run (conditions can repeat)
    out = {"runs": {}, "versus_reference": {}, "pooled_evaluations": args.last}
    for name, (f, r) in results.items():
        evals = []
        for h in r["history"]:
            k, n = sum(h["eval"]["successes"]), len(h["eval"]["successes"])
            evals.append({"step": h["step"], "success_rate": k / n, "episodes": n, "ci95": list(stats.clopper_pearson(k, n))})
        out["runs"][name] = {"results": portable(f), "steps_done": r["steps_done"], "dataset_sha256": r["dataset_stats"].get("sha256"),
                             "episode_seed_base": r["eval"]["episode_seed_base"], "evaluations": evals}
    ref_name, (_, ref) = next(iter(results.items()))
    for name, (_, r) in list(results.items())[1:]:
        if r["eval"]["episode_seed_base"] != ref["eval"]["episode_seed_base"]:
            raise UserError(f"{name} and {ref_name} were evaluated on different episode seeds: their episodes do not pair")
        if r["dataset_stats"].get("sha256") != ref["dataset_stats"].get("sha256"):
            raise UserError(f"{name} and {ref_name} were trained on different data files: compare runs on one file only")
        by_step = {h["step"]: h["eval"]["successes"] for h in r["history"]}
        shared = [h["step"] for h in ref["history"] if h["step"] in by_step][-args.last:]
        ref_steps = {h["step"]: h["eval"]["successes"] for h in ref["history"]}
        a = [x for s in shared for x in ref_steps[s]]
        b = [x for s in shared for x in by_step[s]]
        if len(a) != len(b) or not a:
            raise UserError(f"{name} and {ref_name} share no evaluation with the same number of episodes")
        ref_only, other_only, p_value = stats.mcnemar_exact(a, b)
        out["versus_reference"][name] = {
            "reference": ref_name, "steps": shared, "episodes": len(a), "reference_success": sum(a) / len(a),
            "success": sum(b) / len(b), "difference": (sum(a) - sum(b)) / len(a), "reference_only": ref_only,
            "other_only": other_only, "mcnemar_exact_p": p_value}
    write_or_print(out, args.out)
    return out


# ----------------------------------------------------------------------------- over training seeds

SEEDS_NOTE = {
    "interval": "95% Student-t interval over seeds: mean +- t(0.975, n-1) * sd / sqrt(n) (t = 4.30 at n = 3)",
    "test": "paired t-test over seeds on each seed's last-evaluations mean, paired by training seed; "
            "with n = 3 (2 degrees of freedom) it detects only large, consistent differences",
    "between_runs": "exact McNemar on the pooled episodes of the last evaluations, per seed and pooled over seeds: it "
                    "treats each run's checkpoints as fixed policies and the episodes as the random part, so it "
                    "compares these runs, not the conditions (another training seed is not covered)",
    "verdict": "per condition: '<reference> ahead' if the t interval of reference - condition lies above 0, "
               "'<condition> ahead' if below, else 'not separated' (not the same as shown equal); 'one seed: no test'",
}


def episodes_note(repeat):
    """What repeated evaluation start states mean for the tests (repeat: whether they repeat)."""
    if not repeat:
        return "evaluation start states differ between evaluations of a run"
    return ("every evaluation of a run resets its episodes with the same seeds (base + i), so the pooled "
            "last evaluations hold each start state several times: the McNemar pairs are not independent "
            "(its P is too small where start states differ in difficulty), and the last-evaluations mean of "
            "a seed averages three policies on one set of start states. Runs of one training seed share "
            "those start states, runs of different seeds do not: the test over seeds pairs by training "
            "seed and treats seeds as independent")


def seed_rows(runs, last, up_to):
    """runs: {folder name: results.json dict}. Per run the steps of its last `last` evaluations at or
    before up_to (default: the latest step every run has reached), the success at each and their mean."""
    reached = min(max((h["step"] for h in r["history"]), default=0) for r in runs.values())
    up_to = reached if up_to is None else up_to
    rows = {}
    for name, r in runs.items():
        evals = [h for h in r["history"] if h["step"] <= up_to][-last:]
        if len(evals) < last:
            raise UserError(f"{name} has {len(evals)} evaluations at or before step {up_to:,}; --last {last} needs more")
        successes = [h["eval"]["successes"] for h in evals]
        rows[name] = {"condition": name.rpartition("__")[0] or name, "seed": r["seed"], "steps": [h["step"] for h in evals],
                      "success": [sum(s) / len(s) for s in successes], "episodes": [len(s) for s in successes],
                      "outcomes": [x for s in successes for x in s], "steps_done": r["steps_done"],
                      "steps_planned": r["config"]["steps"], "finished": r["steps_done"] >= r["config"]["steps"],
                      "wall_time_s": r["wall_time_s"], "git_commit": r.get("git_commit"),
                      "episode_seed_base": r["eval"]["episode_seed_base"],
                      "evaluation_seed_bases": sorted({h["eval"].get("episode_seed_base", r["eval"]["episode_seed_base"])
                                                       for h in r["history"]})}
        rows[name]["mean"] = float(np.mean(rows[name]["success"]))
    steps = {tuple(row["steps"]) for row in rows.values()}
    if len(steps) > 1:
        raise UserError(f"the runs' last {last} evaluations at or before step {up_to:,} are at different steps "
                        f"({sorted(steps)}); give --up-to a step every run has evaluated")
    return rows, up_to


def seeds_summary(runs, reference=None, last=3, up_to=None):
    """The three-seed table: per seed the last evaluations, per condition the mean over seeds with a t
    interval, per seed pretrained - control with a paired t over seeds, the McNemar between runs."""
    shas = {r["dataset_stats"].get("sha256") for r in runs.values()}
    if len(shas) > 1 or None in shas:
        raise UserError("the runs were not all trained on one recorded data file (dataset_stats.sha256 differs or is "
                        "missing): summarise runs of one file only")
    rows, up_to = seed_rows(runs, last, up_to)
    conditions = {}
    for name, row in rows.items():
        by_seed = conditions.setdefault(row["condition"], {})
        if row["seed"] in by_seed:
            raise UserError(f"two runs of {row['condition']} with seed {row['seed']}: {by_seed[row['seed']]} and {name}")
        by_seed[row["seed"]] = name
    reference = reference or next(iter(conditions))
    if reference not in conditions:
        raise UserError(f"--reference {reference!r} is not among the conditions ({', '.join(conditions)}); a condition "
                        f"is a run folder's name before its last '__'")
    for cond, by_seed in conditions.items():
        bases = {rows[n]["episode_seed_base"] for n in by_seed.values()}
        if len(bases) != len(by_seed):
            raise UserError(f"{cond}: two seeds were evaluated on the same episodes; they are not independent")
        dtypes = {str(runs[n]["config"].get("dtype")) for n in by_seed.values()}
        if len(dtypes) > 1:
            raise UserError(f"{cond}: its seeds computed in different dtypes ({', '.join(sorted(dtypes))}); rerun them in one")
    for seed in {row["seed"] for row in rows.values()}:
        bases = {row["episode_seed_base"] for row in rows.values() if row["seed"] == seed}
        if len(bases) > 1:
            raise UserError(f"the runs of seed {seed} were evaluated on different episodes: they do not pair")
    out = {"pooled_evaluations": last, "up_to_step": up_to, "steps": rows[next(iter(rows))]["steps"],
           "dataset_sha256": shas.pop(), "reference": reference, "notes": SEEDS_NOTE, "runs": {}, "conditions": {},
           "differences": {}, "between_runs": {}}
    repeat = all(len(row["evaluation_seed_bases"]) == 1 for row in rows.values())
    out["episodes"] = {"repeat_across_evaluations": repeat,
                       "episode_seed_base_per_seed": {str(row["seed"]): row["episode_seed_base"] for row in rows.values()},
                       "note": episodes_note(repeat)}
    for name, row in rows.items():
        out["runs"][name] = {k: v for k, v in row.items() if k != "outcomes"}
    means = {c: {s: rows[n]["mean"] for s, n in by_seed.items()} for c, by_seed in conditions.items()}
    for cond, by_seed in conditions.items():
        commits = {rows[n]["git_commit"] for n in by_seed.values()}
        out["conditions"][cond] = {"seeds": sorted(by_seed), "runs": [by_seed[s] for s in sorted(by_seed)],
                                   **stats.t_interval([means[cond][s] for s in sorted(by_seed)]),
                                   "one_code_version": len(commits) == 1, "git_commits": sorted(c or "unknown" for c in commits),
                                   "all_finished": all(rows[n]["finished"] for n in by_seed.values()),
                                   "wall_time_s": sum(rows[n]["wall_time_s"] for n in by_seed.values())}
    for cond in conditions:
        if cond == reference:
            continue
        d = stats.paired_over_seeds(means[reference], means[cond], (reference, cond))
        out["differences"][cond] = {"reference": reference, **d}
        per_seed, a_all, b_all = {}, [], []
        for s in d["seeds"]:
            a, b = rows[conditions[reference][s]]["outcomes"], rows[conditions[cond][s]]["outcomes"]
            ref_only, other_only, p = stats.mcnemar_exact(a, b)
            per_seed[str(s)] = {"episodes": len(a), "reference_only": ref_only, "other_only": other_only, "mcnemar_exact_p": p}
            a_all, b_all = a_all + a, b_all + b
        ref_only, other_only, p = stats.mcnemar_exact(a_all, b_all) if a_all else (0, 0, None)
        out["between_runs"][cond] = {"reference": reference, "per_seed": per_seed, "pooled": {
            "episodes": len(a_all), "reference_only": ref_only, "other_only": other_only, "mcnemar_exact_p": p}}
    return out


def seeds(argv=None):
    """Several training seeds per condition: per seed the success of the last --last evaluations (each
    and their mean), per condition the mean over seeds with a 95% t interval, per seed the difference
    reference - condition with a paired t-test over seeds, and the exact McNemar on pooled episodes,
    labelled as a test between runs. A condition is a run folder's name before its last '__'
    (L8_pretrained__0 -> L8_pretrained); every run must have read one data file."""
    p = argparse.ArgumentParser(prog="python -m tasks.ogbench seeds", description=seeds.__doc__)
    p.add_argument("runs", nargs="+", help="run folders (or their results.json), e.g. RUNS/*__[012]")
    p.add_argument("--reference", default=None, help="condition the others are compared with (default: the first run's)")
    p.add_argument("--last", type=int, default=3, help="evaluations per run averaged (default 3)")
    p.add_argument("--up-to", type=int, default=None,
                   help="use the evaluations at or before this step (default: the latest step every run has reached)")
    p.add_argument("--out", help="write the summary here as JSON (default: print it)")
    args = p.parse_args(argv)
    if args.last < 1:
        raise UserError("--last must be at least 1")
    runs = {}
    for run in args.runs:
        f, r = read_results(run)
        if f.parent.name in runs:
            raise UserError(f"two runs named {f.parent.name}: the folder name identifies a run")
        runs[f.parent.name] = r
    out = seeds_summary(runs, args.reference, args.last, args.up_to)
    write_or_print(out, args.out)
    return out


def success_counts(terminals, masks):
    """Transitions and episodes at the task's goal (mask 0); an episode ends where terminals is 1."""
    hit = np.asarray(masks) == 0
    episodes = [e for e in np.split(hit, np.flatnonzero(terminals) + 1) if len(e)]
    first = [int(np.argmax(e)) for e in episodes if e.any()]
    return {"transitions": int(len(hit)), "episodes": len(episodes), "success_transitions": int(hit.sum()),
            "success_fraction": float(hit.mean()), "episodes_reaching_success": len(first),
            "median_first_success_step": float(np.median(first)) if first else None}


def check(argv=None):
    """Does each task's success state occur in the data? Loads the single-task datasets exactly as
    training does (ogbench relabels mask 0 where the task's goal holds) and counts the transitions and
    the episodes that reach it: a task whose goal never occurs cannot be learnt from rewards."""
    p = argparse.ArgumentParser(prog="python -m tasks.ogbench check", description=check.__doc__)
    p.add_argument("envs", nargs="+", help="single-task names, e.g. cube-double-play-singletask-task1-v0")
    p.add_argument("--dataset-dir", default=DEFAULT_DATA_DIR, help=f"folder with the .npz files (default {DEFAULT_DATA_DIR})")
    p.add_argument("--out", help="also write the counts here as JSON (they are always printed)")
    args = p.parse_args(argv)
    out = {}
    for name in args.envs:
        _, train, val = load(name, args.dataset_dir)
        row = {"dataset_sha256": data_file_sha256(name, args.dataset_dir)}
        for split, d in (("train", train), ("val", val)):
            row[split] = success_counts(d["terminals"], d["masks"])
        out[name] = row
    if args.out:
        save_atomic(out, Path(args.out))
        print(f"wrote {args.out}")
    print(json.dumps(out, indent=1))
    return out


def cli(argv):
    subcommands("python -m tasks.ogbench", __doc__, {
        "train": (main, "train an IQL agent (the same as train.py --task ogbench)"),
        "generate": (generate, "write play datasets with the shipped oracles into --dataset-dir"),
        "compare": (compare, "success per evaluation and paired McNemar tests of runs against the first"),
        "check": (check, "does each task's success state occur in the data?"),
        "seeds": (seeds, "last three evaluations of runs at several seeds: means, t intervals, tests over seeds")}, argv)


if __name__ == "__main__":
    run_main(lambda: cli(sys.argv[1:]))
