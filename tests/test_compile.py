"""--compile: the compiled body computes what the eager one does, every training script takes the
flag and records it, --resume refuses a change of it, and a token run compiles a few graphs, not
one per training length. Compiling is slow on CPU (minutes under load): the compiled cases are few."""
import json
import subprocess
import sys

import pytest
import torch

import model as M
import tasks
from runs import REPO

# The compiled body fuses and reorders elementwise work, so it rounds at other points than eager:
# fp32 agrees to float rounding, bf16 (8 mantissa bits, a rounding error of 2^-8 relative per step) more loosely.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_compiled_body_matches_eager(gemma3_ckpt, dtype):
    from torch._dynamo.utils import counters
    body, info = M.build_body(str(gemma3_ckpt[0]), "4-5", dtype=dtype, input_scale=1.0)   # a sliding and a full layer
    torch.manual_seed(0)
    net = M.InterfaceModel(body, info["d_model"], 6, 3)
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        eager = net(x)
        before = counters["stats"]["unique_graphs"]
        M.compile_body(body, {"compile": True})
        compiled = net(x)
    assert counters["stats"]["unique_graphs"] > before          # it really ran compiled
    assert (compiled - eager).abs().max().item() <= TOLERANCE[dtype], (compiled - eager).abs().max().item()
    assert eager.abs().max().item() > 0.1                       # outputs of a size the tolerance means something at


def tiny_args(ckpt, out, *extra):
    return ["train.py", "--task", "copy", "--model", str(ckpt), "--layers", "4-5", "--input-scale", "1.0",
            "--batch-size", "4", "--train-len", "6", "--eval-lengths", "4,8", "--select-len", "8",
            "--eval-samples", "8", "--warmup", "1", "--out", str(out), *extra]


def test_token_run_compiles_a_few_graphs_not_one_per_length(gemma3_wide_ckpt, tmp_path):
    # lengths 1-6 drawn per step over 8 steps, two evaluation lengths: eager shapes enough for ~10 graphs
    out = subprocess.run([sys.executable, *tiny_args(gemma3_wide_ckpt[0], tmp_path / "run", "--steps", "8", "--layers", "5",
                                                     "--eval-every", "8", "--compile")],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    assert r["config"]["compile"] is True
    # static first length, one dynamic graph for every other training length, one for evaluation
    assert 1 <= r["compilations"] <= 4, r["compilations"]


def test_resume_refuses_a_change_of_compile(gemma3_wide_ckpt, tmp_path):
    ckpt = gemma3_wide_ckpt[0]
    first = subprocess.run([sys.executable, *tiny_args(ckpt, tmp_path / "run", "--steps", "1", "--eval-every", "1")],
                           cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["compilations"] == 0
    out = subprocess.run([sys.executable, *tiny_args(ckpt, tmp_path / "run", "--steps", "2", "--eval-every", "1",
                                                     "--resume", "--compile")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "compile=False" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_every_training_parser_takes_compile_and_resume_checks_it():
    import train
    assert train.get_parser().parse_args(["--task", "mqar", "--compile"]).compile and "compile" in train.IDENTITY
    for name in ("images", "ogbench", "walker2d"):
        module = tasks.module(name)
        assert module.get_parser().parse_args(["--compile"]).compile, name
        assert not module.get_parser().parse_args([]).compile, name
        assert "compile" in module.IDENTITY, name


def test_sweep_passes_compile_to_every_run(tmp_path):
    import sweep
    args = sweep.get_parser().parse_args(["--task", "mqar", "--out", str(tmp_path), "--train-len", "6",
                                          "--eval-lengths", "8", "--select-len", "8", "--compile"])
    tasks.module("mqar").sweep_check(args)
    assert "--compile" in sweep.train_cmd(args, "pretrained", "1e-3", "auto", 0, 10, 5, tmp_path / "r")
    args.compile = False
    assert "--compile" not in sweep.train_cmd(args, "pretrained", "1e-3", "auto", 0, 10, 5, tmp_path / "r")


def test_compile_override_follows_evaluate_and_ablate_flags():
    body = torch.nn.Linear(2, 2)
    try:
        M.COMPILE_OVERRIDE = False
        M.compile_body(body, {"compile": True})
        assert body._compiled_call_impl is None          # ablate.py: eager whatever the run used
        M.COMPILE_OVERRIDE = True
        M.compile_body(body, {"compile": False})
        assert body._compiled_call_impl is not None      # evaluate.py --compile on an eager run
    finally:
        M.COMPILE_OVERRIDE = None
