"""tasks/walker2d.py: stand-in recording, training, batched evaluation, resume, data loading, scores."""
import json
import os
import shutil
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
    # the data's fingerprint: the transitions themselves, so a change of one reward changes it
    assert data["stats"]["data_sha256"] == W.data_sha256(eps) == W.prepare(W.load_d4rl_hdf5(tmp_path / "tiny.hdf5"))["stats"]["data_sha256"]
    eps[2]["rewards"] = eps[2]["rewards"] + np.float32(1e-3)
    assert W.data_sha256(eps) != data["stats"]["data_sha256"]
    # the same transitions cut into other episodes are other data (returns-to-go change)
    joined = [{k: np.concatenate([e[k] for e in eps[:2]]) for k in eps[0]}, eps[2]]
    assert W.data_sha256(joined) != W.data_sha256(eps)
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
    # data remade under the same id (as on a new machine) is not the data the run trained on: refused
    remade = tmp_path / "remade"
    run("record", "--id", "local/w2d-test-v0", "--episodes", "3", "--policy", "random", "--seed", "6", minari_dir=remade)
    out = run(*train_args(ckpt, tmp_path / "cut", "--steps", "30", "--resume"), minari_dir=remade, check=False)
    assert out.returncode == 2 and "other data" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert json.loads((tmp_path / "cut" / "results.json").read_text())["steps_done"] == 20
    # a checkpoint from before the hash was recorded: its data is told by the state normalisation
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    del state["config"]["data_sha256"]
    torch.save(state, tmp_path / "cut" / "last.pt")
    out = run(*train_args(ckpt, tmp_path / "cut", "--steps", "30", "--resume"), minari_dir=remade, check=False)
    assert out.returncode == 2 and "other data" in out.stderr
    run(*train_args(ckpt, tmp_path / "cut", "--steps", "30", "--eval-every", "10", "--resume"), minari_dir=standin)
    assert json.loads((tmp_path / "cut" / "results.json").read_text())["steps_done"] == 30


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


STATS = {"episodes": 3, "transitions": 300, "return_mean": 10.0, "return_max": 12.0, "data_sha256": "ab" * 32}


