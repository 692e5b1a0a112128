"""The bf16 path (what runs on a GPU), exercised on CPU: frozen weights really bf16, the trainable
interface fp32, every script runs with --dtype bf16, and bf16 agrees with fp32 within tolerance."""
import json

import pytest
import torch

import model as M
import pretrained
from test_train import run, tiny_args

BF16 = torch.bfloat16


@pytest.mark.parametrize("which", ["gemma3", "gemma4"])
def test_slice_weights_really_bf16_and_close_to_fp32(gemma3_ckpt, gemma4_ckpt, which):
    path = (gemma3_ckpt if which == "gemma3" else gemma4_ckpt)[0]
    ckpt = pretrained.Checkpoint(str(path))
    a = M.load_slice(ckpt, 2, 5, dtype=torch.float32)
    b = M.load_slice(ckpt, 2, 5, dtype=BF16)
    assert {p.dtype for p in b.parameters()} == {BF16} and {p.dtype for p in a.parameters()} == {torch.float32}
    h = torch.randn(2, 9, ckpt.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya, yb = a(h), b(h.to(BF16))
    assert yb.dtype == BF16
    rel = ((ya - yb.float()).norm(dim=-1) / ya.norm(dim=-1))
    assert rel.mean() < 0.03 and rel.max() < 0.1, rel   # bf16: 8 mantissa bits, four layers


def test_a_slice_left_in_fp32_is_caught(gemma3_ckpt):
    body = M.load_slice(pretrained.Checkpoint(str(gemma3_ckpt[0])), 2, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="holds torch.float32"):
        M.check_dtype(body, BF16)


@pytest.mark.parametrize("substrate,init", [("gemma", "pretrained"), ("gemma", "random"), ("gemma", "shuffled"),
                                            ("gemma", "matched"), ("gpt2-random", "pretrained"),
                                            ("scratch", "pretrained"), ("none", "pretrained")])
def test_every_condition_bf16_body_fp32_interface(gemma3_ckpt, substrate, init):
    body, info = M.build_body(str(gemma3_ckpt[0]), "2-5", substrate=substrate, init=init, dtype=BF16, input_scale=1.0)
    net = M.InterfaceModel(body, info["d_model"], 5, 3)
    frozen = {p.dtype for p in net.parameters() if not p.requires_grad}
    trainable = {p.dtype for p in net.parameters() if p.requires_grad}
    assert trainable == {torch.float32}                       # master weights (scratch: the whole stack)
    assert frozen in ({BF16}, set())                          # frozen bodies hold bf16
    assert info["dtype"] == "bf16" and info["compute_dtype"] == ("bf16" if body is not None else "fp32")
    y = net(torch.randn(2, 6, 5))
    assert y.dtype == torch.float32                           # losses and metrics in fp32
    y.pow(2).mean().backward()
    assert net.w_in.weight.grad.dtype == torch.float32 and net.w_in.weight.grad.abs().sum() > 0


def test_scripts_run_bf16(gemma3_wide_ckpt, tmp_path):
    """train -> evaluate -> ablate on a token task, all with the frozen slice in bf16."""
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "6", "--eval-every", "3", "--dtype", "bf16"))
    r = json.loads((out / "results.json").read_text())
    assert r["body"]["dtype"] == "bf16" and r["config"]["dtype"] == "bf16"
    assert all(0 <= e <= 1 for e in r["final"]["errors"].values())
    run("evaluate.py", "--ckpt", str(out / "last.pt"), "--samples", "8", "--lengths", "4")
    e = json.loads((out / "eval_last.json").read_text())
    assert e["body"]["dtype"] == "bf16"                       # the run's own dtype by default
    run("evaluate.py", "--ckpt", str(out / "last.pt"), "--samples", "8", "--lengths", "4", "--dtype", "fp32",
        "--out", str(tmp_path / "fp32.json"))
    assert json.loads((tmp_path / "fp32.json").read_text())["body"]["dtype"] == "fp32"
    run("ablate.py", "--ckpt", str(out / "last.pt"), "--samples", "8", "--lengths", "4", "--heads", "L3.1")
    a = json.loads((out / "ablate_last_ablate_L3.1.json").read_text())
    assert a["ablated_heads"] == ["L3.1"]


@pytest.mark.embedded
def test_embedded_bf16_calibration_probe_and_agreement(tmp_path, monkeypatch):
    """The real 270M in bf16: calibration runs (it crashed before) and lands near the fp32 value, the
    probe runs, and slice 6-11 agrees with fp32 to a few percent per token."""
    import probe
    monkeypatch.setattr(pretrained, "CALIBRATION_DIR", tmp_path)
    ckpt = pretrained.Checkpoint()
    s16 = pretrained.residual_stats(ckpt, 6, dtype=BF16)[6]
    monkeypatch.setattr(pretrained, "CALIBRATION_DIR", tmp_path / "fp32")
    s32 = pretrained.residual_stats(ckpt, 6, dtype=torch.float32)[6]
    assert abs(s16["typical_rms"] / s32["typical_rms"] - 1) < 0.05 and s16["outlier_dims"] == s32["outlier_dims"]
    heads, _, _ = probe.probe(ckpt, 5, 6, pretrained.PROBE_TEXT.read_text().splitlines()[:3], dtype=BF16)
    assert len(heads) == 8 and all(0 <= h["scores"]["copying"] <= 1 for h in heads.values())
    a, b = M.load_slice(ckpt, 6, 11, dtype=torch.float32), M.load_slice(ckpt, 6, 11, dtype=BF16)
    h = torch.randn(4, 24, 640, generator=torch.Generator().manual_seed(0)) * s32["typical_rms"]
    with torch.no_grad():
        ya, yb = a(h), b(h.to(BF16)).float()
    rel = (ya - yb).norm(dim=-1) / ya.norm(dim=-1)
    # measured: mean 0.016, max 0.043 (bf16 keeps 8 bits of mantissa; six layers accumulate it)
    assert rel.mean() < 0.03 and rel.max() < 0.1, (rel.mean(), rel.max())
