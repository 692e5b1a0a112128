"""OGBench IQL: generated data loads through ogbench unchanged, the oracle solves task1, the agent
trains, evaluates, resumes and ablates. All offline, on tiny generated datasets."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from runs import UserError
from tasks import ogbench as O

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVS = {"scene": "scene-play-singletask-task1-v0", "cube-double": "cube-double-play-singletask-task1-v0"}


def run(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Two short play episodes (+1 validation) per environment, written by the generate command."""
    folder = tmp_path_factory.mktemp("ogbench")
    for kind in ENVS:
        run("-m", "tasks.ogbench", "generate", "--env", f"{kind}-play-v0", "--episodes", "2",
            "--episode-steps", "200", "--out", str(folder))
    return folder


@pytest.mark.parametrize("kind", list(ENVS))
def test_generated_data_loads_through_ogbench(data_dir, kind):
    raw = np.load(data_dir / f"{kind}-play-v0.npz")
    assert raw["observations"].shape[0] == 400 and raw["terminals"].sum() == 2 and raw["terminals"][199]
    assert raw["qpos"].shape[0] == raw["qvel"].shape[0] == 400
    assert ("button_states" in raw) == (kind == "scene")
    assert np.load(data_dir / f"{kind}-play-v0-val.npz")["observations"].shape[0] == 200
    env, train, val = O.load(ENVS[kind], str(data_dir))   # ogbench.make_env_and_datasets, untouched
    assert train["observations"].shape == (398, env.observation_space.shape[0])   # last step of each episode has no successor
    assert train["actions"].shape == (398, env.action_space.shape[0]) and np.abs(train["actions"]).max() <= 1
    assert set(train) >= {"next_observations", "rewards", "masks"} and len(val["observations"]) == 199
    assert (train["rewards"] <= 0).all() and train["rewards"].min() < 0      # relabelled for task1
    # the oracles actually moved things: the effector and the objects are not where they started
    assert raw["qpos"][:, 14:17].std(0).max() > 1e-3 or kind == "scene"
    assert np.abs(np.diff(raw["observations"], axis=0)).mean() > 1e-3


def test_generate_is_cheap_to_rerun(data_dir):
    before = os.path.getmtime(data_dir / "scene-play-v0.npz")
    out = run("-m", "tasks.ogbench", "generate", "--env", "scene-play-v0", "--episodes", "2", "--out", str(data_dir))
    assert "nothing to do" in out.stdout and os.path.getmtime(data_dir / "scene-play-v0.npz") == before


def test_generate_same_seed_same_data(data_dir, tmp_path):
    """One machine, one seed, one file (the README says why two machines may still differ)."""
    run("-m", "tasks.ogbench", "generate", "--env", "scene-play-v0", "--episodes", "2",
        "--episode-steps", "200", "--out", str(tmp_path))
    for name in ("scene-play-v0.npz", "scene-play-v0-val.npz"):
        a, b = np.load(data_dir / name), np.load(tmp_path / name)
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]), (name, k)


def quat_yaw(wxyz):
    from ogbench.manipspace import lie
    return lie.SO3(wxyz=np.asarray(wxyz)).compute_yaw_radians()


# Test-only helper: it reads private attributes of the ogbench envs (targets are not public).
def task_oracle_success(name, seed=0, min_norm=0.4):
    """Solve the single-task env's own task with the shipped Markov oracles, one unmet subgoal at a
    time, and return the env's success flag: evidence that success is reachable and reported.

    The task env does not expose the collection-mode target keys, so they are read from its state."""
    import gymnasium
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    _, env_name = O.split_name(name)
    np.random.seed(seed)
    env = gymnasium.make(env_name)
    u = env.unwrapped
    oracles = {"cube": CubeMarkovOracle(env=env, min_norm=min_norm), "button": ButtonMarkovOracle(env=env, min_norm=min_norm),
               "drawer": DrawerMarkovOracle(env=env, min_norm=min_norm), "window": WindowMarkovOracle(env=env, min_norm=min_norm)}

    def next_subgoal(info):
        for i in range(u._num_cubes):
            target = u._data.mocap_pos[u._cube_target_mocap_ids[i]].copy()
            if np.linalg.norm(info[f"privileged/block_{i}_pos"] - target) > 0.04:
                yaw = quat_yaw(u._data.mocap_quat[u._cube_target_mocap_ids[i]])
                return "cube", {"privileged/target_block": i, "privileged/target_block_pos": target,
                                "privileged/target_block_yaw": np.array([yaw])}
        for i in range(getattr(u, "_num_buttons", 0)):
            if info[f"privileged/button_{i}_state"] != u._target_button_states[i]:
                return "button", {"privileged/target_button": i, "privileged/target_button_state": u._target_button_states[i],
                                  "privileged/target_button_top_pos": u._data.site_xpos[u._button_site_ids[i]].copy()}
        if hasattr(u, "_target_drawer_pos") and abs(info["privileged/drawer_pos"][0] - u._target_drawer_pos) > 0.04:
            return "drawer", {"privileged/target_drawer_pos": np.array([u._target_drawer_pos]),
                              "privileged/target_drawer_handle_pos": u._data.site_xpos[u._drawer_target_site_id].copy()}
        if hasattr(u, "_target_window_pos") and abs(info["privileged/window_pos"][0] - u._target_window_pos) > 0.04:
            return "window", {"privileged/target_window_pos": np.array([u._target_window_pos]),
                              "privileged/target_window_handle_pos": u._data.site_xpos[u._window_target_site_id].copy()}
        return None, {}

    ob, info = env.reset(seed=seed)
    current, success, done = None, False, False
    while not done:
        kind, extra = next_subgoal(info)
        if kind is None:     # all subgoals met: step with a still arm so the env evaluates success
            action = np.zeros(env.action_space.shape)
        else:
            info = {**info, **extra}
            if kind != current:
                oracles[kind].reset(ob, info)
                current = kind
            action = np.clip(oracles[kind].select_action(ob, info), -1, 1)
        ob, _, terminated, truncated, info = env.step(action)
        success, done = bool(info["success"]), terminated or truncated
    env.close()
    return success


