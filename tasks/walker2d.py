"""
Decision Transformer on Walker2d whose GPT-2 body is replaced by a frozen Gemma slice.

    python -m tasks.walker2d record --id local/walker2d-standin-v0 --episodes 20     # stand-in data, offline
    python -m tasks.walker2d train --dataset local/walker2d-standin-v0 --layers 6-10
    python -m tasks.walker2d train --dataset mujoco/walker2d/medium-v0                 # Minari download (internet)
    python -m tasks.walker2d train --d4rl-hdf5 walker2d_medium-v2.hdf5                 # a D4RL file you have
    python -m tasks.walker2d compare RUN_DIR...                                        # fresh scores, paired by episode
    python -m tasks.walker2d pick-lr CHECK_RUN...                                      # a body's rate from a check
    python -m tasks.walker2d seeds RUN_DIR... --reference L8_pretrained                # over seeds, t intervals

Tokens, as in Chen et al. 2021: for each timestep t of a context of K steps, three tokens
(return-to-go R_t, state s_t, action a_t), each a Linear map into d_model plus a learned timestep
embedding, then LayerNorm and dropout, times the body's input scale. The frozen body runs over the
3K tokens (causal); a weightless RMSNorm, Linear and tanh at each state token predict a_t. Only the
embeddings, the LayerNorm and the action head train. Scores are D4RL-normalised returns in
Walker2d-v5 for each target return. Writes OUT/last.pt, OUT/best.pt and OUT/results.json.
"""
import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

import model as M
import stats
from runs import (UserError, all_gather, barrier, condition_name, data_parallel, environment, episode_seed_base,
                  finish_distributed, global_loss, host_reachable, load_checkpoint, load_weights, need_at_least,
                  need_package, need_positive_float, open_run, pick_device, portable, refuse_changed_scale,
                  results_head, resume_training, run_folder, run_main, save_atomic, training_state, warm_up, wrap_ddp, write_or_print,
                  add_run_args, checkpoint_due, log_scalars, parse_run_args, scalar_writer, subcommands)
from runs import LADDER, ladder_index, read_json, seed_arg, stop_at_step_boundary, stop_requested, stopped

ENV_ID = "Walker2d-v5"          # Minari's mujoco/walker2d datasets were collected in v5
D4RL_ENV_ID = "Walker2d-v4"     # D4RL used the pre-v5 MuJoCo model (v5 changed the foot friction)
STATE_DIM, ACT_DIM = 17, 6
MAX_TIMESTEP = 1000          # rows of the timestep table; Walker2d episodes end at 1000 steps
RETURN_SCALE = 1000.0        # DT gym setting: returns-to-go enter the model divided by this
REF_MIN_RETURN, REF_MAX_RETURN = 1.629008, 4592.3   # D4RL walker2d random / expert reference returns
DEFAULT_DATASET = "mujoco/walker2d/medium-v0"
STANDIN_TAG = "borrowed-geometry stand-in"
NORMALISATION = {"ref_min_return": REF_MIN_RETURN, "ref_max_return": REF_MAX_RETURN,
                 "formula": "100 * (return - ref_min_return) / (ref_max_return - ref_min_return)",
                 "note": "D4RL walker2d reference returns; Minari data is not the D4RL file, and the simulator "
                         "(eval env: Walker2d-v4 for D4RL files, v5 for Minari data) is not D4RL's v2"}
# Flags that define what a checkpoint is; a resumed run must agree on all of them.
IDENTITY = ("model", "layers", "substrate", "init", "seed", "input_scale", "context", "dataset", "d4rl_hdf5",
            "lr", "batch_size", "weight_decay", "warmup", "dropout", "grad_clip", "dtype", "compile")


def d4rl_score(ret):
    """D4RL normalised score: 0 = random policy, 100 = expert (walker2d reference returns)."""
    return 100.0 * (ret - REF_MIN_RETURN) / (REF_MAX_RETURN - REF_MIN_RETURN)


# ----------------------------------------------------------------------------- data

def load_minari(dataset_id):
    """Episodes of a Minari dataset: a local one (MINARI_DATASETS_PATH), else downloaded."""
    minari = need_package("minari", "minari h5py", "walker2d")
    try:
        ds = minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        ds = None
    except Exception as e:
        raise UserError(f"could not read Minari dataset {dataset_id!r}: {type(e).__name__}: {e}")
    if ds is None:
        # never suggest recording a stand-in under the official dataset's id: its scores would pass for D4RL's
        howto = ("with internet it is downloaded from the Hugging Face hub; offline, make medium-quality data here "
                 "with `python -m tasks.walker2d_medium make` and train with --dataset local/walker2d-medium-sac-v0 "
                 "(or pass --d4rl-hdf5 FILE)")
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not host_reachable("huggingface.co"):
            raise UserError(f"Minari dataset {dataset_id!r} is not on this machine and the hub is unreachable; {howto}")
        try:
            ds = minari.load_dataset(dataset_id, download=True)
        except Exception as e:
            raise UserError(f"could not get Minari dataset {dataset_id!r} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); {howto}")
    try:
        episodes = [{"observations": np.asarray(ep.observations[:-1], np.float32),  # the last is the final state
                     "actions": np.asarray(ep.actions, np.float32), "rewards": np.asarray(ep.rewards, np.float32)}
                    for ep in ds.iterate_episodes()]
    except (OSError, KeyError, ValueError, TypeError) as e:     # a damaged HDF5 file inside the dataset
        raise UserError(f"Minari dataset {dataset_id!r}: its data file cannot be read (truncated or damaged?): "
                        f"{str(e).splitlines()[0][:120]}")
    meta = ds.storage.metadata
    standin = str(meta.get("algorithm_name") or "").startswith(STANDIN_TAG)
    return episodes, standin



