"""The controls that keep the pretrained statistics and remove the structure, and the regime diagnostic."""
import json
import subprocess
import sys

import pytest
import torch

import model as M
import pretrained
from runs import REPO, UserError

REPO = REPO


def slice_state(body):
    return dict(M.slice_tensors(body.layers))


def both(gemma3_ckpt, gemma4_ckpt):
    return [str(gemma3_ckpt[0]), str(gemma4_ckpt[0])]


def test_shuffled_is_a_permutation_of_every_pretrained_tensor(gemma3_ckpt, gemma4_ckpt):
    for path in both(gemma3_ckpt, gemma4_ckpt):
        pre = slice_state(M.load_slice(pretrained.Checkpoint(path), 2, 5))
        body, info = M.build_body(path, "2-5", init="shuffled", seed=3, input_scale=1.0)
        got = slice_state(body)
        assert got.keys() == pre.keys() and info["init"] == "shuffled"
        for name, p in pre.items():
            q = got[name]
            assert torch.equal(q.flatten().sort().values, p.flatten().sort().values), name   # same values
            if p.numel() > 8 and p.unique().numel() > 1:
                assert not torch.equal(q, p), name                                            # other places
            assert not q.requires_grad


def test_matched_keeps_each_tensors_mean_and_std(gemma3_ckpt, gemma4_ckpt):
    for path in both(gemma3_ckpt, gemma4_ckpt):
        pre = slice_state(M.load_slice(pretrained.Checkpoint(path), 2, 5))
        got = slice_state(M.build_body(path, "2-5", init="matched", seed=3, input_scale=1.0)[0])
        for name, p in pre.items():
            q = got[name]
            if p.numel() < 2:
                assert torch.equal(q, p), name
                continue
            assert not torch.equal(q, p), name
            # moments of a Gaussian sample of n values: tolerance of a few standard errors
            tol = 5 * p.std().item() / p.numel() ** 0.5 + 1e-6
            assert abs(q.mean().item() - p.mean().item()) < tol, name
            if p.numel() >= 64:
                assert abs(q.std().item() / max(p.std().item(), 1e-12) - 1) < 5 / (2 * p.numel()) ** 0.5 + 1e-3, name


@pytest.mark.parametrize("init", ["shuffled", "matched", "random"])
def test_control_is_seeded_and_changes_only_the_slice(gemma3_ckpt, init):
    path = str(gemma3_ckpt[0])
    a = slice_state(M.build_body(path, "2-5", init=init, seed=1, input_scale=1.0)[0])
    b = slice_state(M.build_body(path, "2-5", init=init, seed=1, input_scale=1.0)[0])
    c = slice_state(M.build_body(path, "2-5", init=init, seed=2, input_scale=1.0)[0])
    assert all(torch.equal(a[k], b[k]) for k in a)                     # same seed, same body
    assert any(not torch.equal(a[k], c[k]) for k in a)                 # another seed, another body
    # only the slice: the layers around it are read from the checkpoint as they are
    ckpt = pretrained.Checkpoint(path)
    before = M.load_slice(ckpt, 1, 1)
    whole = M.load_slice(ckpt, 1, 6)
    M.apply_init(whole, init, seed=1, layers=whole.layers[1:5])       # probe.py's use: layers 2-5 only
    for (n, p), q in zip(before.layers[0].named_parameters(), whole.layers[0].parameters()):
        assert torch.equal(p, q), n
    assert torch.equal(dict(whole.layers[5].named_parameters())["mlp.down_proj.weight"],
                       dict(M.load_slice(ckpt, 6, 6).layers[0].named_parameters())["mlp.down_proj.weight"])
    inner = slice_state(M.build_body(path, "2-5", init=init, seed=1, input_scale=1.0)[0])
    assert all(torch.equal(dict(M.slice_tensors(whole.layers[1:5]))[k], inner[k]) for k in inner)


def test_controls_refused_off_gemma(gemma3_ckpt):
    with pytest.raises(UserError, match="--init shuffled applies to --substrate gemma only"):
        M.build_body(str(gemma3_ckpt[0]), "2-5", substrate="gpt2-random", init="shuffled")


@pytest.mark.parametrize("substrate", ["gpt2-random", "scratch"])
def test_gpt2_body_draws_from_its_own_generator(gemma3_ckpt, substrate):
    """The GPT-2 controls are seeded by --seed through a generator of their own: the same seed gives the
    same stack, another seed another, and the global random state the interface is drawn from after the
    body is left as it was (so every body of a seed starts from the same interface)."""
    weights = lambda body: torch.cat([p.detach().flatten().float() for p in body.parameters()])
    torch.manual_seed(5)
    a, _ = M.build_body(str(gemma3_ckpt[0]), "2-5", substrate=substrate, seed=0)
    after = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(4))
    b, _ = M.build_body(str(gemma3_ckpt[0]), "2-5", substrate=substrate, seed=0)
    c, info = M.build_body(str(gemma3_ckpt[0]), "2-5", substrate=substrate, seed=1)
    assert torch.equal(weights(a), weights(b)) and not torch.equal(weights(a), weights(c))
    assert info["init"] is None      # no Gemma slice, so no control of one to record


def test_regime_tells_an_identity_from_a_mixing_body(gemma3_ckpt):
    path = str(gemma3_ckpt[0])
    body, info = M.build_body(path, "2-5", input_scale=1.0)
    assert info["regime"]["input_scale"] == 1.0
    r = M.regime(body, 1.0)
    assert r == M.regime(body, 1.0)                                    # fixed tokens: repeatable
    assert r["stream_change"] > 0 and r["token0_effect"] > 0
    # a body whose branches write nothing is the identity: no change, no mixing
    with torch.no_grad():
        for layer in body.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    z = M.regime(body, 1.0)
    assert z["stream_change"] < 1e-6 and z["token0_effect"] < 1e-6
    assert M.regime(None, 1.0) is None


def test_end_regime_follows_a_learnt_scale(gemma3_ckpt):
    from model import end_regime
    body, info = M.build_body(str(gemma3_ckpt[0]), "2-5", input_scale=2.0)
    net = M.InterfaceModel(body, info["d_model"], 5, 3, in_scale=2.0, learn_scale=True)
    with torch.no_grad():
        net.in_gain.fill_(0.25)                                        # as if training had moved the gain
    end = end_regime(net)
    assert end["input_scale_end"] == 0.5 and end["regime_end"] == M.regime(body, 0.5)
    assert end["regime_end"]["stream_change"] > info["regime"]["stream_change"]   # a smaller input moves more


def test_regime_is_recorded_in_a_run_and_its_evaluation(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "train.py", "--task", "mqar", "--model", str(gemma3_wide_ckpt[0]), "--layers", "2-5",
           "--init", "shuffled", "--input-scale", "2.0", "--steps", "4", "--eval-every", "2", "--train-len", "4",
           "--eval-lengths", "4", "--select-len", "4", "--eval-samples", "8", "--batch-size", "4", "--lr", "0.3",
           "--out", str(out)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["init"] == "shuffled" and r["condition"] == "shuffled"
    assert r["body"]["regime"]["input_scale"] == 2.0
    assert r["input_scale_end"] == 2.0 and r["regime_end"]["input_scale"] == 2.0
    ev = tmp_path / "eval.json"
    subprocess.run([sys.executable, "evaluate.py", "--ckpt", str(out / "best.pt"), "--samples", "8", "--out", str(ev)],
                   cwd=REPO, check=True, capture_output=True)
    e = json.loads(ev.read_text())
    assert e["regime"] == r["regime_end"]                             # the rebuilt body is the trained one