@pytest.mark.parametrize("kind", list(ENVS))
def test_oracle_reaches_task1_success(kind):
    assert task_oracle_success(ENVS[kind], seed=0)


def test_doing_nothing_does_not_succeed():
    """The success flag is not trivially on: a still arm fails task1 within a few steps."""
    import gymnasium
    env = gymnasium.make("scene-singletask-task1-v0")
    env.reset(seed=0)
    for _ in range(20):
        *_, info = env.step(np.zeros(5))
    assert not info["success"]


def test_missing_dataset_offline_fails_fast_naming_both_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(O, "host_reachable", lambda *a, **k: False)
    t0 = time.time()
    with pytest.raises(UserError) as e:
        O.load("scene-play-singletask-task1-v0", str(tmp_path))
    assert time.time() - t0 < 5
    assert "download_datasets" in str(e.value) and "python -m tasks.ogbench generate --env scene-play-v0" in str(e.value)


def tiny_agent_cfg(ckpt, substrate="gemma"):
    return {"seed": 0, "model": str(ckpt), "layers": "3", "substrate": substrate, "init": "pretrained", "input_scale": 1.0,
            "obs_dim": 10, "act_dim": 3, "obs_tokens": 4, "hidden": 16, "discount": 0.99, "expectile": 0.9,
            "temperature": 10.0}


def test_one_critic_pass_serves_v_and_q(gemma3_ckpt):
    """Observation tokens cannot see the action (causal), so V from the joint [o, a] pass equals the
    observation-only pass and does not move with the action; Q does. The policy has its own interface."""
    net = O.build(tiny_agent_cfg(gemma3_ckpt[0]), torch.device("cpu"))
    obs, a1, a2 = torch.randn(5, 10), torch.randn(5, 3), torch.randn(5, 3)
    v1, q1, pi1 = net(obs, a1)
    v2, q2, pi2 = net(obs, a2)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(pi1, pi2)
    torch.testing.assert_close(v1, net.value(obs))
    torch.testing.assert_close(pi1, net.policy(obs))
    assert not torch.allclose(q1[0], q2[0])
    # 10 features in 4 chunks of 3 (2 zero-padded): chunk i of the observation only reaches token i
    assert net.actor_in.act is None and net.critic_in.act is not None
    assert not any(p is q for p in net.actor_in.parameters() for q in net.critic_in.parameters())
    h0 = net.critic_in(obs)
    obs2 = obs.clone()
    obs2[:, 9] += 1.0                       # last feature lives in the 4th chunk
    h1 = net.critic_in(obs2)
    assert torch.equal(h0[:, :3], h1[:, :3]) and not torch.equal(h0[:, 3], h1[:, 3])


def test_iql_losses_learn_and_target_lags(gemma3_ckpt):
    torch.manual_seed(0)
    for substrate in ("gemma", "mlp"):
        cfg = tiny_agent_cfg(gemma3_ckpt[0], substrate)
        net = O.build(cfg, torch.device("cpu"))
        batch = {"observations": torch.randn(64, 10), "actions": torch.rand(64, 3) * 2 - 1,
                 "next_observations": torch.randn(64, 10), "rewards": -torch.rand(64), "masks": torch.ones(64)}
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-3)
        before = [tp.clone() for _, tp in net.target_pairs()]
        first = None
        for _ in range(60):
            loss, logs = O.iql_losses(net, batch, cfg)
            first = first if first is not None else logs
            opt.zero_grad()
            loss.backward()
            opt.step()
            O.polyak(net, 0.005)
        # the AWR objective falls; plain bc_mse need not: FQL's 0.01-scaled last layer starts the policy
        # mean at ~0, already the MSE optimum for these uniform random actions
        assert logs["critic_loss"] < first["critic_loss"] and logs["actor_loss"] < 0.5 * first["actor_loss"], substrate
        assert max((tp - b).abs().max().item() for (_, tp), b in zip(net.target_pairs(), before)) > 0


