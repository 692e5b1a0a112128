"""torchrun on CPU (gloo, 2 processes): data-parallel training is the single-process experiment,
resume works under torchrun, and the distributed head sweep writes the single-process JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_train import tiny_args

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def single(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def test_ddp_curve_matches_single_process_and_resumes(gemma3_wide_ckpt, tmp_path):
    ckpt = gemma3_wide_ckpt[0]
    common = ("--steps", "20", "--eval-every", "10", "--lr", "1e-2")
    single(*tiny_args(ckpt, tmp_path / "one", *common))
    out = torchrun(*tiny_args(ckpt, tmp_path / "two", *common))
    # rank 0 prints this after the group is gone and before os._exit (runs.run_main)
    assert "done: best len8" in out.stdout, out.stdout[-2000:]
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert b["world_size"] == 2 and a["world_size"] == 1
    # same sequences per step: the curves agree up to the order of the float reductions
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert abs(ha["loss"] - hb["loss"]) < 1e-5, (ha, hb)
        for L in ha["errors"]:
            assert abs(ha["errors"][L] - hb["errors"][L]) <= 2 / 256, (L, ha, hb)   # a bit or two may flip
    wa = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    # resume under torchrun: 10 steps, then 10 more, equals 20 straight under torchrun
    torchrun(*tiny_args(ckpt, tmp_path / "cut", "--steps", "10", "--eval-every", "10", "--lr", "1e-2"))
    torchrun(*tiny_args(ckpt, tmp_path / "cut", *common, "--resume"))
    wc = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    for k in wb:
        assert torch.equal(wb[k], wc[k]), k


def test_batch_must_split_evenly(gemma3_wide_ckpt, tmp_path):
    out = torchrun(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "odd", "--steps", "2", "--batch-size", "7"), check=False)
    assert out.returncode != 0 and "must divide evenly over 2 ranks" in out.stderr
    assert not (tmp_path / "odd" / "results.json").exists()


def test_distributed_ablation_equals_single_process(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    single(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "20", "--eval-every", "20", "--lr", "1e-2"))
    single("ablate.py", "--ckpt", str(out / "best.pt"), "--samples", "64", "--out", str(tmp_path / "one.json"))
    torchrun("ablate.py", "--ckpt", str(out / "best.pt"), "--samples", "64", "--out", str(tmp_path / "two.json"))
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert b["world_size"] == 2
    for key in ("heads", "intact", "intact_detail", "top5", "config", "lengths", "samples", "eval_seed"):
        assert a[key] == b[key], key


def test_walker2d_ddp_matches_single_process(gemma3_ckpt, tmp_path):
    """The Decision Transformer under torchrun: same windows per step, loss normalised by the global
    count of real steps; with dropout 0 the curve is the single-process one (dropout masks are drawn
    per rank, so with dropout the runs agree in distribution, not bit for bit)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINARI_DATASETS_PATH": str(tmp_path / "minari")}
    subprocess.run([sys.executable, "-m", "tasks.walker2d", "record", "--id", "local/w2d-ddp-v0", "--episodes", "3",
                    "--policy", "random", "--seed", "5"], cwd=REPO, env=env, check=True, capture_output=True)
    args = ["train.py", "--task", "walker2d", "--model", str(gemma3_ckpt[0]), "--layers", "2-5", "--input-scale", "1.0",
            "--dataset", "local/w2d-ddp-v0", "--batch-size", "8", "--context", "5", "--warmup", "1", "--lr", "1e-3",
            "--dropout", "0", "--steps", "6", "--eval-every", "3", "--eval-episodes", "1", "--max-ep-len", "20"]
    for name, launcher in (("one", [sys.executable]), ("two", [sys.executable, "-m", "torch.distributed.run",
                                                                 "--standalone", "--nproc_per_node=2"])):
        out = subprocess.run([*launcher, *args, "--out", str(tmp_path / name)], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert b["world_size"] == 2
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert abs(ha["loss"] - hb["loss"]) < 1e-5, (ha["loss"], hb["loss"])
        for t in ha["scores"]:      # 1 episode per target, rolled out on one rank, gathered
            assert abs(ha["scores"][t]["score_mean"] - hb["scores"][t]["score_mean"]) < 1e-2