def fake_run(folder, condition, scores, seed_base=2000, dataset="local/w2d-medium-test-v0", last=True, stats=STATS):
    """results.json + eval_best.json as train.py and evaluate.py write them, with chosen episode scores."""
    folder.mkdir(parents=True)
    per_target = {t: {"scores": s, "return_mean": 10.0, "lengths": [100] * len(s), "score_mean": float(np.mean(s))}
                  for t, s in scores.items()}
    r = {"metric": W.METRIC, "dataset": dataset, "dataset_stats": stats, "condition": condition, "seed": 0, "steps_done": 20,
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
    # the same id holding other data (remade on another machine): told apart by its statistics; a run from
    # before the fingerprint was recorded is judged on the statistics both have
    fake_run(tmp_path / "remade", "x", {"5000": [1.0, 2.0, 3.0], "2500": [1.0, 2.0, 3.0]},
             stats={k: v for k, v in STATS.items() if k != "data_sha256"} | {"episodes": 4})
    with pytest.raises(UserError, match="read different data"):
        W.compare([str(ref), str(tmp_path / "remade")])
    older = fake_run(tmp_path / "older", "x", {"5000": [1.0, 2.0, 3.0], "2500": [1.0, 2.0, 3.0]},
                     stats={k: v for k, v in STATS.items() if k != "data_sha256"})
    assert W.compare([str(ref), str(older)])["dataset"] == "local/w2d-medium-test-v0"
    # every pair is checked, not each against the first: two hashes that differ are refused in any order
    other_hash = fake_run(tmp_path / "other_hash", "x", {"5000": [1.0, 2.0, 3.0], "2500": [1.0, 2.0, 3.0]},
                          stats=STATS | {"data_sha256": "cd" * 32})
    for order in ([older, ref, other_hash], [other_hash, older, ref]):
        with pytest.raises(UserError, match="read different data"):
            W.compare([str(d) for d in order])
    with pytest.raises(UserError, match="eval_best.json"):
        W.compare([str(tmp_path)])


def seed_run(folder, seed, curve, fresh=None, lr=1e-4, steps=20, dataset="local/w2d-medium-test-v0", stats=STATS):
    """A run as train.py and `evaluate.py --ckpt last.pt` write it: curve = the mean score per target at each
    training-time evaluation (stream 1); fresh = the fresh episodes' scores per target (stream 2)."""
    folder.mkdir(parents=True)
    history = [{"step": steps * (i + 1) // len(curve), "scores": {t: {"score_mean": v} for t, v in c.items()}}
               for i, c in enumerate(curve)]
    (folder / "results.json").write_text(json.dumps({
        "metric": W.METRIC, "dataset": dataset, "dataset_stats": stats, "condition": "x", "seed": seed, "steps_done": steps,
        "config": {"lr": lr, "batch_size": 32, "warmup": 2, "dtype": "fp32"}, "trainable_params": 5, "wall_time_s": 60.0,
        "git_commit": "c1", "history": history, "eval": {"episode_seed_base": 10_000 * seed + 1000}}))
    if fresh is not None:
        (folder / "eval_last.json").write_text(json.dumps({
            "checkpoint_step": steps, "episode_seed_base": 10_000 * seed + 2000,
            "scores": {t: {"scores": s, "score_mean": float(np.mean(s))} for t, s in fresh.items()}}))
    return folder


def test_pick_lr_chooses_on_the_training_time_episodes(tmp_path):
    check = tmp_path / "lr_check"
    # the last two training-time evaluations decide; the fresh scores (never to be used) point the other way
    seed_run(check / "L8_pretrained__lr1e-4__0", 0, [{"5000": 90, "2500": 90}, {"5000": 10, "2500": 20}, {"5000": 20, "2500": 10}],
             fresh={"5000": [99.0], "2500": [99.0]}, lr=1e-4)
    seed_run(check / "L8_pretrained__lr3e-4__0", 0, [{"5000": 0, "2500": 0}, {"5000": 30, "2500": 30}, {"5000": 30, "2500": 40}],
             fresh={"5000": [0.0], "2500": [0.0]}, lr=3e-4)
    seed_run(check / "L8_pretrained__lr1e-3__0", 0, [{"5000": 0, "2500": 0}, {"5000": 5, "2500": 5}, {"5000": 5, "2500": 5}], lr=1e-3)
    for lr in (1e-4, 3e-4):       # a tie goes to the lower rate
        seed_run(check / f"L8_random-init_scale1__lr{lr:g}__0", 0, [{"5000": 7, "2500": 7}] * 3, lr=lr)
    out = W.pick_lr([str(p) for p in sorted(check.iterdir())] + ["--last", "2", "--out", str(tmp_path / "choice.json")])
    assert json.loads((tmp_path / "choice.json").read_text()) == json.loads(json.dumps(out))
    assert out["dataset"] == "local/w2d-medium-test-v0" and out["dataset_stats"] == STATS    # the data the choice was made on
    pre = out["bodies"]["L8_pretrained"]
    assert pre["chosen_lr"] == 3e-4 and pre["runs"]["L8_pretrained__lr3e-4__0"]["value"] == pytest.approx(32.5)
    assert pre["runs"]["L8_pretrained__lr1e-4__0"]["value"] == pytest.approx(15.0)
    assert out["bodies"]["L8_random-init_scale1"]["chosen_lr"] == 1e-4
    # an end of the checked rates is an open edge, with the ladder's next rate beyond it; inside, none
    assert (pre["open_edge"], pre["next_lr"], pre["checked_lrs"]) == (None, None, [1e-4, 3e-4, 1e-3])
    ri = out["bodies"]["L8_random-init_scale1"]
    assert (ri["open_edge"], ri["next_lr"]) == ("low", 3e-5)
    top = W.pick_lr([str(check / f"L8_pretrained__lr{lr}__0") for lr in ("1e-4", "3e-4")] + ["--last", "2"])["bodies"]["L8_pretrained"]
    assert (top["chosen_lr"], top["open_edge"], top["next_lr"]) == (3e-4, "high", 1e-3)
    off = seed_run(tmp_path / "off" / "L8_pretrained__lr2e-4__0", 0, [{"5000": 1, "2500": 1}] * 3, lr=2e-4)
    with pytest.raises(UserError, match="not on the ladder"):
        W.pick_lr([str(off)])
    # a run whose evaluations are not the training-time stream, or a check at unequal budgets, is refused
    odd = seed_run(tmp_path / "odd" / "L8_pretrained__lr1e-2__0", 0, [{"5000": 1, "2500": 1}] * 2, lr=1e-2)
    r = json.loads((odd / "results.json").read_text())
    r["eval"]["episode_seed_base"] = 2000
    (odd / "results.json").write_text(json.dumps(r))
    with pytest.raises(UserError, match="training-time stream"):
        W.pick_lr([str(odd), "--last", "2"])
    short = seed_run(tmp_path / "short" / "L8_pretrained__lr1e-2__0", 0, [{"5000": 1, "2500": 1}] * 3, lr=1e-2, steps=10)
    with pytest.raises(UserError, match="one budget"):
        W.pick_lr([str(check / "L8_pretrained__lr1e-4__0"), str(short)])
    other_dtype = seed_run(tmp_path / "bf16" / "L8_pretrained__lr1e-2__0", 0, [{"5000": 1, "2500": 1}] * 3, lr=1e-2)
    r = json.loads((other_dtype / "results.json").read_text())
    (other_dtype / "results.json").write_text(json.dumps({**r, "config": {**r["config"], "dtype": "bf16"}}))
    with pytest.raises(UserError, match="dtype"):
        W.pick_lr([str(check / "L8_pretrained__lr1e-4__0"), str(other_dtype)])
    assert pre["dtype"] == "fp32"
    remade = seed_run(tmp_path / "remade" / "L8_pretrained__lr1e-2__0", 0, [{"5000": 1, "2500": 1}] * 3, lr=1e-2,
                      stats=STATS | {"data_sha256": "cd" * 32})
    with pytest.raises(UserError, match="read different data"):
        W.pick_lr([str(check / "L8_pretrained__lr1e-4__0"), str(remade)])


def test_seeds_summarises_fresh_scores_over_seeds(tmp_path):
    from scipy import stats as sps
    fresh = {"L8_pretrained": [(30, 20), (40, 30), (50, 40)], "dt-b64": [(60, 50), (70, 50), (80, 50)]}
    runs = []
    for cond, per_seed in fresh.items():
        for seed, (a, b) in enumerate(per_seed):
            runs.append(str(seed_run(tmp_path / "runs" / f"{cond}__{seed}", seed, [{"5000": 0, "2500": 0}],
                                     fresh={"5000": [a - 1.0, a + 1.0], "2500": [float(b)] * 2})))
    out = W.seeds(runs + ["--reference", "L8_pretrained", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(out))
    assert out["dataset_stats"] == STATS
    pre = out["conditions"]["L8_pretrained"]["fresh"]["5000"]
    half = sps.t.ppf(0.975, 2) * 10 / 3 ** 0.5
    assert pre["values"] == [30, 40, 50] and pre["ci95"] == pytest.approx([40 - half, 40 + half])
    d = out["differences"]["dt-b64"]
    assert d["5000"]["values"] == [-30, -30, -30] and d["5000"]["verdict"] == "dt-b64 ahead"   # no spread: P = 0
    assert d["2500"]["values"] == [-30, -20, -10] and d["2500"]["paired_t"]["p"] == pytest.approx(
        sps.ttest_rel([20, 30, 40], [50, 50, 50]).pvalue)
    assert out["runs"]["dt-b64__1"]["episodes"] == {"5000": 2, "2500": 2} and out["conditions"]["dt-b64"]["wall_time_s"] == 180.0
    # runs of unequal length, a last.pt scored before the run went on, a missing evaluation: one line each
    longer = seed_run(tmp_path / "more" / "mlp__0", 0, [{"5000": 0, "2500": 0}], fresh={"5000": [1.0], "2500": [1.0]}, steps=40)
    res = subprocess.run([sys.executable, "-m", "tasks.walker2d", "seeds", *runs, str(longer)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "differ in steps_done" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    f = tmp_path / "runs" / "dt-b64__2" / "results.json"
    r = json.loads(f.read_text())
    r["steps_done"] = 30
    f.write_text(json.dumps(r))
    with pytest.raises(UserError, match="evaluate last.pt again"):
        W.seeds(runs)
    (tmp_path / "runs" / "dt-b64__2" / "eval_last.json").unlink()
    with pytest.raises(UserError, match="eval_last.json"):
        W.seeds(runs)
    remade = seed_run(tmp_path / "remade" / "mlp__0", 0, [{"5000": 0, "2500": 0}], fresh={"5000": [1.0], "2500": [1.0]},
                      stats=STATS | {"return_mean": 11.0})
    with pytest.raises(UserError, match="read different data"):
        W.seeds(runs[:3] + [str(remade)])
    f = tmp_path / "runs" / "L8_pretrained__1" / "results.json"
    r = json.loads(f.read_text())
    f.write_text(json.dumps({**r, "config": {**r["config"], "dtype": "bf16"}}))
    with pytest.raises(UserError, match="different dtypes"):
        W.seeds(runs[:3])


def test_lr_check_and_three_seed_scripts_end_to_end(standin, gemma3_ckpt, tmp_path):
    """lr_check.sh -> pick-lr -> run_3seeds.sh at the chosen rates -> seeds, on a tiny model and budget."""
    env = {**os.environ, "MINARI_DATASETS_PATH": str(standin), "BG_CACHE": str(tmp_path / "cache"), "DATASET": "local/w2d-test-v0",
           "STEPS": "4", "EVAL_EVERY": "2", "EVAL_EPISODES": "1", "FRESH_EPISODES": "1", "SLICE_BATCH": "8",
           "EXTRA": "--context 5 --max-ep-len 20", "SLICE_EXTRA": f"--model {gemma3_ckpt[0]} --layers 2 --input-scale 1.0",
           "LRS": "1e-3", "MAX_EXTEND": "1", "LAST": "2", "DEST": str(tmp_path / "check"),
           "CHOICE": str(tmp_path / "check" / "choice.json")}
    sh = lambda script, *args: subprocess.run(["bash", str(REPO / "results/walker2d/medium" / script), *args], cwd=REPO,
                                             env=env, capture_output=True, text=True)
    res = sh("run_3seeds.sh", "0", "pretrained")
    assert res.returncode == 2 and "run lr_check.sh and pick-lr first" in res.stderr
    assert sh("lr_check.sh", "pretrained", "mlp").returncode == 2       # a bad condition, before anything runs
    assert not (tmp_path / "check").exists()
    # one rate checked: its best sits at both ends, so the check runs the ladder's next rate up (one
    # extension allowed here), then writes the choice; the scale-1 control runs the same script, kept out for time
    res = sh("lr_check.sh", "pretrained")
    assert res.returncode == 0, res.stderr[-2000:]
    runs = sorted(p.name for p in (tmp_path / "check").iterdir() if p.is_dir())
    assert runs == ["L8_pretrained__lr1e-3__0", "L8_pretrained__lr3e-3__0"]
    choice = json.loads(Path(env["CHOICE"]).read_text())
    assert choice["last"] == 2 and choice["bodies"]["L8_pretrained"]["checked_lrs"] == [1e-3, 3e-3]
    # a check run stopped part-way (here: its record set back) is finished before anything is chosen
    f = tmp_path / "check" / "L8_pretrained__lr3e-3__0" / "results.json"
    r = json.loads(f.read_text())
    f.write_text(json.dumps({**r, "steps_done": 2}))
    env["MAX_EXTEND"] = "0"
    res = sh("lr_check.sh", "pretrained")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(f.read_text())["steps_done"] == 4
    # with two rates the best sits at an end: the seed runs refuse an open edge unless told to go on
    assert choice["bodies"]["L8_pretrained"]["next_lr"] is not None
    res = sh("run_3seeds.sh", "1", "pretrained")
    assert res.returncode == 2 and "ALLOW_OPEN_EDGE" in res.stderr
    env["ALLOW_OPEN_EDGE"] = "1"
    env["DEST"] = str(tmp_path / "runs")
    res = sh("run_3seeds.sh", "0", "random-init-scale1")
    assert res.returncode == 2 and "no rate for L8_random-init_scale1" in res.stderr
    # the seeds compute in the dtype whose check chose their rate (bf16 by default); a choice that names
    # none (older code) is refused, not taken for any dtype
    assert choice["bodies"]["L8_pretrained"]["dtype"] == "bf16"
    current = Path(env["CHOICE"]).read_text()
    older = json.loads(current)
    del older["bodies"]["L8_pretrained"]["dtype"]
    Path(env["CHOICE"]).write_text(json.dumps(older))
    res = sh("run_3seeds.sh", "0", "pretrained")
    assert res.returncode == 2 and "names no dtype" in res.stderr
    Path(env["CHOICE"]).write_text(current)
    env["SLICE_DTYPE"] = "fp32"
    res = sh("run_3seeds.sh", "0", "pretrained")
    assert res.returncode == 2 and "set SLICE_DTYPE alike" in res.stderr
    del env["SLICE_DTYPE"]
    res = sh("run_3seeds.sh", "0", "pretrained", "dt-b64")
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads((tmp_path / "runs" / "L8_pretrained__0" / "results.json").read_text())
    assert r["config"]["lr"] == choice["bodies"]["L8_pretrained"]["chosen_lr"] and r["config"]["dtype"] == "bf16"
    assert json.loads((tmp_path / "runs" / "dt-b64__0" / "results.json").read_text())["config"]["batch_size"] == 64
    out = W.seeds(sorted(str(p) for p in (tmp_path / "runs").iterdir()) + ["--reference", "L8_pretrained"])
    assert out["conditions"]["dt-b64"]["seeds"] == [0] and out["steps_done"] == 4
    assert out["differences"]["dt-b64"]["5000"]["verdict"] == "one seed: no test"
    before = (tmp_path / "runs" / "dt-b64__0" / "eval_last.json").read_bytes()
    assert sh("run_3seeds.sh", "0", "dt-b64").returncode == 0          # done: nothing reruns
    assert (tmp_path / "runs" / "dt-b64__0" / "eval_last.json").read_bytes() == before


def test_the_three_seed_readme_section_renders_from_the_summaries(tmp_path):
    """The Walker2d section and finding waiting for the check's choice and the seeds summary render as they stand."""
    import report
    import tables
    results = tmp_path / "results" / "walker2d" / "medium"
    (results / "lr_check").mkdir(parents=True)
    (results / "seeds").mkdir()
    shutil.copytree(REPO / "results" / "bench", tmp_path / "results" / "bench")   # the dtype measurement it cites
    for data in ("medium_sac_3seeds", "medium_sac"):    # the data of these runs, and the earlier file it is set beside
        shutil.copytree(REPO / "results" / "walker2d" / data, tmp_path / "results" / "walker2d" / data)
    check = []
    for body, values in {"L8_pretrained": (10, 20, 15), "L8_random-init_scale1": (5, 8, 9)}.items():
        for lr, v in zip((1e-4, 3e-4, 1e-3), values):
            check.append(str(seed_run(tmp_path / "check" / f"{body}__lr{lr:g}__0", 0, [{"5000": v, "2500": v}] * 2, lr=lr)))
    choice = W.pick_lr(check + ["--last", "2", "--out", str(results / "lr_check" / "choice.json")])
    runs = []
    for cond, per_seed in {"L8_pretrained": (30, 35, 40), "L8_random-init_scale1": (20, 30, 25), "dt-b64": (60, 70, 65)}.items():
        for seed, a in enumerate(per_seed, start=1):   # the reported seeds: 0 is the check's
            runs.append(str(seed_run(tmp_path / "runs" / f"{cond}__{seed}", seed, [{"5000": 0, "2500": 0}],
                                     fresh={"5000": [float(a)] * 2, "2500": [a - 5.0] * 2})))
    summary = W.seeds(runs + ["--reference", "L8_pretrained", "--out", str(results / "seeds" / "summary.json")])
    template = (REPO / "results" / "walker2d" / "medium" / "readme_section.tmpl.md").read_text()
    _, section, finding = template.split("\n---\n")
    aliases = "<!-- alias w3 = walker2d/medium/seeds/summary.json -->\n"
    for i, part in enumerate((section, finding)):
        src = tmp_path / f"part{i}.src.md"
        src.write_text(aliases + part)
        text = report.render(src, tmp_path / "results")
        assert "{{" not in text and "dt-b64 ahead" in text
    section_text = report.render(tmp_path / "part0.src.md", tmp_path / "results")
    assert tables.walker_seeds_table(summary) in section_text and tables.lr_check_table(choice) in section_text
    assert "**0.0003**" in section_text and "at 0.0003, the re-initialised one at 0.001" in section_text