def test_polyak_moves_the_target_by_tau():
    net = O.MLPIQL(2, 1, hidden=4, depth=1)
    with torch.no_grad():
        for p, tp in net.target_pairs():
            p.fill_(1.0), tp.fill_(0.0)
    O.polyak(net, 0.1)
    O.polyak(net, 0.1)
    assert all(torch.allclose(tp, torch.full_like(tp, 0.19)) for _, tp in net.target_pairs())


def test_expectile_value_sits_above_the_mean():
    """With expectile 0.9, V fits the upper part of a spread of Q targets (what makes IQL optimistic)."""
    net = O.MLPIQL(2, 1, hidden=32, depth=2)
    cfg = {"discount": 0.0, "expectile": 0.9, "temperature": 0.0}
    obs = torch.zeros(256, 2)
    act = torch.linspace(-1, 1, 256).unsqueeze(1)
    net.target = lambda o, a: a.squeeze(-1)   # target Q = the action: targets spread evenly over [-1, 1]
    opt = torch.optim.Adam(net.v.parameters(), 1e-2)
    batch = {"observations": obs, "actions": act, "next_observations": obs, "rewards": torch.zeros(256), "masks": torch.zeros(256)}
    for _ in range(300):
        loss, _ = O.iql_losses(net, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    v = net.value(obs[:1]).item()
    assert 0.4 < v < 0.6   # the 0.9-expectile of U(-1, 1) is exactly 0.5; the mean would be 0


def test_evaluation_in_batches_keeps_episode_seeds():
    """--eval-batch bounds the live envs (RAM); every episode keeps its own seed and length."""
    net = O.MLPIQL(40, 5, hidden=8, depth=1)
    cfg = {"env": ENVS["scene"], "obs_mean": [0.0] * 40, "obs_std": [1.0] * 40}
    whole = O.success_rate(net, cfg, 3, 123, torch.device("cpu"), max_steps=4)
    parts = O.success_rate(net, cfg, 3, 123, torch.device("cpu"), max_steps=4, batch=2)
    assert whole["lengths"] == parts["lengths"] == [4, 4, 4] and whole["successes"] == parts["successes"]
    assert all(-5 <= r <= 0 for r in whole["best_rewards"]) and whole["best_reward_mean"] >= whole["final_reward_mean"]
    assert len(O._ENV_POOL[("scene-singletask-task1-v0", "pre")]) >= 3   # built once, reused by the second call


def train_args(ckpt, data_dir, out, *extra):
    return ["train.py", "--task", "ogbench", "--env", ENVS["scene"], "--dataset-dir", str(data_dir),
            "--model", str(ckpt), "--layers", "3", "--input-scale", "1.0", "--hidden", "16", "--batch-size", "16",
            "--eval-episodes", "2", "--eval-batch", "1", "--out", str(out), *extra]


def test_train_evaluate_resume_and_ablate(gemma3_ckpt, data_dir, tmp_path):
    ckpt = gemma3_ckpt[0]
    run(*train_args(ckpt, data_dir, tmp_path / "full", "--steps", "6", "--eval-every", "3"))
    r = json.loads((tmp_path / "full" / "results.json").read_text())
    for key in ("config", "seed", "model", "slice", "trainable_params", "frozen_params", "git_commit", "wall_time_s",
                "history", "final", "last_three_mean", "condition", "body", "dataset_stats"):
        assert key in r, key
    assert r["slice"] == "3-3" and r["steps_done"] == 6 and len(r["history"]) == 2 and r["frozen_params"] > 0
    ev = r["history"][-1]["eval"]
    assert len(ev["successes"]) == 2 and all(0 < n <= 750 for n in ev["lengths"])   # two real episodes ran
    assert r["last_three_mean"] == np.mean([h["eval"]["success_rate"] for h in r["history"]])

    # evaluate.py: fresh episode seeds (stream 2), and the folder summary
    run("evaluate.py", "--ckpt", str(tmp_path / "full" / "last.pt"), "--episodes", "2", "--out", str(tmp_path / "ev.json"))
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["episode_seed_base"] == O.episode_seed_base(0, 2) and len(ev["successes"]) == 2 and ev["checkpoint_step"] == 6
    run("evaluate.py", "--aggregate", str(tmp_path / "full"), "--out", str(tmp_path / "summary_best.json"))
    rows = json.loads((tmp_path / "summary_best.json").read_text())["conditions"]
    assert rows[0]["task"] == "ogbench" and rows[0]["success"]["last_three_mean"]["values"] == [r["last_three_mean"]]

    # resume: 3 steps, then 3 more from last.pt == 6 straight
    run(*train_args(ckpt, data_dir, tmp_path / "cut", "--steps", "3", "--eval-every", "3"))
    run(*train_args(ckpt, data_dir, tmp_path / "cut", "--steps", "6", "--eval-every", "3", "--resume"))
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and set(a["model"]) == set(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert any(k.startswith("target_") for k in a["model"])          # the target critic is saved too
    out = run(*train_args(ckpt, data_dir, tmp_path / "cut", "--steps", "9", "--expectile", "0.7", "--resume"), check=False)
    assert out.returncode == 2 and "expectile=0.9" in out.stderr

    # ablation: every head of the slice, same episode seeds each time, per-episode outcomes kept
    run("ablate.py", "--ckpt", str(tmp_path / "full" / "last.pt"), "--episodes", "2", "--max-ep-len", "20",
        "--out", str(tmp_path / "abl.json"))
    abl = json.loads((tmp_path / "abl.json").read_text())
    assert abl["metric"] == "success_rate" and abl["higher_is_better"] and len(abl["heads"]) == 4
    assert all(len(h["successes"]) == 2 and 0 <= h["mcnemar_p"] <= 1 and len(h["best_rewards"]) == 2
               for h in abl["heads"].values())
    assert abl["episode_seed_base"] == O.episode_seed_base(0, 2)


def test_mlp_baseline_trains_without_a_model(data_dir, tmp_path):
    run("train.py", "--task", "ogbench", "--env", ENVS["cube-double"], "--dataset-dir", str(data_dir), "--substrate", "mlp",
        "--batch-size", "16", "--steps", "4", "--eval-every", "4", "--eval-episodes", "2", "--out", str(tmp_path / "mlp"))
    r = json.loads((tmp_path / "mlp" / "results.json").read_text())
    assert r["condition"] == "mlp" and r["frozen_params"] == 0 and r["model"] is None
    # FQL's IQL: V 4x512 + twin Q 4x512 + actor 4x512, observation 37 + action 5 (cube-double)
    assert 4 * 3 * 512 * 512 < r["trainable_params"] < 4 * 4 * 512 * 512 and r["config"]["obs_dim"] == 37
    assert r["target_params"] == 2 * (42 * 512 + 512 + 3 * (512 * 512 + 512) + 4 * 2 * 512 + 513)   # twin Q, LayerNorms
    out = run("ablate.py", "--ckpt", str(tmp_path / "mlp" / "last.pt"), "--episodes", "1", check=False)
    assert out.returncode == 2 and "nothing to ablate" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["--env", "scene-play-v0"], "single-task"),
    (["--obs-tokens", "0"], "--obs-tokens"),
    (["--eval-batch", "0"], "--eval-batch"),
    (["--substrate", "mlp", "--init", "random"], "--init random"),
])
def test_bad_input_one_line_exit_2(data_dir, tmp_path, args, message):
    out = run("train.py", "--task", "ogbench", "--dataset-dir", str(data_dir), "--out", str(tmp_path / "x"), *args, check=False)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr


