"""The input scale: what is measured (no pads, no BOS, no massive outlier dimensions), and that the
number a run was trained with is the number it is resumed and evaluated with."""
import json

import pytest
import torch

import model as M
import pretrained
from runs import UserError
from test_train import run, tiny_args


def test_stream_stats_ignores_bos_and_separates_outlier_dims():
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(n, 64, generator=g) * 3.0 for n in (5, 9, 7)]
    for h in states:
        h[1:, [7, 40]] += 1000.0          # two massive dimensions on every ordinary token
    s = pretrained.stream_stats(states)
    assert s["outlier_dims"] == [7, 40] and s["outlier_energy"] > 0.99
    assert abs(s["typical_rms"] - 3.0) < 0.4          # the ordinary dimensions' scale
    assert s["token_rms"] > 150                        # the all-dimension mean is dominated by the two
    loud = [h.clone() for h in states]
    for h in loud:
        h[0] *= 1000.0                                 # a BOS position 1000x louder changes only bos_rms
    t = pretrained.stream_stats(loud)
    assert {k: v for k, v in t.items() if k != "bos_rms"} == {k: v for k, v in s.items() if k != "bos_rms"}
    assert t["bos_rms"] > 100 * s["bos_rms"]


def test_parse_input_scale():
    assert M.parse_input_scale("auto") == "auto" and M.parse_input_scale("learn") == "learn"
    assert M.parse_input_scale("30") == 30.0
    for bad in ("0", "-1", "nan", "inf", "big"):
        with pytest.raises(UserError, match="--input-scale"):
            M.parse_input_scale(bad)


@pytest.mark.embedded
def test_calibration_equals_masked_full_model_and_padding_no_longer_matters(tmp_path, monkeypatch):
    """residual_stats (one sentence at a time) against the full model run on a left-padded batch WITH
    its attention mask; the old measurement (padded batch, no mask, BOS included) differs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    monkeypatch.setattr(pretrained, "CALIBRATION_DIR", tmp_path)          # a fresh calibration, not a cached one
    ckpt = pretrained.Checkpoint()
    first = 6
    stats = pretrained.residual_stats(ckpt, first)[first]
    sentences = [s for s in pretrained.PROBE_TEXT.read_text().splitlines() if s.strip()][:32]
    tok = AutoTokenizer.from_pretrained(ckpt.dir)
    assert tok.padding_side == "left"
    batch = tok(sentences, return_tensors="pt", padding=True)
    full = AutoModelForCausalLM.from_pretrained(ckpt.dir, dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = full(**batch, output_hidden_states=True).hidden_states[first]      # entering layer 6
        unmasked = full(input_ids=batch["input_ids"], output_hidden_states=True).hidden_states[first]
    keep = batch["attention_mask"].bool()
    per_sentence = [hidden[b][keep[b]] for b in range(len(sentences))]          # BOS first in each
    ref = pretrained.stream_stats(per_sentence)
    assert abs(ref["typical_rms"] - stats["typical_rms"]) < 1e-3 * stats["typical_rms"]
    assert ref["outlier_dims"] == stats["outlier_dims"] and 2 <= len(stats["outlier_dims"]) <= 8
    assert 20 < stats["typical_rms"] < 45 and stats["bos_rms"] > 20 * stats["typical_rms"]
    old = unmasked[keep].pow(2).mean(-1).sqrt().mean().item()            # what the first version measured
    assert old > 3 * stats["typical_rms"]


def test_learned_scale_is_one_trainable_scalar_and_recorded(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(gemma3_wide_ckpt[0], out, "--steps", "20", "--eval-every", "10", "--substrate", "gpt2-random")
    args[args.index("--input-scale") + 1] = "learn"
    run(*args)
    r = json.loads((out / "results.json").read_text())
    fixed = tmp_path / "fixed"
    run(*tiny_args(gemma3_wide_ckpt[0], fixed, "--steps", "10", "--eval-every", "10", "--substrate", "gpt2-random"))
    f = json.loads((fixed / "results.json").read_text())
    assert r["trainable_params"] == f["trainable_params"] + 1
    assert r["body"]["input_scale_mode"] == "learn" and r["body"]["input_scale"] == 1.0
    assert r["history"][-1]["input_scale"] != 1.0        # the gain moved
    state = torch.load(out / "last.pt", weights_only=True)
    assert "in_gain" in state["model"]


def test_resume_compares_the_number_and_evaluate_reuses_it(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "5", "--eval-every", "5"))
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["body"]["input_scale"] == 1.0
    state["body"]["input_scale"] = 1.5                    # as if the run had been calibrated differently
    torch.save(state, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    res = run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "10", "--resume"), check=False)
    assert res.returncode == 2 and "input scale 1.5" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (out / "last.pt").read_bytes() == before
    run("evaluate.py", "--ckpt", str(out / "last.pt"), "--samples", "8", "--lengths", "4")
    e = json.loads((out / "eval_last.json").read_text())
    assert e["body"]["input_scale"] == 1.5                # the checkpoint's number, not a fresh one