def load_d4rl_hdf5(path):
    """Episodes of a D4RL-format HDF5 file: flat arrays, an episode ends at terminals | timeouts."""
    h5py = need_package("h5py", "h5py", "walker2d")
    if not Path(path).is_file():
        raise UserError(f"--d4rl-hdf5: no such file {path}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("observations", "actions", "rewards", "terminals", "timeouts") if k not in f]
            if missing:
                raise UserError(f"{path} is not a D4RL file: missing {', '.join(missing)}")
            obs, act = f["observations"][:].astype(np.float32), f["actions"][:].astype(np.float32)
            rew = f["rewards"][:].astype(np.float32).reshape(-1)
            ends = np.flatnonzero(f["terminals"][:].reshape(-1).astype(bool) | f["timeouts"][:].reshape(-1).astype(bool))
    except (OSError, KeyError, ValueError, TypeError) as e:     # h5py's errors for a truncated or damaged file
        raise UserError(f"{path} is not a readable HDF5 file (truncated or damaged?): {str(e).splitlines()[0][:120]}")
    bounds = np.concatenate([[0], ends + 1, [len(rew)]])
    return [{"observations": obs[a:b], "actions": act[a:b], "rewards": rew[a:b]}
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a]   # a trailing unfinished episode is kept


def prepare(episodes):
    """Flat arrays for window sampling: normalised states, actions, scaled returns-to-go, timesteps."""
    episodes = [e for e in episodes if len(e["rewards"])]
    if not episodes:
        raise UserError("the dataset has no transitions")
    if episodes[0]["observations"].shape[1] != STATE_DIM or episodes[0]["actions"].shape[1] != ACT_DIM:
        raise UserError(f"expected Walker2d data (state {STATE_DIM}, action {ACT_DIM}), got "
                          f"{episodes[0]['observations'].shape[1]} and {episodes[0]['actions'].shape[1]}")
    obs = np.concatenate([e["observations"] for e in episodes])
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    # return-to-go: undiscounted sum of this and all later rewards in the episode
    rtg = np.concatenate([np.cumsum(e["rewards"][::-1])[::-1] for e in episodes]) / RETURN_SCALE
    lengths = np.array([len(e["rewards"]) for e in episodes])
    return {"states": torch.tensor((obs - mean) / std, dtype=torch.float32),
            "actions": torch.tensor(np.concatenate([e["actions"] for e in episodes])),
            "rtg": torch.tensor(rtg.copy(), dtype=torch.float32),
            "timesteps": torch.tensor(np.concatenate([np.arange(n) for n in lengths])).clamp(max=MAX_TIMESTEP - 1),
            "starts": torch.tensor(np.concatenate([[0], np.cumsum(lengths)[:-1]])), "lengths": torch.tensor(lengths),
            "state_mean": mean.tolist(), "state_std": std.tolist(),
            "stats": {"episodes": len(episodes), "transitions": int(lengths.sum()),
                      "return_mean": float(np.mean([e["rewards"].sum() for e in episodes])),
                      "return_max": float(np.max([e["rewards"].sum() for e in episodes])),
                      "data_sha256": data_sha256(episodes)}}


def data_sha256(episodes):
    """sha256 of the transitions themselves (episode lengths, then float32 states, actions, rewards, episode
    by episode): the same for the same data whatever file or format holds it, different for data remade
    under the same id, and for the same transitions cut into other episodes (returns-to-go would change)."""
    h = hashlib.sha256(np.array([len(e["rewards"]) for e in episodes], np.int64).tobytes())
    for e in episodes:
        for k in ("observations", "actions", "rewards"):
            h.update(np.ascontiguousarray(e[k], np.float32).tobytes())
    return h.hexdigest()


def one_dataset(rows):
    """The data that runs {name: results.json} all read, as one dict of statistics; refuses runs of different
    data. The id alone does not tell (data remade on a new machine keeps its id), so every recorded
    statistic must agree across all runs that have it (data_sha256 is recorded only by runs since it was
    added; older runs are told apart by their other statistics)."""
    ids = {r["dataset"] for r in rows.values()}
    if len(ids) > 1:
        raise UserError(f"the runs read different datasets ({', '.join(sorted(ids))}): compare runs of one dataset only")
    merged, seen_in = {}, {}
    for name, r in rows.items():
        for k, v in (r.get("dataset_stats") or {}).items():
            if k in merged and merged[k] != v:
                raise UserError(f"{name} and {seen_in[k]} read different data under one id ({k}: {v!r} vs "
                                f"{merged[k]!r}): compare runs of one dataset only")
            merged[k], seen_in[k] = v, name
    return merged


def sample_batch(data, batch_size, K, gen):
    """Windows of up to K steps; episodes drawn in proportion to length, start uniform (as DT).

    A window cut short by the episode end is padded on the right: attention is causal, so real
    tokens never see the padding, and the loss mask drops it."""
    ep = torch.multinomial(data["lengths"].float(), batch_size, replacement=True, generator=gen)
    n = data["lengths"][ep]
    start = (torch.rand(batch_size, generator=gen) * n).long()
    offs = torch.arange(K)
    mask = offs < (n - start).unsqueeze(1)
    idx = torch.where(mask, data["starts"][ep].unsqueeze(1) + start.unsqueeze(1) + offs, 0)
    pick = lambda x: x[idx] * (mask.unsqueeze(-1) if x.ndim == 2 else mask)
    return pick(data["states"]), pick(data["actions"]), pick(data["rtg"]), pick(data["timesteps"]), mask


# ----------------------------------------------------------------------------- stand-in recording

def pd_policy(obs):
    """Hand-written balance controller: PD on the joints, hips lean against torso pitch and spin,
    ankles push against forward speed. Lurches forward a few hundred steps before it falls."""
    q, qd = obs[2:8], obs[11:17]
    target = np.zeros(6)
    target[[0, 3]] = -2.0 * obs[1] - 0.1 * obs[10]
    target[[2, 5]] = -1.0 * obs[1] - 0.5 * obs[8]
    return 3.0 * (target - q) - 0.3 * qd


def record(argv=None):
    p = argparse.ArgumentParser(prog="python -m tasks.walker2d record",
                                description="Roll out a simple seeded policy in Walker2d-v5 and save it as a local "
                                            "Minari dataset: a STAND-IN for offline tests, not D4RL data.")
    p.add_argument("--id", default="local/walker2d-standin-v0", help="Minari dataset id to create, must end in -vN "
                   "(default local/walker2d-standin-v0; stored under MINARI_DATASETS_PATH or ~/.minari)")
    p.add_argument("--episodes", type=int, default=20, help="episodes to record (default 20)")
    p.add_argument("--policy", default="pd", choices=("pd", "random"),
                   help="pd: noisy hand-written balance controller; random: uniform actions (default pd)")
    p.add_argument("--noise", type=float, default=0.2, help="std of Gaussian noise added to pd actions (default 0.2)")
    p.add_argument("--seed", type=seed_arg, default=0, help="episode i uses env seed seed+i and noise seed seed+i (default 0)")
    args = p.parse_args(argv)
    gym, minari = need_package("gymnasium", "gymnasium[mujoco]", "walker2d"), need_package("minari", "minari h5py", "walker2d")
    from minari.data_collector import EpisodeBuffer  # a plain dataclass; DataCollector would pull in jax
    if args.episodes < 1:
        raise UserError("--episodes must be at least 1")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*-v\d+", args.id):
        raise UserError(f"--id {args.id!r}: a Minari id looks like 'namespace/name-v0'")
    if args.id in minari.list_local_datasets():
        raise UserError(f"Minari dataset {args.id} already exists; remove it with `minari delete {args.id}` or pick another --id")
    env = gym.make(ENV_ID)
    buffers = []
    for i in tqdm(range(args.episodes), desc=f"record {args.policy}"):
        rng = np.random.default_rng(args.seed + i)
        obs, _ = env.reset(seed=args.seed + i)
        first, steps = obs, []
        while True:
            if args.policy == "random":
                a = rng.uniform(-1, 1, ACT_DIM)
            else:
                a = pd_policy(obs) + args.noise * rng.standard_normal(ACT_DIM)
            a = np.clip(a, -1, 1).astype(np.float32)
            obs, r, term, trunc, _ = env.step(a)
            steps.append((obs, a, float(r), bool(term), bool(trunc)))
            if term or trunc:
                break
        states, acts, rews, terms, truncs = zip(*steps)
        buffers.append(EpisodeBuffer(id=i, seed=args.seed + i, observations=np.array([first, *states]),
                                     actions=np.array(acts), rewards=list(rews), terminations=list(terms),
                                     truncations=list(truncs), infos={}))
    env.close()
    what = f"{args.policy} policy" + (f", noise {args.noise}" if args.policy == "pd" else "") + f", seed {args.seed}"
    ds = minari.create_dataset_from_buffers(
        args.id, buffers, env=ENV_ID, algorithm_name=f"{STANDIN_TAG}: {what}", author="borrowed-geometry",
        author_email="none", code_permalink="tasks/walker2d.py", ref_min_score=REF_MIN_RETURN, ref_max_score=REF_MAX_RETURN,
        description=f"STAND-IN data for offline tests, not D4RL: {args.episodes} episodes of a {what}.")
    returns = [sum(b.rewards) for b in buffers]
    print(f"wrote {args.id}: {ds.total_episodes} episodes, {ds.total_steps} steps, return mean {np.mean(returns):.1f} "
          f"(min {min(returns):.1f}, max {max(returns):.1f}); a stand-in, not D4RL")


# ----------------------------------------------------------------------------- model

def official_dt_params(state_dim=STATE_DIM, act_dim=ACT_DIM, d=128, n_layer=3, max_ep_len=1000):
    """Trainable parameters of the official gym Decision Transformer (kzl/decision-transformer):
    GPT-2 blocks with a 4d MLP, token table of one row, no position table (removed there), ln_f,
    timestep table, return/state/action embeddings, embedding LayerNorm, and its three heads
    (state and return heads are built but never trained on)."""
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    body = n_layer * block + 2 * d + 1 * d
    wiring = max_ep_len * d + 2 * d + (state_dim + 1) * d + (act_dim + 1) * d + 2 * d
    heads = (d + 1) * state_dim + (d + 1) * act_dim + (d + 1)
    return body + wiring + heads


class DecisionTransformer(nn.Module):
    def __init__(self, body, info, dropout=0.1):
        super().__init__()
        d = info["d_model"]
        self.body, self.info = body, info
        self.embed_time = nn.Embedding(MAX_TIMESTEP, d)
        self.embed_return, self.embed_state = nn.Linear(1, d), nn.Linear(STATE_DIM, d)
        self.embed_action = nn.Linear(ACT_DIM, d)
        self.embed_ln, self.drop = nn.LayerNorm(d), nn.Dropout(dropout)
        self.predict_action = nn.Linear(d, ACT_DIM)
        # LayerNorm makes every token unit-RMS; the scale puts it at the slice's residual RMS (InterfaceModel).
        self.register_buffer("in_scale", torch.tensor(float(info["input_scale"])))

    def input_scale(self):
        return float(self.in_scale)

    def tokens(self, states, actions, rtg, timesteps):
        """The 3L tokens R_1 s_1 a_1 R_2 ... of L timesteps, at the body's input scale."""
        B, L, _ = states.shape
        t = self.embed_time(timesteps)
        tokens = torch.stack([self.embed_return(rtg.unsqueeze(-1)) + t, self.embed_state(states) + t,
                              self.embed_action(actions) + t], dim=2).reshape(B, 3 * L, -1)
        return self.drop(self.embed_ln(tokens)) * self.in_scale

    def act(self, h):
        return torch.tanh(self.predict_action(M.rms_norm(h)))

    def forward(self, states, actions, rtg, timesteps):
        h = self.tokens(states, actions, rtg, timesteps)
        if self.body is not None:
            h = M.run_body(self.body, h)
        return self.act(h[:, 1::3])   # a_t read at the token of s_t

    def can_cache(self):
        """Evaluation may reuse earlier tokens' keys and values: exact for a one-layer frozen slice
        (FrozenSlice.forward_cached calls the layer as Gemma's decoder layers take it)."""
        return isinstance(self.body, M.FrozenSlice) and len(self.body.layers) == 1 and self.body.model_type.startswith("gemma")

    def cached_step(self, cache, states, actions, rtg, timesteps, t):
        """a_t from the new tokens of step t ([a_{t-1}], R_t, s_t), the earlier ones read from `cache`
        (M.WindowCache, trimmed by the caller to the context window). states...timesteps hold steps
        t-1 and t (t alone at t = 0)."""
        new = self.tokens(states, actions, rtg, timesteps)[:, 2 if t > 0 else 0:-1]
        pos = torch.arange(3 * t - (1 if t > 0 else 0), 3 * t + 2, device=new.device).expand(len(new), -1)
        dtype = self.body.compute_dtype
        h = self.body.forward_cached(new.to(dtype), pos, cache).float()
        return self.act(h[:, -1])


# Chen et al.'s gym Decision Transformer: 3 GPT-2 layers, width 128, 1 head, MLP 4x (--substrate dt)
DT_WIDTH, DT_LAYERS, DT_HEADS = 128, 3, 1


def dt_body(cfg, device):
    """The reference Decision Transformer's own body, fully trainable: GPT-2 blocks without a
    position table (the timestep embedding gives positions), dropout as the embeddings', a final
    LayerNorm. Its tokens enter at scale 1, as in the reference."""
    body = M.GPT2Body(DT_WIDTH, DT_LAYERS, DT_HEADS, 4 * DT_WIDTH, generator=torch.Generator().manual_seed(cfg["seed"]),
                      positions=False, dropout=cfg["dropout"], final_ln=True).to(device)
    info = {"model": None, "layers": None, "substrate": "dt", "init": None, "d_model": DT_WIDTH, "dtype": "fp32",
            "compute_dtype": "fp32", "input_scale": 1.0, "input_scale_mode": "fixed",
            "reference": f"Chen et al. 2021 gym DT: {DT_LAYERS} layers, width {DT_WIDTH}, {DT_HEADS} head, dropout {cfg['dropout']}"}
    info["regime"] = None      # a trained body: the frozen-body regime diagnostic does not apply
    return body, info


def build(cfg, device, known_scale=None):
    """(net, body) from a run config; net.info describes the body for results. known_scale: a trained
    checkpoint's input scale, used as it is (never recalibrated)."""
    torch.manual_seed(cfg["seed"])
    body, info = dt_body(cfg, device) if cfg["substrate"] == "dt" else M.body_from_config(cfg, device, known_scale)
    M.compile_body(body, cfg)
    net = DecisionTransformer(body, info, cfg["dropout"]).to(device)
    return net, body


def load_trained(path, device="auto"):
    """(net, body, checkpoint dict) with the trained weights in place."""
    state = load_checkpoint(path, ("walker2d",))
    device = pick_device(device)
    net, body = build(state["config"], device, known_scale=state["body"]["input_scale"])
    load_weights(net, state["model"], path)
    return net, body, state


# ----------------------------------------------------------------------------- evaluation

def eval_env_id(cfg):
    """The simulator the data came from: D4RL HDF5 files -> Walker2d-v4, Minari datasets -> v5."""
    return D4RL_ENV_ID if cfg.get("d4rl_hdf5") else ENV_ID


@torch.no_grad()
def episode_scores(net, cfg, episodes, targets, seed, max_ep_len, device, rank=0, world=1, use_cache=True):
    """Roll out episodes x targets in lockstep: one model call per timestep for all live episodes.
    A one-layer frozen slice reuses earlier tokens' keys and values (exact there, see
    DecisionTransformer.can_cache); use_cache=False recomputes the whole window every step.

    Under torchrun each rank rolls out every world-th episode (same seeds as one process would use)
    and the per-episode returns and lengths are gathered on every rank."""
    gym = need_package("gymnasium", "gymnasium[mujoco]", "walker2d")
    if not 1 <= max_ep_len <= MAX_TIMESTEP:
        raise UserError(f"--max-ep-len must be in 1..{MAX_TIMESTEP}, got {max_ep_len}")
    was_training = net.training
    net.eval()
    K = cfg["context"]
    mean, std = np.array(cfg["state_mean"]), np.array(cfg["state_std"])
    runs = [(target, i) for target in targets for i in range(episodes)]
    n = len(runs)
    envs = {j: gym.make(eval_env_id(cfg)) for j in range(rank, n, world)}
    states = np.zeros((n, max_ep_len + 1, STATE_DIM), np.float32)
    actions = np.zeros((n, max_ep_len + 1, ACT_DIM), np.float32)   # the current action stays 0: unseen (causal)
    rtg = np.zeros((n, max_ep_len + 1), np.float32)
    returns, lengths, alive = np.zeros(n), np.zeros(n, int), np.zeros(n, bool)
    cache, rows = (M.WindowCache(), None) if use_cache and net.can_cache() else (None, None)
    for j, env in envs.items():
        target, i = runs[j]
        states[j, 0] = env.reset(seed=seed + i)[0]
        rtg[j, 0] = target / RETURN_SCALE
        alive[j] = True
    for t in range(max_ep_len):
        live = np.flatnonzero(alive)
        if not len(live):
            break
        lo = max(0, t - K + 1)
        first = lo if cache is None else max(t - 1, 0)    # the cache needs only the new tokens' steps
        as_t = lambda x: torch.tensor(x[live, first:t + 1], device=device)
        s = torch.tensor((states[live, first:t + 1] - mean) / std, dtype=torch.float32, device=device)
        steps = torch.arange(first, t + 1, device=device).clamp(max=MAX_TIMESTEP - 1).expand(len(live), -1)
        if cache is None:
            pred = net(s, as_t(actions), as_t(rtg), steps)[:, -1].cpu().numpy()
        else:
            if rows is not None and len(rows) != len(live):       # follow the episodes still running
                cache.select(torch.as_tensor(np.searchsorted(rows, live), device=device))
            rows = live
            cache.keep_last(max(0, 3 * t - 1 - 3 * lo))          # cached: positions < 3t - 1; the window starts at 3 lo
            pred = net.cached_step(cache, s, as_t(actions), as_t(rtg), steps, t).cpu().numpy()
        for a, j in zip(pred, live):
            obs, r, term, trunc, _ = envs[j].step(a)
            actions[j, t], states[j, t + 1], rtg[j, t + 1] = a, obs, rtg[j, t] - r / RETURN_SCALE
            returns[j], lengths[j] = returns[j] + r, t + 1
            alive[j] = not (term or trunc)
    for env in envs.values():
        env.close()
    if world > 1:
        for part in all_gather({j: (returns[j], lengths[j]) for j in envs}):
            for j, (ret, length) in part.items():
                returns[j], lengths[j] = ret, length
    net.train(was_training)
    out = {}
    for target in targets:
        rows = [j for j, (tg, _) in enumerate(runs) if tg == target]
        ret, score = returns[rows], d4rl_score(returns[rows])
        sd = lambda x: float(x.std(ddof=1)) if len(x) > 1 else 0.0
        out[f"{target:g}"] = {"score_mean": float(score.mean()), "score_std": sd(score), "return_mean": float(ret.mean()),
                              "return_std": sd(ret), "returns": ret.tolist(), "scores": score.tolist(),
                              "lengths": lengths[rows].tolist()}
    return out


PAIRED = None   # key of the per-item 0/1 outcomes in a measurement's detail (McNemar), if any
METRIC, HIGHER_IS_BETTER = "d4rl_normalised_score", True


def load_run(ckpt_path, device="auto", dtype=None):
    net, _, state = load_trained(ckpt_path, device)
    return net, state["config"], state


def evaluate_run(ckpt_path, opts):
    """Normalised score per target return on fresh episode seeds (stream 2), never used in training."""
    t0 = time.time()
    result = evaluate_checkpoint(ckpt_path, opts.episodes or 10, max_ep_len=getattr(opts, "max_ep_len", None) or MAX_TIMESTEP,
                                 device=opts.device)
    result["scores_mean"] = {k: v["score_mean"] for k, v in result["scores"].items()}
    return {**result, **environment(pick_device(opts.device)), "wall_time_s": time.time() - t0}


def summary_line(result):
    return json.dumps({k: result[k] for k in ("scores_mean", "episodes")})


def ablation_target(ckpt_path, opts):
    """Mean D4RL-normalised score over the run's target returns; the same episode seeds every call."""
    net, body, state = load_trained(ckpt_path, opts.device)
    cfg = state["config"]
    device = next(net.parameters()).device
    seed = episode_seed_base(cfg["seed"], 2)
    targets = [float(t) for t in cfg["targets"].split(",")]
    episodes, max_ep_len = opts.episodes or 10, opts.max_ep_len or cfg["max_ep_len"]

    def measure():
        scores = episode_scores(net, cfg, episodes, targets, seed, max_ep_len, device)
        return sum(v["score_mean"] for v in scores.values()) / len(scores), scores

    meta = {"metric": METRIC, "higher_is_better": HIGHER_IS_BETTER, "episodes": episodes, "targets": targets,
            "max_ep_len": max_ep_len, "episode_seed_base": seed, "slice": net.info["layers"],
            "dataset": cfg["d4rl_hdf5"] or cfg["dataset"], "dataset_is_standin": cfg["dataset_is_standin"]}
    return body, measure, cfg, meta, device


def run_values(r, which="best"):
    """(name, curve entry, {target return: mean normalised score}) of a results.json."""
    curve = r["best"] if which == "best" else r["final"]
    return None if curve is None else ("scores", curve, {t: v["score_mean"] for t, v in curve["scores"].items()})


def head_extra(intact_detail, detail):
    return {}


def evaluate_checkpoint(ckpt_path, episodes=10, targets=(5000.0, 2500.0), seed=None, max_ep_len=MAX_TIMESTEP, device="auto"):
    """Rebuild a checkpoint's model and score it; seed None = the run's fresh stream (never used for selection)."""
    net, body, state = load_trained(ckpt_path, device)
    cfg = state["config"]
    seed = episode_seed_base(cfg["seed"], 2) if seed is None else seed
    scores = episode_scores(net, cfg, episodes, list(targets), seed, max_ep_len, next(net.parameters()).device)
    return {"checkpoint": portable(ckpt_path), "checkpoint_step": state["step"], "slice": net.info["layers"], "body": net.info,
            "episode_seed_base": seed, "episodes": episodes, "max_ep_len": max_ep_len, "scores": scores,
            "dataset": cfg["d4rl_hdf5"] or cfg["dataset"], "dataset_is_standin": cfg["dataset_is_standin"],
            "normalisation": NORMALISATION, "eval_env": eval_env_id(cfg)}


# ----------------------------------------------------------------------------- training

def get_parser():
    p = argparse.ArgumentParser(prog="python -m tasks.walker2d train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="walker2d", choices=("walker2d",), help="always walker2d (lets train.py pass its flags on)")
    M.add_body_args(p, layers="6-10", substrates=M.SUBSTRATES + ("dt",), learn=False)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help=f"Minari dataset id, local or downloaded (default {DEFAULT_DATASET})")
    p.add_argument("--d4rl-hdf5", default=None, help="a D4RL-format HDF5 file instead of --dataset")
    p.add_argument("--context", type=int, default=20, help="context length K in timesteps, 3K tokens (default 20)")
    p.add_argument("--steps", type=int, default=100_000, help="optimiser steps (default 100000)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per step (default 64)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--warmup", type=int, default=None,
                   help="linear warm-up steps, then constant LR (default: a tenth of --steps, at most the reference "
                        "10,000, so a short CPU run reaches its learning rate; a resumed run keeps its own)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout on the token embeddings (default 0.1)")
    p.add_argument("--grad-clip", type=float, default=0.25, help="gradient norm clip (default 0.25)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds init, batches, dropout and evaluation episodes (default 0)")
    p.add_argument("--eval-every", type=int, default=10_000, help="evaluate and checkpoint every N steps (default 10000)")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="episodes per target return (default 10, a quick check; the DT reference evaluates 100, use 100 "
                        "for reference runs: all episodes run in lockstep, so it costs little more)")
    p.add_argument("--targets", default="5000,2500", help="comma-separated target returns (default 5000,2500)")
    p.add_argument("--max-ep-len", type=int, default=MAX_TIMESTEP, help=f"cut evaluation episodes at this many steps (default {MAX_TIMESTEP})")
    p.add_argument("--out", default=None, help="run folder (default runs/walker2d__{condition}__{seed}__{hash of the settings})")
    add_run_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="through train.py --task walker2d: print the bytes to download and the peak weight memory, then exit")
    return p