@pytest.mark.embedded
def test_embedded_gemma_iql_end_to_end(data_dir, tmp_path):
    """The real 270M, layer 8: a few IQL steps and a two-episode evaluation in MuJoCo."""
    run("train.py", "--task", "ogbench", "--env", ENVS["scene"], "--dataset-dir", str(data_dir), "--batch-size", "32",
        "--steps", "3", "--eval-every", "3", "--eval-episodes", "2", "--out", str(tmp_path / "run"))
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["slice"] == "8-8" and r["body"]["input_scale"] > 1 and r["frozen_params"] > 5_000_000
    assert len(r["final"]["eval"]["successes"]) == 2


def test_bf16_slice_trains(gemma3_ckpt, data_dir, tmp_path):
    out = tmp_path / "bf16"
    run(*train_args(gemma3_ckpt[0], data_dir, out, "--steps", "2", "--eval-every", "2", "--eval-episodes", "1", "--dtype", "bf16"))
    r = json.loads((out / "results.json").read_text())
    assert r["body"]["dtype"] == "bf16" and r["steps_done"] == 2


# ----------------------------------------------------------------------------- parity with FQL's IQL

def test_mlp_layer_order_matches_fql():
    """FQL's MLP: Dense -> GELU -> LayerNorm per hidden layer, a plain Dense at the end."""
    net = O.MLPIQL(obs_dim=7, act_dim=3, hidden=16, depth=4)
    kinds = [type(m).__name__ for m in net.v]
    assert kinds == ["Linear", "GELU", "LayerNorm"] * 4 + ["Linear"]
    assert [type(m).__name__ for m in net.pi] == ["Linear", "GELU"] * 4 + ["Linear"]   # no LayerNorm in the actor
    assert all(m.approximate == "tanh" for m in net.v if isinstance(m, torch.nn.GELU))   # flax's nn.gelu


