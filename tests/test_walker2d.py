"""tasks/walker2d.py: stand-in recording, training, batched evaluation, resume, data loading, scores."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("gymnasium")
pytest.importorskip("minari")
import model as M  # noqa: E402
from runs import UserError
from tasks import walker2d as W  # noqa: E402


def run(*args, minari_dir, check=True):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_dir), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "tasks.walker2d", *args], cwd=REPO, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """Three short random-policy episodes as a local Minari dataset."""
    path = tmp_path_factory.mktemp("minari")
    out = run("record", "--id", "local/w2d-test-v0", "--episodes", "3", "--policy", "random", "--seed", "5", minari_dir=path)
    assert "3 episodes" in out.stdout and "stand-in" in out.stdout
    return path


def train_args(ckpt, out, *extra):
    return ["train", "--model", str(ckpt), "--layers", "2-5", "--input-scale", "1.0", "--dataset", "local/w2d-test-v0",
            "--batch-size", "8", "--context", "5", "--warmup", "1", "--lr", "1e-3", "--eval-episodes", "1",
            "--max-ep-len", "20", "--out", str(out), *extra]


def test_normalised_score_by_hand():
    assert W.d4rl_score(1.629008) == pytest.approx(0.0, abs=1e-9)
    assert W.d4rl_score(4592.3) == pytest.approx(100.0, abs=1e-9)
    assert W.d4rl_score(2296.964504) == pytest.approx(50.0, abs=1e-9)    # the midpoint of the two references
    assert W.d4rl_score(2296.96) == pytest.approx(49.9999019, abs=1e-6)  # 100 * 2295.330992 / 4590.670992
    index = REPO / "data" / "paper" / "walker2d_episodes_index.json"
    # the paper's own episodes: return 3613.67 is reported as score 78.68
    for ep in json.loads(index.read_text())["episodes"]:
        assert W.d4rl_score(ep["ep_return"]) == pytest.approx(ep["score"], abs=0.006), ep


def test_official_dt_count_matches_a_built_gpt2():
    from transformers import GPT2Config, GPT2Model
    gpt = GPT2Model(GPT2Config(vocab_size=1, n_embd=128, n_layer=3, n_head=1, n_inner=512, n_positions=1024))
    d, nn = 128, torch.nn
    wiring = [nn.Embedding(1000, d), nn.Linear(1, d), nn.Linear(17, d), nn.Linear(6, d), nn.LayerNorm(d),
              nn.Linear(d, 17), nn.Linear(d, 6), nn.Linear(d, 1)]
    n = sum(p.numel() for k, p in gpt.named_parameters() if not k.startswith("wpe"))  # DT removed the position table
    n += sum(p.numel() for m in wiring for p in m.parameters())
    assert W.official_dt_params() == n == 730_008


def test_d4rl_hdf5_episodes_rtg_and_windows(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    n = 8
    with h5py.File(tmp_path / "tiny.hdf5", "w") as f:
        f["observations"] = rng.normal(size=(n, 17))
        f["actions"] = rng.uniform(-1, 1, size=(n, 6))
        f["rewards"] = np.arange(1, n + 1, dtype=np.float64)
        f["terminals"] = np.array([0, 0, 1, 0, 0, 0, 0, 0], bool)   # episode 1 falls at step 2
        f["timeouts"] = np.array([0, 0, 0, 0, 0, 1, 0, 0], bool)    # episode 2 times out at step 5; 2 steps left over
    eps = W.load_d4rl_hdf5(tmp_path / "tiny.hdf5")
    assert [len(e["rewards"]) for e in eps] == [3, 3, 2]
    data = W.prepare(eps)
    assert torch.allclose(data["rtg"], torch.tensor([6, 5, 3, 15, 11, 6, 15, 8]) / 1000.0)
    assert data["timesteps"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert np.allclose(np.array(data["state_mean"]), np.concatenate([e["observations"] for e in eps]).mean(0), atol=1e-5)
    s, a, r, ts, mask = W.sample_batch(data, 64, 4, torch.Generator().manual_seed(0))
    assert mask[:, 0].all() and not mask[:, 3].any()  # no episode is longer than 3 steps
    assert (r[~mask] == 0).all() and (s[~mask] == 0).all()
    # every real step of a window continues its episode: the timestep goes up by one
    assert ((ts[:, 1:] - ts[:, :-1])[mask[:, 1:]] == 1).all()
    with pytest.raises(UserError, match="missing timeouts"):
        with h5py.File(tmp_path / "bad.hdf5", "w") as f:
            for k in ("observations", "actions", "rewards", "terminals"):
                f[k] = np.zeros(3)
        W.load_d4rl_hdf5(tmp_path / "bad.hdf5")


def test_train_evaluate_and_results(gemma3_ckpt, standin, tmp_path):
    out = tmp_path / "run"
    run(*train_args(gemma3_ckpt[0], out, "--steps", "60", "--eval-every", "30", "--targets", "5000,2500"), minari_dir=standin)
    r = json.loads((out / "results.json").read_text())
    for key in ("config", "seed", "model", "slice", "trainable_params", "frozen_params", "official_dt_trainable_params",
                "trainable_ratio_to_official_dt", "dataset", "dataset_is_standin", "normalisation", "git_commit",
                "wall_time_s", "device", "history", "final", "best"):
        assert key in r, key
    assert r["dataset"] == "local/w2d-test-v0" and r["dataset_is_standin"] is True and "STAND-IN" in r["dataset_note"]
    assert r["normalisation"]["ref_min_return"] == 1.629008 and r["normalisation"]["ref_max_return"] == 4592.3
    assert [h["step"] for h in r["history"]] == [30, 60] and r["final"]["step"] == 60
    assert r["history"][-1]["loss"] < r["history"][0]["loss"], r["history"]
    assert r["official_dt_trainable_params"] == 730_008
    assert r["trainable_ratio_to_official_dt"] == pytest.approx(r["trainable_params"] / 730_008)
    for target in ("5000", "2500"):
        s = r["final"]["scores"][target]
        assert len(s["returns"]) == 1 and 1 <= s["lengths"][0] <= 20
        assert s["score_mean"] == pytest.approx(W.d4rl_score(s["returns"][0]))
    state = torch.load(out / "best.pt", weights_only=True)
    assert set(state["model"]) == {"embed_time.weight", "embed_return.weight", "embed_return.bias", "embed_state.weight",
                                   "embed_state.bias", "embed_action.weight", "embed_action.bias", "embed_ln.weight",
                                   "embed_ln.bias", "predict_action.weight", "predict_action.bias"}
    d = 64  # the tiny Gemma's width: timestep table, three embeddings, LayerNorm, action head
    assert r["trainable_params"] == 1000 * d + 2 * d + 18 * d + 7 * d + 2 * d + (d + 1) * 6

    # evaluate_checkpoint rebuilds the model from the checkpoint alone and is deterministic (paired)
    a = W.evaluate_checkpoint(out / "best.pt", episodes=2, targets=(5000,), seed=7, max_ep_len=15, device="cpu")
    b = W.evaluate_checkpoint(out / "best.pt", episodes=2, targets=(5000,), seed=7, max_ep_len=15, device="cpu")
    assert a["scores"] == b["scores"] and a["dataset_is_standin"] is True and a["checkpoint_step"] == r["best"]["step"]
    assert len(a["scores"]["5000"]["returns"]) == 2 and max(a["scores"]["5000"]["lengths"]) <= 15

    # evaluate.py --ckpt hands walker2d checkpoints to evaluate_checkpoint (fresh episode seeds)
    ev = subprocess.run([sys.executable, "evaluate.py", "--ckpt", str(out / "best.pt"), "--episodes", "1", "--out",
                         str(tmp_path / "ev.json")], cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert ev.returncode == 0, ev.stderr[-2000:]
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["episode_seed_base"] == W.episode_seed_base(0, 2) and set(ev["scores_mean"]) == {"5000", "2500"}

    # ablate.py's route: zeroing heads of the body changes the actions
    net, body, st = W.load_trained(out / "best.pt", "cpu")
    net.eval()
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 5, 17, generator=g), torch.rand(4, 5, 6, generator=g), torch.rand(4, 5, generator=g),
             torch.arange(5).expand(4, -1))
    with torch.no_grad():
        intact = net(*batch)
        M.set_ablation(body, {2: {0, 1, 2, 3}, 3: {0, 1}})
        ablated = net(*batch)
        M.set_ablation(body, {})
        again = net(*batch)
    assert not torch.allclose(intact, ablated) and torch.equal(intact, again)

    # ablate.py on the checkpoint: a head set and a per-head sweep, scored on paired episodes
    env = {**os.environ, "MINARI_DATASETS_PATH": str(standin), "OMP_NUM_THREADS": "1"}
    for extra, name in ((["--heads", "L2.0,L3.1"], "set.json"), ([], "sweep.json")):
        subprocess.run([sys.executable, "ablate.py", "--ckpt", str(out / "best.pt"), "--episodes", "1", "--max-ep-len", "10",
                        "--out", str(tmp_path / name), *extra], cwd=REPO, env=env, check=True, capture_output=True)
    a = json.loads((tmp_path / "set.json").read_text())
    assert a["metric"] == "d4rl_normalised_score" and a["higher_is_better"] and a["ablated_heads"] == ["L2.0", "L3.1"]
    assert a["impact"] == pytest.approx(a["intact"] - a["ablated"]) and a["dataset_is_standin"] is True
    sw = json.loads((tmp_path / "sweep.json").read_text())
    assert len(sw["heads"]) == 16 and sorted(h["rank"] for h in sw["heads"].values()) == list(range(1, 17))


def test_train_py_dispatches_to_walker2d(gemma3_ckpt, standin, tmp_path):
    args = train_args(gemma3_ckpt[0], tmp_path / "run", "--steps", "2", "--eval-every", "2", "--max-ep-len", "5")[1:]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(standin), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "train.py", "--task", "walker2d", *args], cwd=REPO, env=env, check=True, capture_output=True)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps_done"] == 2


def test_resume_matches_uninterrupted(gemma3_ckpt, standin, tmp_path):
    ckpt = gemma3_ckpt[0]
    run(*train_args(ckpt, tmp_path / "full", "--steps", "20", "--eval-every", "10"), minari_dir=standin)
    run(*train_args(ckpt, tmp_path / "cut", "--steps", "10", "--eval-every", "10"), minari_dir=standin)
    run(*train_args(ckpt, tmp_path / "cut", "--steps", "20", "--eval-every", "10", "--resume"), minari_dir=standin)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert ra["history"] == rb["history"]
    out = run(*train_args(ckpt, tmp_path / "cut", "--steps", "30", "--context", "6", "--resume"), minari_dir=standin, check=False)
    assert out.returncode == 2 and "different context=5" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "--dataset", "local/no-such-dataset-v0"], "walker2d_medium make"),
    (["train", "--d4rl-hdf5", "/no/such/file.hdf5"], "no such file"),
    (["train", "--targets", "high"], "--targets"),
    (["record", "--id", "local/w2d-test-v0"], "already exists"),
    (["fly"], "usage"),
])
def test_bad_input_one_line_exit_2(gemma3_ckpt, standin, tmp_path, args, message):
    if args[0] == "train":
        args = args + ["--model", str(gemma3_ckpt[0]), "--input-scale", "1.0", "--out", str(tmp_path / "x")]
    t0 = time.time()
    out = run(*args, minari_dir=standin, check=False)
    assert time.time() - t0 < 20  # offline, a missing dataset fails in seconds, not after minari's retries
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr
    if "no-such" in " ".join(args):
        assert "internet" in lines[0]
    assert not (tmp_path / "x" / "results.json").exists()


def test_bf16_slice_trains(gemma3_ckpt, standin, tmp_path):
    out = tmp_path / "bf16"
    run(*train_args(gemma3_ckpt[0], out, "--steps", "4", "--eval-every", "4", "--dtype", "bf16"), minari_dir=standin)
    r = json.loads((out / "results.json").read_text())
    assert r["body"]["dtype"] == "bf16" and r["steps_done"] == 4


def test_evaluation_env_follows_the_data(gemma3_ckpt, standin, tmp_path):
    """D4RL files come from the pre-v5 MuJoCo model: they are evaluated in Walker2d-v4; Minari data
    (collected in v5) in v5. The env id is recorded in the results."""
    assert W.eval_env_id({"d4rl_hdf5": "walker2d-medium-v2.hdf5"}) == "Walker2d-v4"
    assert W.eval_env_id({"d4rl_hdf5": None, "dataset": "mujoco/walker2d/medium-v0"}) == "Walker2d-v5"
    import gymnasium
    env = gymnasium.make("Walker2d-v4")
    assert env.observation_space.shape == (W.STATE_DIM,) and env.action_space.shape == (W.ACT_DIM,)
    env.close()
    out = tmp_path / "run"
    run(*train_args(gemma3_ckpt[0], out, "--steps", "2", "--eval-every", "2"), minari_dir=standin)
    r = json.loads((out / "results.json").read_text())
    assert r["eval"]["env"] == "Walker2d-v5"


def test_statistics_control_trains(gemma3_ckpt, standin, tmp_path):
    out = tmp_path / "matched"
    run(*train_args(gemma3_ckpt[0], out, "--steps", "2", "--eval-every", "2", "--init", "matched"), minari_dir=standin)
    r = json.loads((out / "results.json").read_text())
    assert r["body"]["init"] == "matched" and r["body"]["regime"]["stream_change"] > 0


def test_resume_refuses_another_input_scale_and_evaluate_uses_the_stored_one(gemma3_ckpt, standin, tmp_path):
    out = tmp_path / "scale"
    run(*train_args(gemma3_ckpt[0], out, "--steps", "2", "--eval-every", "2"), minari_dir=standin)
    state = torch.load(out / "last.pt", weights_only=True)
    state["body"]["input_scale"] = 1.5                    # as if the run had been calibrated differently
    torch.save(state, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    res = run(*train_args(gemma3_ckpt[0], out, "--steps", "4", "--eval-every", "2", "--resume"), minari_dir=standin, check=False)
    assert res.returncode == 2 and "input scale 1.5" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (out / "last.pt").read_bytes() == before
    net, _, _ = W.load_trained(out / "last.pt")
    assert float(net.in_scale) == 1.5 and net.info["input_scale"] == 1.5   # the checkpoint's number, not a fresh one


@pytest.mark.parametrize("layer", ["0", "5"])    # a sliding-window layer (window 4 tokens) and a full-attention one
def test_cached_evaluation_equals_the_full_window(gemma3_ckpt, layer):
    """A one-layer slice reuses earlier tokens' keys and values; the actions equal those of the pass
    over the whole context window, also after the window slides and as episodes end."""
    cfg = {"model": str(gemma3_ckpt[0]), "layers": layer, "substrate": "gemma", "init": "pretrained", "seed": 0,
           "input_scale": "1.0", "dropout": 0.1, "dtype": "fp32"}
    net, _ = W.build(cfg, torch.device("cpu"))
    net.eval()
    assert net.can_cache()
    B, T, K = 3, 9, 3
    g = torch.Generator().manual_seed(1)
    states, acts = torch.randn(B, T, W.STATE_DIM, generator=g), torch.rand(B, T, W.ACT_DIM, generator=g) * 2 - 1
    rtg = torch.rand(B, T, generator=g) * 5
    cache, rows = M.WindowCache(), torch.arange(B)
    with torch.no_grad():
        for t in range(T):
            if t == 6:                        # episode 1 ends: the cache follows the others
                rows = torch.tensor([0, 2])
                cache.select(torch.tensor([0, 2]))     # positions of episodes 0 and 2 among the cached rows
            lo, first = max(0, t - K + 1), max(t - 1, 0)
            a_t = acts.clone()
            a_t[:, t] = 0                     # the current action is not known yet
            steps = torch.arange(T).expand(B, -1)
            full = net(states[rows, lo:t + 1], a_t[rows, lo:t + 1], rtg[rows, lo:t + 1], steps[rows, lo:t + 1])[:, -1]
            cache.keep_last(max(0, 3 * t - 1 - 3 * lo))
            cached = net.cached_step(cache, states[rows, first:t + 1], a_t[rows, first:t + 1], rtg[rows, first:t + 1],
                                     steps[rows, first:t + 1], t)
            assert torch.allclose(cached, full, atol=1e-5), (t, (cached - full).abs().max())
            assert cache.length() == 3 * t + 2 - 3 * lo
    deep = W.build({**cfg, "layers": "0-1"}, torch.device("cpu"))[0]
    assert not deep.can_cache()            # two layers: a cached key would carry what the window cut


def test_dt_substrate_is_the_reference_decision_transformer():
    cfg = {"model": "unused", "layers": "6-10", "substrate": "dt", "init": "pretrained", "seed": 0,
           "input_scale": "auto", "dropout": 0.1, "dtype": "fp32"}
    net, body = W.build(cfg, torch.device("cpu"))
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    # the reference's count less what it builds but never trains: the state and return heads, one token row
    assert trainable == W.official_dt_params() - ((128 + 1) * 17 + (128 + 1)) - 128
    assert len(body.blocks) == 3 and body.blocks[0].n_heads == 1 and body.ln_f is not None and len(body.pos) == 0
    assert body.blocks[0].dropout == 0.1 and net.info["input_scale"] == 1.0 and not net.can_cache()
    x = torch.randn(2, 6, W.STATE_DIM), torch.zeros(2, 6, W.ACT_DIM), torch.ones(2, 6), torch.arange(6).expand(2, -1)
    net.train()
    assert not torch.equal(net(*x), net(*x))       # dropout inside the blocks while training
    net.eval()
    assert torch.equal(net(*x), net(*x))


def test_dt_run_and_warmup_scaled_to_the_budget(standin, tmp_path):
    out = tmp_path / "dt"
    run("train", "--substrate", "dt", "--dataset", "local/w2d-test-v0", "--batch-size", "8", "--context", "5",
        "--steps", "30", "--eval-every", "30", "--eval-episodes", "1", "--max-ep-len", "10", "--out", str(out), minari_dir=standin)
    r = json.loads((out / "results.json").read_text())
    assert r["condition"] == "dt" and r["frozen_params"] == 0 and r["config"]["warmup"] == 3   # a tenth of 30 steps
    res = run("train", "--substrate", "dt", "--init", "random", "--dataset", "local/w2d-test-v0", "--out", str(tmp_path / "x"),
              minari_dir=standin, check=False)
    assert res.returncode == 2 and "--substrate dt" in res.stderr


def fake_run(folder, condition, scores, seed_base=2000, dataset="local/w2d-medium-test-v0", last=True):
    """results.json + eval_best.json as train.py and evaluate.py write them, with chosen episode scores."""
    folder.mkdir(parents=True)
    per_target = {t: {"scores": s, "return_mean": 10.0, "lengths": [100] * len(s), "score_mean": float(np.mean(s))}
                  for t, s in scores.items()}
    r = {"metric": W.METRIC, "dataset": dataset, "condition": condition, "seed": 0, "steps_done": 20,
         "config": {"batch_size": 32}, "wall_time_s": 1.0, "trainable_params": 5, "frozen_params": 7,
         "history": [{"step": 20, "scores": per_target}]}
    (folder / "results.json").write_text(json.dumps(r))
    for k in ("best", "last")[:1 + last]:
        (folder / f"eval_{k}.json").write_text(json.dumps({"checkpoint_step": 20, "episode_seed_base": seed_base, "scores": per_target}))
    return folder


def test_compare_pairs_episodes_by_seed(tmp_path):
    ref = fake_run(tmp_path / "pre", "pretrained-L8", {"5000": [50.0, 60.0, 70.0], "2500": [40.0, 40.0, 40.0]})
    other = fake_run(tmp_path / "rnd", "random-init-L8", {"5000": [40.0, 50.0, 60.0], "2500": [30.0, 50.0, 40.0]})
    out = W.compare([str(ref), str(other), "--out", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(out))
    assert out["checkpoints"] == ["best", "last"]
    v = out["versus_reference"]["rnd"]["best"]
    assert out["versus_reference"]["rnd"]["last"] == v
    assert v["5000"]["reference_minus_run"] == pytest.approx(10.0) and v["5000"]["ci95"] == [10.0, 10.0]
    assert v["2500"]["reference_minus_run"] == pytest.approx(0.0) and v["2500"]["ci95"][0] < 0 < v["2500"]["ci95"][1]
    assert out["runs"]["pre"]["best"]["fresh"]["5000"]["mean"] == pytest.approx(60.0)
    assert out["runs"]["pre"]["best"]["mean_over_targets"] == pytest.approx(50.0)
    assert out["runs"]["pre"]["regime"] is None                      # a run without a slice has no regime
    # last.pt is compared only when every run has its evaluation
    fake_run(tmp_path / "no_last", "x", {"5000": [1.0, 2.0, 3.0], "2500": [1.0, 2.0, 3.0]}, last=False)
    assert W.compare([str(ref), str(tmp_path / "no_last")])["checkpoints"] == ["best"]
    # episodes from other seeds, or another dataset, do not pair
    fake_run(tmp_path / "other_seeds", "x", {"5000": [1.0, 2.0, 3.0], "2500": [1.0, 2.0, 3.0]}, seed_base=3000)
    with pytest.raises(UserError, match="different episodes"):
        W.compare([str(ref), str(tmp_path / "other_seeds")])
    fake_run(tmp_path / "other_data", "x", {"5000": [1.0, 2.0, 3.0], "2500": [1.0, 2.0, 3.0]}, dataset="local/other-v0")
    with pytest.raises(UserError, match="one dataset"):
        W.compare([str(ref), str(tmp_path / "other_data")])
    with pytest.raises(UserError, match="eval_best.json"):
        W.compare([str(tmp_path)])