def main(argv=None):
    args = parse_run_args(get_parser(), argv)
    if args.dry_run:
        raise UserError("--dry-run is train.py's: python train.py --task walker2d --dry-run [flags]")
    if args.substrate == "dt" and (args.init != "pretrained" or args.input_scale != "auto"):
        raise UserError("--substrate dt is the reference Decision Transformer: --init and --input-scale do not apply")
    if M.parse_input_scale(args.input_scale) == "learn":
        raise UserError("--input-scale learn is for the token tasks; give 'auto' or a number here")
    cfg = {**vars(args), "out": portable(args.out)}   # as recorded in JSON: no machine's absolute path
    try:
        targets = [float(s) for s in args.targets.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--targets must be comma-separated numbers, got {args.targets!r}")
    if not targets or args.context < 1 or args.eval_episodes < 1 or not 1 <= args.max_ep_len <= MAX_TIMESTEP:
        raise UserError(f"need --targets, --context >= 1, --eval-episodes >= 1 and --max-ep-len in 1..{MAX_TIMESTEP}")
    need_at_least(args, 1, "steps", "batch_size", "eval_every")
    if args.warmup is not None:
        need_at_least(args, 0, "warmup")
    need_positive_float(args, "lr", "grad_clip")
    if not 0 <= args.dropout < 1 or args.weight_decay < 0:
        raise UserError("need 0 <= --dropout < 1 and --weight-decay >= 0")
    rank, world, device = data_parallel(args.batch_size, args.device)   # (0, 1, device) unless under torchrun
    main_rank = rank == 0
    condition = condition_name(cfg)
    out = Path(args.out or run_folder("walker2d", cfg))
    if args.warmup is None:
        last = out / "last.pt"
        started = load_checkpoint(last, ("walker2d",))["config"].get("warmup") if args.resume and last.exists() else None
        args.warmup = cfg["warmup"] = started if started is not None else min(10_000, args.steps // 10)
    parser = get_parser()
    state = open_run(out, cfg, IDENTITY, args.resume, {k: parser.get_default(k) for k in IDENTITY}, check_write=main_rank)
    barrier()

    episodes, standin = (load_d4rl_hdf5(args.d4rl_hdf5), False) if args.d4rl_hdf5 else load_minari(args.dataset)
    data = prepare(episodes)
    if state is not None:   # the id alone does not tell: data remade on another machine keeps its id
        old = state["config"]
        if (old.get("data_sha256", data["stats"]["data_sha256"]) != data["stats"]["data_sha256"]
                or old.get("state_mean", data["state_mean"]) != data["state_mean"]):
            raise UserError(f"--resume: {out} was trained on other data than {args.d4rl_hdf5 or args.dataset} holds "
                            f"now (remade under the same name?); start a new run with another --out")
    cfg.update(state_mean=data["state_mean"], state_std=data["state_std"],
               data_sha256=data["stats"]["data_sha256"], dataset_is_standin=standin)
    out.mkdir(parents=True, exist_ok=True)
    net, body = build(cfg, device)
    refuse_changed_scale(state, net.info["input_scale"], out, args.input_scale)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    model = wrap_ddp(net, device, world)
    data_gen = torch.Generator().manual_seed(args.seed)
    step, history, best, wall_before = resume_training(state, net, opt, data_gen)
    if state is not None:
        torch.set_rng_state(state["torch_rng"])   # dropout draws from the global generator
        print(f"resuming {out} at step {step}")
    counts = M.param_counts(net)
    official = official_dt_params()
    print(f"walker2d | {condition} | trainable {counts['trainable_params']:,} "
          f"({counts['trainable_params'] / official:.2f}x official DT {official:,}) | frozen {counts['frozen_params']:,} | {device}")
    if standin:
        print(f"note: {args.dataset} is a STAND-IN dataset recorded by `record`, not D4RL; its scores say nothing about the paper")
    eval_seed = episode_seed_base(args.seed, 1)
    env = {**environment(device), "world_size": world}   # git commit of the code that starts the run
    t0 = time.time()

    def checkpoint(name):
        if not main_rank:
            return
        save_atomic(training_state(cfg, net.info, step, M.trainable_state(net), opt, data_gen, history, best,
                                   wall_before + time.time() - t0, torch_rng=torch.get_rng_state(),
                                   loss_since_eval=[loss_sum, loss_n]), out / name)

    def write_results():
        if not main_rank:
            return
        save_atomic({**results_head(cfg, net.info, condition, counts, env, step, wall_before + time.time() - t0),
                     **M.end_regime(net), "official_dt_trainable_params": official,
                     "trainable_ratio_to_official_dt": counts["trainable_params"] / official,
                     "official_dt_config": "kzl/decision-transformer gym: 3 layers, 1 head, d_model 128, 4x ReLU MLP, "
                                           "K=20, max_ep_len 1000, state 17, action 6 (wpe removed, all heads counted)",
                     "dataset": args.d4rl_hdf5 or args.dataset, "dataset_source": "d4rl_hdf5" if args.d4rl_hdf5 else "minari",
                     "dataset_is_standin": standin,
                     "dataset_note": ("STAND-IN data from `python -m tasks.walker2d record`, not D4RL: a test of the "
                                      "pipeline, not of the paper's claim") if standin else "offline RL data as given",
                     "dataset_stats": data["stats"], "normalisation": NORMALISATION, "metric": "d4rl_normalised_score",
                     "eval": {"env": eval_env_id(cfg), "targets": targets, "episodes": args.eval_episodes, "max_ep_len": args.max_ep_len,
                              "episode_seed_base": eval_seed},
                     "history": history, "final": history[-1] if history else None,
                     "best": best, "best_note": "best.pt: the evaluation whose best target scores highest (max over "
                                                "targets of the mean score), chosen on the same episodes it is "
                                                "reported on (optimistic)"}, out / "results.json")

    bar = tqdm(total=args.steps, initial=step, desc="walker2d", dynamic_ncols=True, disable=not main_rank)
    # mean training loss since the last evaluation (a wall-clock checkpoint between evaluations keeps it)
    loss_sum, loss_n = state.get("loss_since_eval", (0.0, 0)) if state is not None else (0.0, 0)
    writer = scalar_writer(out, step, main_rank)
    saved_at = time.time()
    stop_at_step_boundary()
    while step < args.steps:
        if stop_requested(world):
            checkpoint("last.pt")
            write_results()
            raise stopped(out, step)
        # every rank draws the global batch from the same stream and keeps its share (same windows
        # as one process); the loss is normalised by the global count of real steps, so DDP's
        # average of the ranks' gradients is the gradient of the global masked mean
        batch = sample_batch(data, args.batch_size, args.context, data_gen)
        share = slice(rank * args.batch_size // world, (rank + 1) * args.batch_size // world)
        real_steps = batch[-1].sum() * ACT_DIM
        s, a, r, ts, mask = (x[share].to(device) for x in batch)
        warm_up(opt, args.lr, step, args.warmup)
        pred = model(s, a, r, ts)
        loss = ((pred - a) ** 2 * mask.unsqueeze(-1)).sum() / real_steps * world   # MSE on real (unpadded) steps
        loss_value = global_loss(loss, world, step, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        opt.step()
        step += 1
        loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if writer and (step % args.log_every == 0 or step == 1):
            log_scalars(writer, {"loss": loss_value, "lr": opt.param_groups[0]["lr"]}, step, "train")
        if step % args.eval_every == 0 or step == args.steps:
            scores = episode_scores(net, cfg, args.eval_episodes, targets, eval_seed, args.max_ep_len, device, rank, world)
            history.append({"step": step, "loss": loss_sum / loss_n, "scores": scores})
            loss_sum, loss_n = 0.0, 0
            top = max(v["score_mean"] for v in scores.values())
            if best is None or top > best["score"]:
                best = {"step": step, "score": top, "scores": scores}
                checkpoint("best.pt")
            checkpoint("last.pt")
            write_results()
            saved_at = time.time()
            log_scalars(writer, {"score": {k: v["score_mean"] for k, v in scores.items()}}, step, "eval")
            if main_rank:
                bar.write(f"step {step}: " + ", ".join(f"target {k} score {v['score_mean']:.2f}" for k, v in scores.items()))
            bar.unpause()           # the rate shown counts training steps, not evaluation time
        elif checkpoint_due(saved_at, args.checkpoint_minutes):
            checkpoint("last.pt")
            saved_at = time.time()
            bar.unpause()
    bar.close()
    write_results()
    if writer:
        writer.close()
    finish_distributed()
    if main_rank:
        print(f"done: best score {best['score']:.2f} at step {best['step']}; {out}/results.json")


def compare(argv=None):
    """Each run's training curve (the selection episodes) and its fresh-episode scores: eval_best.json
    (evaluate.py on best.pt) and, when every run has one, eval_last.json (on last.pt, the run's end,
    free of the noisy selection); then each run against the first (the reference, e.g. the pretrained
    slice), per checkpoint and target: fresh episode i has the same environment seed in every run, so
    the score differences pair by episode (bootstrap 95% CI of the mean difference, paired t-test)."""
    p = argparse.ArgumentParser(prog="python -m tasks.walker2d compare", description=compare.__doc__)
    p.add_argument("runs", nargs="+", help="run folders holding results.json and eval_best.json; the first is the reference")
    p.add_argument("--out", help="write the comparison here as JSON (default: print it)")
    args = p.parse_args(argv)
    runs = {}
    for run in args.runs:
        d = Path(run)
        if not (d / "results.json").is_file() or not (d / "eval_best.json").is_file():
            raise UserError(f"{run}: need results.json and eval_best.json (python evaluate.py --ckpt {run}/best.pt)")
        r = read_json(d / "results.json")
        evals = {k: read_json(d / f"eval_{k}.json") for k in ("best", "last") if (d / f"eval_{k}.json").is_file()}
        if r.get("metric") != METRIC or any("scores" not in e for e in evals.values()):
            raise UserError(f"{run}: not a Walker2d run")
        runs[d.name] = (d, r, evals)               # the folder names the run (conditions can repeat over seeds)
    checkpoints = [k for k in ("best", "last") if all(k in evals for _, _, evals in runs.values())]
    out = {"dataset": None, "checkpoints": checkpoints, "runs": {}, "versus_reference": {}}
    one_dataset({name: r for name, (_, r, _) in runs.items()})
    for name, (d, r, evals) in runs.items():
        out["dataset"] = r["dataset"]
        row = {"results": portable(d / "results.json"), "condition": r["condition"], "seed": r["seed"],
               "steps_done": r["steps_done"], "batch_size": r["config"]["batch_size"], "wall_time_s": r["wall_time_s"],
               "trainable_params": r["trainable_params"], "frozen_params": r["frozen_params"],
               "input_scale": r.get("input_scale_end"), "regime": r.get("regime_end"),   # the operating point of a slice
               "curve": [{"step": h["step"], **{t: v["score_mean"] for t, v in h["scores"].items()}} for h in r["history"]]}
        for k in checkpoints:
            e = evals[k]
            fresh = {t: dict(zip(("mean", "ci95_lo", "ci95_hi"), stats.bootstrap_ci(v["scores"])), episodes=len(v["scores"]),
                             return_mean=v["return_mean"], mean_length=float(np.mean(v["lengths"])))
                     for t, v in e["scores"].items()}
            row[k] = {"step": e["checkpoint_step"], "episode_seed_base": e["episode_seed_base"], "fresh": fresh,
                      "mean_over_targets": float(np.mean([v["mean"] for v in fresh.values()]))}
        out["runs"][name] = row
    ref_name, (_, _, ref) = next(iter(runs.items()))
    for name, (_, _, evals) in list(runs.items())[1:]:
        out["versus_reference"][name] = {"reference": ref_name}
        for k in checkpoints:
            e, base = evals[k], ref[k]
            if e["episode_seed_base"] != base["episode_seed_base"] or e["scores"].keys() != base["scores"].keys():
                raise UserError(f"{name} and {ref_name} were evaluated on different episodes or targets: they do not pair")
            row = {}
            for t, v in e["scores"].items():
                a, b = np.array(base["scores"][t]["scores"]), np.array(v["scores"])
                if len(a) != len(b):
                    raise UserError(f"{name} and {ref_name} have different episode counts at target {t}")
                mean, lo, hi = stats.bootstrap_ci(a - b)
                row[t] = {"reference_minus_run": mean, "ci95": [lo, hi], "paired_t_p": stats.paired_t(a, b)[2], "episodes": len(a)}
            out["versus_reference"][name][k] = row
    write_or_print(out, args.out)
    return out


# ----------------------------------------------------------------------------- learning-rate check and seeds

def read_run(run, need=()):
    """(folder, results.json, {name: eval_<name>.json}) of a Walker2d run folder; `need`: evaluations it must have."""
    d = Path(run)
    if not (d / "results.json").is_file():
        raise UserError(f"{run}: no results.json")
    r = read_json(d / "results.json")
    evals = {k: read_json(d / f"eval_{k}.json") for k in ("best", "last") if (d / f"eval_{k}.json").is_file()}
    if not isinstance(r, dict) or r.get("metric") != METRIC or "history" not in r:
        raise UserError(f"{run}: not a Walker2d run")
    for k in need:
        if k not in evals:
            raise UserError(f"{run}: no eval_{k}.json (python evaluate.py --ckpt {run}/{k}.pt --episodes 50)")
    return d, r, evals


def pick_lr(argv=None):
    """Each body's learning rate from a check at one budget: runs that differ only in --lr, grouped by the
    folder name before its '__lr' part (L8_pretrained__lr3e-4__0 -> L8_pretrained). The criterion is the
    training-time evaluation episodes (stream 1, seed base 10000 x seed + 1000): the mean over targets
    of the normalised return, averaged over the last --last evaluations; the fresh episodes (stream 2)
    that are reported are never looked at. Ties go to the lower rate. A chosen rate at an end of the
    rates checked for its body is an open edge: the record names the next rate of the ladder beyond it
    (next_lr; None where the ladder ends), which the check runs before its choice counts."""
    p = argparse.ArgumentParser(prog="python -m tasks.walker2d pick-lr", description=pick_lr.__doc__)
    p.add_argument("runs", nargs="+", help="run folders of the check, e.g. lr_check/*__lr*__0")
    p.add_argument("--last", type=int, default=3, help="evaluations averaged per run (default 3)")
    p.add_argument("--out", help="write the choice here as JSON (default: print it)")
    args = p.parse_args(argv)
    if args.last < 1:
        raise UserError("--last must be at least 1")
    groups, results = {}, {}
    for run in args.runs:
        d, r, _ = read_run(run)
        results[d.name] = r
        if "__lr" not in d.name:
            raise UserError(f"{run}: a check run's folder is named BODY__lr<rate>__SEED")
        if r["eval"]["episode_seed_base"] != episode_seed_base(r["seed"], 1):
            raise UserError(f"{run}: its evaluations are not the training-time stream; the check chooses on that stream only")
        if len(r["history"]) < args.last:
            raise UserError(f"{run}: {len(r['history'])} evaluations, --last {args.last} needs more")
        evals = r["history"][-args.last:]
        value = float(np.mean([np.mean([v["score_mean"] for v in h["scores"].values()]) for h in evals]))
        groups.setdefault(d.name.partition("__lr")[0], {})[d.name] = {
            "lr": r["config"]["lr"], "seed": r["seed"], "steps_done": r["steps_done"], "steps": [h["step"] for h in evals],
            "value": value, "per_target": {t: float(np.mean([h["scores"][t]["score_mean"] for h in evals])) for t in evals[-1]["scores"]},
            "dtype": r["config"].get("dtype"), "wall_time_s": r["wall_time_s"], "git_commit": r.get("git_commit")}
    data = one_dataset(results)
    out = {"dataset": next(iter(results.values()))["dataset"], "dataset_stats": data,
           "criterion": f"mean over targets of the D4RL-normalised return on the training-time evaluation episodes "
                        f"(stream 1), averaged over the last {args.last} evaluations; higher is better, ties to the lower rate",
           "last": args.last, "bodies": {}}
    for body, runs in groups.items():
        budget = {(row["steps_done"], tuple(row["steps"]), row["seed"], row["dtype"]) for row in runs.values()}
        if len(budget) > 1:
            raise UserError(f"{body}: the check's runs differ in steps, evaluation steps, seed or dtype; the rate is "
                            f"chosen at one budget")
        if len({row["lr"] for row in runs.values()}) != len(runs):
            raise UserError(f"{body}: two check runs at the same learning rate")
        name = max(sorted(runs, key=lambda n: runs[n]["lr"]), key=lambda n: runs[n]["value"])   # max keeps the first of ties
        lrs, lr = sorted(row["lr"] for row in runs.values()), runs[name]["lr"]
        # an end of the checked rates: the best may lie beyond it (with one rate checked, both ends are open)
        edge = "high" if lr == lrs[-1] else "low" if lr == lrs[0] else None
        i = ladder_index(lr)
        j = {"high": i + 1, "low": i - 1}.get(edge)
        next_lr = float(LADDER[j]) if j is not None and 0 <= j < len(LADDER) else None
        out["bodies"][body] = {"chosen_lr": lr, "chosen_run": name, "steps_done": runs[name]["steps_done"],
                               "dtype": runs[name]["dtype"],
                               "checked_lrs": lrs, "open_edge": edge, "next_lr": next_lr, "runs": runs}
        if edge:
            print(f"{body}: best rate {lr:g} at the {edge} end of the checked rates; "
                  + (f"next on the ladder: {next_lr:g}" if next_lr else "the ladder ends there"), file=sys.stderr, flush=True)
    write_or_print(out, args.out)
    return out


def seeds(argv=None):
    """Several training seeds per condition, scored on fresh episodes (stream 2, evaluate.py on last.pt by
    default): per run and target the mean score; per condition and target the mean over seeds with a
    95% t interval; per seed the difference reference - condition with a paired t-test over seeds. A
    condition is a run folder's name before its last '__' (L8_pretrained__1 -> L8_pretrained). Every run
    must have read one dataset and run the same number of steps."""
    p = argparse.ArgumentParser(prog="python -m tasks.walker2d seeds", description=seeds.__doc__)
    p.add_argument("runs", nargs="+", help="run folders with results.json and eval_<checkpoint>.json, e.g. RUNS/*__[123]")
    p.add_argument("--reference", default=None, help="condition the others are compared with (default: the first run's)")
    p.add_argument("--checkpoint", default="last", choices=("last", "best"), help="whose fresh-episode scores (default last)")
    p.add_argument("--out", help="write the summary here as JSON (default: print it)")
    args = p.parse_args(argv)
    runs, conditions, results = {}, {}, {}
    for run in args.runs:
        d, r, evals = read_run(run, need=(args.checkpoint,))
        results[d.name] = r
        e = evals[args.checkpoint]
        cond = d.name.rpartition("__")[0] or d.name
        if d.name in runs or r["seed"] in conditions.get(cond, {}):
            raise UserError(f"{run}: a second run of {cond} with seed {r['seed']}")
        if e["episode_seed_base"] != episode_seed_base(r["seed"], 2):
            raise UserError(f"{run}: eval_{args.checkpoint}.json is not on the run's fresh episodes (stream 2)")
        if args.checkpoint == "last" and e["checkpoint_step"] != r["steps_done"]:
            raise UserError(f"{run}: eval_last.json scored step {e['checkpoint_step']:,} but the run is at "
                            f"{r['steps_done']:,}; evaluate last.pt again")
        conditions.setdefault(cond, {})[r["seed"]] = d.name
        runs[d.name] = {"condition": cond, "seed": r["seed"], "dataset": r["dataset"], "steps_done": r["steps_done"],
                        "lr": r["config"]["lr"], "batch_size": r["config"]["batch_size"], "warmup": r["config"]["warmup"],
                        "dtype": r["config"].get("dtype"), "trainable_params": r["trainable_params"],
                        "wall_time_s": r["wall_time_s"], "git_commit": r.get("git_commit"), "checkpoint_step": e["checkpoint_step"],
                        "episodes": {t: len(v["scores"]) for t, v in e["scores"].items()},
                        "fresh": {t: float(np.mean(v["scores"])) for t, v in e["scores"].items()}}
    data = one_dataset(results)
    for cond, by_seed in conditions.items():
        dtypes = {runs[n]["dtype"] for n in by_seed.values()}
        if len(dtypes) > 1:
            raise UserError(f"{cond}: its seeds computed in different dtypes ({', '.join(map(str, sorted(dtypes, key=str)))}); "
                            f"rerun them in one")
    steps = {row["steps_done"] for row in runs.values()}    # one dataset: one_dataset above
    if len(steps) > 1:
        raise UserError(f"the runs differ in steps_done ({', '.join(map(str, sorted(steps)))}): summarise runs of one "
                        f"dataset at one number of steps")
    targets = {tuple(row["fresh"]) for row in runs.values()}
    if len(targets) > 1:
        raise UserError("the runs were scored at different target returns")
    targets = list(targets.pop())
    reference = args.reference or next(iter(conditions))
    if reference not in conditions:
        raise UserError(f"--reference {reference!r} is not among the conditions ({', '.join(conditions)})")
    first = next(iter(runs.values()))
    out = {"checkpoint": args.checkpoint, "dataset": first["dataset"], "steps_done": first["steps_done"],
           "dataset_stats": data,
           "targets": targets, "reference": reference, "runs": runs, "conditions": {}, "differences": {},
           "notes": {"interval": "95% Student-t interval over seeds (t = 4.30 at n = 3)",
                     "test": "paired t-test over seeds, paired by training seed; weak at n = 3 (2 degrees of freedom)",
                     "episodes": "fresh episodes: seed 10000 x seed + 2000 + i, never used in training or selection; runs of "
                                 "one seed share them, different seeds do not"}}
    score = lambda cond, t: {s: runs[n]["fresh"][t] for s, n in conditions[cond].items()}
    for cond, by_seed in conditions.items():
        names = [by_seed[s] for s in sorted(by_seed)]
        out["conditions"][cond] = {"seeds": sorted(by_seed), "runs": names,
                                   "lr": sorted({runs[n]["lr"] for n in names}), "batch_size": sorted({runs[n]["batch_size"] for n in names}),
                                   "trainable_params": runs[names[0]]["trainable_params"],
                                   "one_code_version": len({runs[n]["git_commit"] for n in names}) == 1,
                                   "wall_time_s": sum(runs[n]["wall_time_s"] for n in names),
                                   "fresh": {t: stats.t_interval([runs[n]["fresh"][t] for n in names]) for t in targets}}
    for cond in conditions:
        if cond != reference:
            out["differences"][cond] = {"reference": reference, **{
                t: stats.paired_over_seeds(score(reference, t), score(cond, t), (reference, cond)) for t in targets}}
    write_or_print(out, args.out)
    return out


def cli(argv):
    subcommands("python -m tasks.walker2d", __doc__, {
        "train": (main, "train the Decision Transformer (the same as train.py --task walker2d)"),
        "record": (record, "record a seeded stand-in policy as a local Minari dataset (a pipeline test, not D4RL)"),
        "compare": (compare, "training curves and fresh-episode scores of runs against the first"),
        "pick-lr": (pick_lr, "choose each body's learning rate from a check's training-time evaluations"),
        "seeds": (seeds, "fresh-episode scores of runs at several seeds: means, t intervals, tests over seeds")}, argv)


if __name__ == "__main__":
    run_main(lambda: cli(sys.argv[1:]))