def test_init_matches_fql_variance_scaling():
    """Kernels: variance_scaling(1, 'fan_avg', 'uniform') = U(-a, a), a = sqrt(6 / (fan_in + fan_out));
    biases zero; the actor's last layer at scale 0.01 (a ten times smaller)."""
    torch.manual_seed(0)
    net = O.MLPIQL(obs_dim=300, act_dim=200, hidden=512, depth=4)
    for layer in [m for m in net.modules() if isinstance(m, torch.nn.Linear)]:
        assert torch.count_nonzero(layer.bias) == 0
    hidden = net.v[3]                      # a 512 x 512 hidden Dense
    a = (6 / (512 + 512)) ** 0.5
    assert hidden.weight.abs().max() <= a and hidden.weight.abs().max() > 0.99 * a
    assert abs(hidden.weight.var().item() - a * a / 3) < 0.05 * a * a / 3
    last = net.pi[-1]
    a_last = 0.1 * (6 / (512 + 200)) ** 0.5
    assert last.weight.abs().max() <= a_last and last.weight.abs().max() > 0.99 * a_last
    # the frozen-slice agent's actor gets the same small last layer
    assert O.mlp([8, 4, 2], final_scale=0.01)[-1].weight.abs().max() <= 0.1 * (6 / 6) ** 0.5


@pytest.mark.parametrize("timing", ["pre", "post"])
def test_success_timing_reaches_the_env(timing):
    O.need_ogbench()
    (env,) = O.task_envs(O.split_name(ENVS["scene"])[1], 1, timing)
    assert env.unwrapped._success_timing == timing


def test_fql_budget_is_one_flag(data_dir, tmp_path):
    args = O.get_parser().parse_args(["--fql-budget", "--success-timing", "post"])
    assert args.fql_budget and args.success_timing == "post"
    out = run("train.py", "--task", "ogbench", "--dataset-dir", str(data_dir), "--substrate", "mlp", "--fql-budget",
              "--steps", "5", "--out", str(tmp_path / "x"), "--batch-size", "0", check=False)
    assert out.returncode == 2 and "--batch-size" in out.stderr    # flags still checked; budget set before


def test_statistics_control_trains(gemma3_ckpt, data_dir, tmp_path):
    out = tmp_path / "shuffled"
    run(*train_args(gemma3_ckpt[0], data_dir, out, "--steps", "2", "--eval-every", "2", "--eval-episodes", "1",
                    "--init", "shuffled"))
    r = json.loads((out / "results.json").read_text())
    assert r["body"]["init"] == "shuffled" and r["body"]["regime"]["stream_change"] > 0


def test_resume_refuses_another_input_scale_and_evaluate_uses_the_stored_one(gemma3_ckpt, data_dir, tmp_path):
    out = tmp_path / "scale"
    run(*train_args(gemma3_ckpt[0], data_dir, out, "--steps", "2", "--eval-every", "2", "--eval-episodes", "1"))
    state = torch.load(out / "last.pt", weights_only=True)
    state["body"]["input_scale"] = 1.5
    torch.save(state, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    res = run(*train_args(gemma3_ckpt[0], data_dir, out, "--steps", "4", "--eval-every", "2", "--eval-episodes", "1",
                          "--resume"), check=False)
    assert res.returncode == 2 and "input scale 1.5" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (out / "last.pt").read_bytes() == before
    net, _ = O.load_trained(out / "last.pt")
    assert net.info["input_scale"] == 1.5
    assert all(float(t.in_scale) == 1.5 for t in (net.critic_in, net.actor_in))


def test_shared_target_reads_the_online_pass_and_averages_only_the_q_heads(gemma3_ckpt):
    cfg = {**tiny_agent_cfg(gemma3_ckpt[0]), "target": "shared"}
    net = O.build(cfg, torch.device("cpu"))
    assert net.target_critic_in is None
    pairs = net.target_pairs()
    assert len(pairs) == len(list(net.q.parameters())) and all(not tp.requires_grad for _, tp in pairs)
    obs, act = torch.randn(6, 10), torch.rand(6, 3) * 2 - 1
    v, qs, mean, h = net(obs, act, with_trunk=True)
    with torch.no_grad():
        for p, tp in pairs:
            tp.copy_(p)                                  # target heads = online heads
    torch.testing.assert_close(net.target(obs, act, trunk=h), torch.min(*qs))
    # one pass of the slice fewer per step than the separate target
    calls = []
    hook = net.body.register_forward_hook(lambda *a: calls.append(1))
    batch = {"observations": obs, "actions": act, "next_observations": torch.randn(6, 10), "rewards": -torch.rand(6),
             "masks": torch.ones(6)}
    O.iql_losses(net, batch, cfg)
    shared_calls = len(calls)
    hook.remove()
    ref = O.build(tiny_agent_cfg(gemma3_ckpt[0]), torch.device("cpu"))
    calls.clear()
    ref.body.register_forward_hook(lambda *a: calls.append(1))
    O.iql_losses(ref, batch, tiny_agent_cfg(gemma3_ckpt[0]))
    assert shared_calls == len(calls) - 1
    # it learns, and its target lags
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-3)
    first = None
    for _ in range(40):
        loss, logs = O.iql_losses(net, batch, cfg)
        first = first or logs
        opt.zero_grad()
        loss.backward()
        opt.step()
        O.polyak(net, 0.005)
    assert logs["critic_loss"] < first["critic_loss"]
    assert any(not torch.equal(p, tp) for p, tp in net.target_pairs())


