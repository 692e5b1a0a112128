"""The researcher's loop as a user meets it: resume by folder, a wall-clock checkpoint before the first
evaluation, TensorBoard scalars read back, distinct default folders."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run(*args, check=True, cwd=REPO):
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def tiny_args(ckpt, *extra):
    return ["train.py", "--task", "copy", "--model", str(ckpt), "--layers", "2-5", "--input-scale", "1.0",
            "--batch-size", "8", "--train-len", "4", "--eval-lengths", "4,8", "--select-len", "8",
            "--eval-samples", "32", "--lr", "3e-3", "--warmup", "1", *extra]


def test_resume_by_folder_continues_from_the_stored_config(gemma3_wide_ckpt, tmp_path):
    ckpt = gemma3_wide_ckpt[0]
    run(*tiny_args(ckpt, "--out", tmp_path / "full", "--steps", "12", "--eval-every", "6"))
    first = run(*tiny_args(ckpt, "--out", tmp_path / "cut", "--steps", "6", "--eval-every", "6"))
    assert "nan" not in first.stderr            # the progress bar shows no metric before the first evaluation
    run("train.py", "--resume", str(tmp_path / "cut"), "--steps", "12")       # nothing else typed
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the other spelling, and a typed setting that differs is still refused
    run("train.py", "--resume", "--out", str(tmp_path / "cut"), "--steps", "13")
    res = run("train.py", "--resume", str(tmp_path / "cut"), "--steps", "14", "--seed", "3", check=False)
    assert res.returncode == 2 and "seed=0" in res.stderr and "Traceback" not in res.stderr


def test_wall_clock_checkpoint_before_the_first_evaluation(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, *tiny_args(gemma3_wide_ckpt[0], "--out", out, "--steps", "100000",
                                                        "--eval-every", "100000", "--checkpoint-minutes", "0")],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = torch.load(out / "last.pt", weights_only=True)
    assert 1 <= state["step"] < 100000 and state["history"] == []
    run("train.py", "--resume", str(out), "--steps", str(state["step"] + 2), "--eval-every", "1000")
    r = json.loads((out / "results.json").read_text())
    assert r["steps_done"] == state["step"] + 2


def test_tensorboard_scalars_are_written_and_read_back(gemma3_wide_ckpt, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], "--out", out, "--steps", "8", "--eval-every", "4", "--log-every", "2"))
    events = EventAccumulator(str(out))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/errors/4", "val/errors/8"} <= tags, tags
    assert [e.step for e in events.Scalars("val/errors/8")] == [4, 8]
    r = json.loads((out / "results.json").read_text())
    assert [e.value for e in events.Scalars("val/errors/8")] == [
        float(torch.tensor(h["errors"]["8"], dtype=torch.float32)) for h in r["history"]]


def test_default_folders_differ_by_learning_rate(gemma3_wide_ckpt, tmp_path):
    # a second run at another rate is a run of its own, not "already holds a run"
    args = [a for a in tiny_args(gemma3_wide_ckpt[0]) if a not in ("--lr", "3e-3")]
    for lr in ("1e-3", "3e-3"):
        run(*[str(REPO / a) if a == "train.py" else a for a in args], "--lr", lr, "--steps", "2", "--eval-every", "2",
            cwd=tmp_path)
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.startswith("copy__pretrained__0__") for f in folders), folders


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_images_resume_by_folder_and_scalars(gemma3_ckpt, image_folder, tmp_path):
    out = tmp_path / "run"
    run("train.py", "--task", "images", "--dataset", str(image_folder), "--image-size", "8", "--patch", "4",
        "--model", str(gemma3_ckpt[0]), "--layers", "2-5", "--input-scale", "1.0", "--batch-size", "8", "--lr", "3e-3",
        "--warmup", "1", "--steps", "4", "--eval-every", "2", "--log-every", "1", "--out", str(out))
    run("train.py", "--resume", str(out), "--steps", "6")
    r = json.loads((out / "results.json").read_text())
    assert r["steps_done"] == 6 and [h["step"] for h in r["history"]] == [2, 4, 6]
    tags = scalars(out)
    assert tags["val/accuracy/test"] == [2, 4, 6] and tags["train/loss"] == [1, 2, 3, 4, 5, 6], tags


def test_walker2d_resume_by_folder_and_scalars(gemma3_ckpt, tmp_path):
    from test_walker2d import run as walker
    minari = tmp_path / "minari"
    walker("record", "--id", "local/w2d-test-v0", "--episodes", "3", "--policy", "random", "--seed", "5", minari_dir=minari)
    out = tmp_path / "run"
    walker("train", "--model", str(gemma3_ckpt[0]), "--layers", "2-5", "--input-scale", "1.0", "--dataset", "local/w2d-test-v0",
           "--batch-size", "8", "--context", "5", "--warmup", "1", "--lr", "1e-3", "--eval-episodes", "1", "--max-ep-len", "20",
           "--steps", "4", "--eval-every", "2", "--out", str(out), minari_dir=minari)
    walker("train", "--resume", str(out), "--steps", "6", minari_dir=minari)
    assert json.loads((out / "results.json").read_text())["steps_done"] == 6
    assert scalars(out)["eval/score/5000"] == [2, 4, 6]


def test_ogbench_resume_by_folder_and_scalars(gemma3_ckpt, tmp_path):
    data = tmp_path / "data"
    run("-m", "tasks.ogbench", "generate", "--env", "scene-play-v0", "--episodes", "2", "--episode-steps", "200",
        "--dataset-dir", str(data))
    out = tmp_path / "run"
    run("train.py", "--task", "ogbench", "--env", "scene-play-singletask-task1-v0", "--dataset-dir", str(data),
        "--model", str(gemma3_ckpt[0]), "--layers", "3", "--input-scale", "1.0", "--hidden", "16", "--batch-size", "16",
        "--eval-episodes", "2", "--eval-batch", "1", "--steps", "4", "--eval-every", "2", "--out", str(out))
    run("train.py", "--resume", str(out), "--steps", "6")
    assert json.loads((out / "results.json").read_text())["steps_done"] == 6
    assert scalars(out)["eval/success_rate"] == [2, 4, 6]


def test_sweep_reports_each_finished_run_with_time_left(tmp_path):
    import sweep
    run_dir = tmp_path / "mqar__pretrained__0"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"steps_done": 600, "final": {"errors": {"8": 0.0123}}}))
    line = sweep.finished_line(run_dir, 1, 4, 600.0)
    assert "[1/4]" in line and "len8=0.0123" in line and "about 30 min left" in line
    assert "all done" in sweep.finished_line(run_dir, 4, 4, 600.0)