def test_shared_target_refused_for_the_mlp(data_dir, tmp_path):
    res = run(*train_args("unused", data_dir, tmp_path / "x", "--substrate", "mlp", "--target", "shared"), check=False)
    assert res.returncode == 2 and "--target shared" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_results_name_the_data_file_and_resume_refuses_another(data_dir, tmp_path):
    """The training file's hash is in the results, and a run never continues on another file."""
    data, out = tmp_path / "data", tmp_path / "hash"
    data.mkdir()
    for f in data_dir.glob("scene-*.npz"):
        (data / f.name).write_bytes(f.read_bytes())
    common = ["train.py", "--task", "ogbench", "--env", ENVS["scene"], "--dataset-dir", str(data), "--substrate", "mlp",
              "--batch-size", "8", "--eval-every", "2", "--eval-episodes", "1", "--out", str(out)]
    run(*common, "--steps", "2")
    r = json.loads((out / "results.json").read_text())
    assert r["dataset_stats"]["sha256"] == O.data_file_sha256(ENVS["scene"], str(data))
    # the same file with half its training transitions: the hash changes and --resume refuses
    train_file = data / "scene-play-v0.npz"
    arrays = dict(np.load(train_file))
    np.savez_compressed(train_file, **{k: v[: len(v) // 2] for k, v in arrays.items()})
    before = (out / "last.pt").read_bytes()
    res = run(*common, "--steps", "4", "--resume", check=False)
    assert res.returncode == 2 and "another" in res.stderr and "sha256" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and (out / "last.pt").read_bytes() == before


def fake_run(folder, successes_per_eval, sha="abc", seed_base=1000):
    folder.mkdir(parents=True)
    history = [{"step": 100 * (i + 1), "eval": {"successes": s}} for i, s in enumerate(successes_per_eval)]
    (folder / "results.json").write_text(json.dumps({
        "condition": "x", "metric": "success_rate", "steps_done": 100 * len(history), "history": history,
        "dataset_stats": {"sha256": sha}, "eval": {"episode_seed_base": seed_base}}))
    return folder


def test_compare_pairs_the_last_evaluations_episode_by_episode(tmp_path):
    a = fake_run(tmp_path / "pre", [[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    b = fake_run(tmp_path / "ctl", [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    out = O.compare([str(a), str(b), "--out", str(tmp_path / "c.json")])
    v = out["versus_reference"]["ctl"]
    assert v["steps"] == [200, 300, 400] and v["episodes"] == 12     # the first evaluation is not pooled
    assert (v["reference_only"], v["other_only"]) == (9, 0) and v["difference"] == pytest.approx(9 / 12)
    assert v["mcnemar_exact_p"] == pytest.approx(2 * 0.5 ** 9)          # exact binomial, 0 of 9 discordant, two-sided
    first = out["runs"]["pre"]["evaluations"][0]
    assert first["success_rate"] == 0 and first["ci95"][0] == 0 and 0.5 < first["ci95"][1] < 0.61   # exact: 1 - 0.025^(1/4)
    assert json.loads((tmp_path / "c.json").read_text()) == out


@pytest.mark.parametrize("kw,message", [({"sha": "other"}, "different data"), ({"seed_base": 7}, "different episode seeds")])
def test_compare_refuses_runs_that_do_not_pair(tmp_path, kw, message):
    a = fake_run(tmp_path / "a", [[1, 0]])
    b = fake_run(tmp_path / "b", [[1, 0]], **kw)
    with pytest.raises(UserError, match=message):
        O.compare([str(a), str(b)])


def test_success_counts_per_episode():
    terminals = np.array([0, 0, 1, 0, 0, 0, 1, 0, 1])
    masks = np.array([1, 0, 0, 1, 1, 1, 1, 1, 0])       # episode 1 reaches the goal at step 1, episode 3 at step 1
    c = O.success_counts(terminals, masks)
    assert c == {"transitions": 9, "episodes": 3, "success_transitions": 3, "success_fraction": 3 / 9,
                 "episodes_reaching_success": 2, "median_first_success_step": 1.0}
    none = O.success_counts(terminals, np.ones(9))
    assert none["episodes_reaching_success"] == 0 and none["median_first_success_step"] is None
    assert O.success_counts(terminals[:-1], masks[:-1])["episodes"] == 3      # an unfinished last episode counts


def test_check_reads_the_training_data(data_dir, tmp_path):
    out = tmp_path / "check.json"
    run("-m", "tasks.ogbench", "check", ENVS["cube-double"], "--dataset-dir", str(data_dir), "--out", str(out))
    row = json.loads(out.read_text())[ENVS["cube-double"]]
    _, train, _ = O.load(ENVS["cube-double"], str(data_dir))
    assert row["train"]["episodes"] == 2 and row["train"]["transitions"] == len(train["masks"])
    assert row["train"]["success_transitions"] == int((train["masks"] == 0).sum())
    assert row["dataset_sha256"] == O.data_file_sha256(ENVS["cube-double"], str(data_dir))


def seed_run(folder, seed, per_eval, sha="abc", planned=None, commit="c1"):
    """results.json of one seed as train.py writes it: per_eval is the list of 0/1 outcomes at each
    evaluation (every 2,500 steps), all on the seed's training-time episodes 10000 * seed + 1000 + i."""
    folder.mkdir(parents=True)
    base = 10_000 * seed + 1000
    history = [{"step": 2500 * (i + 1), "eval": {"successes": s, "episode_seed_base": base}} for i, s in enumerate(per_eval)]
    (folder / "results.json").write_text(json.dumps({
        "condition": "x", "metric": "success_rate", "seed": seed, "steps_done": 2500 * len(per_eval),
        "config": {"steps": planned or 2500 * len(per_eval)}, "wall_time_s": 100.0 * (seed + 1), "git_commit": commit,
        "history": history, "dataset_stats": {"sha256": sha}, "eval": {"episode_seed_base": base}}))
    return folder


def three_seeds(root, hits=None, **kw):
    """pretrained: 3/4, 2/4, 1/4 at each of the last three evaluations of seeds 0-2; control 2/4, 2/4, 0/4."""
    hits = hits or {"L8_pretrained": [3, 2, 1], "L8_random-init_scale1": [2, 2, 0]}
    runs = []
    for cond, per_seed in hits.items():
        for seed, k in enumerate(per_seed):
            outcome = [1] * k + [0] * (4 - k)
            runs.append(str(seed_run(root / f"{cond}__{seed}", seed, [[1, 1, 1, 1]] + [outcome] * 3, **kw)))
    return runs


def test_seeds_summarises_over_training_seeds(tmp_path):
    from scipy import stats as sps
    runs = three_seeds(tmp_path / "runs")
    out = O.seeds(runs + ["--reference", "L8_pretrained", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(out))
    assert out["steps"] == [5000, 7500, 10000]                       # the first evaluation is not among the last three
    run0 = out["runs"]["L8_pretrained__0"]
    assert run0["success"] == [0.75] * 3 and run0["mean"] == 0.75 and run0["finished"]
    pre = out["conditions"]["L8_pretrained"]
    assert pre["seeds"] == [0, 1, 2] and pre["values"] == [0.75, 0.5, 0.25] and pre["mean"] == pytest.approx(0.5)
    half = sps.t.ppf(0.975, 2) * 0.25 / 3 ** 0.5                     # t interval: sd 0.25 over n = 3
    assert pre["ci95"] == pytest.approx([0.5 - half, 0.5 + half]) and pre["wall_time_s"] == 600.0 and pre["one_code_version"]
    d = out["differences"]["L8_random-init_scale1"]
    assert d["values"] == pytest.approx([0.25, 0.0, 0.25]) and d["mean"] == pytest.approx(1 / 6)
    r = sps.ttest_rel([0.75, 0.5, 0.25], [0.5, 0.5, 0.0])
    assert d["paired_t"]["p"] == pytest.approx(r.pvalue) and d["paired_t"]["df"] == 2
    assert d["ci95"][0] < 0 < d["ci95"][1] and d["verdict"] == "not separated"
    mc = out["between_runs"]["L8_random-init_scale1"]
    assert mc["per_seed"]["0"] == {"episodes": 12, "reference_only": 3, "other_only": 0, "mcnemar_exact_p": 0.25}
    assert mc["pooled"]["episodes"] == 36 and (mc["pooled"]["reference_only"], mc["pooled"]["other_only"]) == (6, 0)
    assert "runs, not the conditions" in out["notes"]["between_runs"]
    ep = out["episodes"]
    assert ep["repeat_across_evaluations"] and ep["episode_seed_base_per_seed"] == {"0": 1000, "1": 11000, "2": 21000}
    # a clear gap over seeds is called so
    wide = three_seeds(tmp_path / "wide")
    for seed in range(3):
        f = tmp_path / "wide" / f"L8_random-init_scale1__{seed}" / "results.json"
        r = json.loads(f.read_text())
        for h in r["history"]:
            h["eval"]["successes"] = [0, 0, 0, 0] if seed else [0, 0, 0, 1]
        f.write_text(json.dumps(r))
    assert O.seeds(wide)["differences"]["L8_random-init_scale1"]["verdict"] == "L8_pretrained ahead"


def test_seeds_uses_the_steps_every_run_reached(tmp_path):
    runs = three_seeds(tmp_path / "runs")
    longer = seed_run(tmp_path / "runs" / "mlp__0", 0, [[0, 0, 0, 0]] * 4 + [[1, 1, 1, 1]] * 2, planned=30000)
    out = O.seeds(runs + [str(longer)])
    assert out["up_to_step"] == 10000 and out["runs"]["mlp__0"]["success"] == [0.0] * 3
    assert not out["runs"]["mlp__0"]["finished"] and out["conditions"]["mlp"]["ci95"] is None     # one seed: no interval
    assert out["differences"]["mlp"]["verdict"] == "one seed: no test" and out["differences"]["mlp"]["paired_t"] is None
    assert O.seeds([str(longer), "--up-to", "15000"])["runs"]["mlp__0"]["success"] == [0.0, 1.0, 1.0]
    with pytest.raises(UserError, match="different steps"):         # the 10,000-step runs cannot join it there
        O.seeds(runs[:1] + [str(longer), "--up-to", "15000"])


@pytest.mark.parametrize("change,message", [
    ({"sha": "other"}, "one recorded data file"),
    ({"dup": True}, "two runs of L8_pretrained with seed 0"),
    ({"reference": "nope"}, "--reference 'nope'"),
    ({"steps": True}, "different steps"),
    ({"dtype": True}, "different dtypes"),
])
def test_seeds_refuses_what_does_not_summarise(tmp_path, change, message):
    runs = three_seeds(tmp_path / "runs")
    if "sha" in change:
        runs.append(str(seed_run(tmp_path / "runs" / "mlp__0", 0, [[1, 0]] * 4, sha=change["sha"])))
    if "dup" in change:
        runs.append(str(seed_run(tmp_path / "runs" / "L8_pretrained__0b", 0, [[1, 0]] * 4)))
    if "steps" in change:       # a run evaluated at other steps cannot share the last three evaluations
        f = tmp_path / "runs" / "L8_pretrained__0" / "results.json"
        r = json.loads(f.read_text())
        r["history"][-2]["step"] = 8000
        f.write_text(json.dumps(r))
    if "dtype" in change:       # one seed's slice in another precision: not the same condition
        f = tmp_path / "runs" / "L8_pretrained__1" / "results.json"
        r = json.loads(f.read_text())
        r["config"]["dtype"] = "bf16"
        f.write_text(json.dumps(r))
    res = run("-m", "tasks.ogbench", "seeds", *runs, "--reference", change.get("reference", "L8_pretrained"), check=False)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_the_three_seed_readme_section_renders_from_the_summary(tmp_path):
    """The section and the finding waiting for summary.json render as they stand (nothing typed by hand)."""
    import report
    import tables
    runs = three_seeds(tmp_path / "runs", {"L8_pretrained": [3, 2, 1], "L8_random-init_scale1": [2, 2, 0], "mlp": [1, 1, 0]})
    results = tmp_path / "results"
    (results / "ogbench" / "scene_3seeds").mkdir(parents=True)
    shutil.copytree(report.REPO / "results" / "bench", results / "bench")      # the dtype measurement it cites
    summary = O.seeds(runs + ["--out", str(results / "ogbench" / "scene_3seeds" / "summary.json")])
    template = (report.REPO / "results" / "ogbench" / "scene_3seeds" / "readme_section.tmpl.md").read_text()
    _, section, finding = template.split("\n---\n")
    for i, part in enumerate((section, finding)):
        src = tmp_path / f"part{i}.src.md"
        src.write_text("<!-- alias s3 = ogbench/scene_3seeds/summary.json -->\n" + part)
        text = report.render(src, results)
        assert "{{" not in text and "not separated" in text
    assert tables.seeds_table(summary) in report.render(tmp_path / "part0.src.md", results)
