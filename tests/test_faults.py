"""Faults a user meets: two runs into one folder, Ctrl-C and kill, a full disk, an error mid-run, advice
that must work when followed, outputs that would replace inputs, damaged data files, overflowing flags and
a model cache shared by processes started at once. Tiny runs, real scripts, real files."""
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import runs
from runs import UserError
from test_train import run, tiny_args

REPO = Path(__file__).resolve().parents[1]


def one_error_line(res, *words):
    """Exit 2 and exactly one `error:` line on stderr naming every word (no traceback)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.stderr[-2000:]
    for w in words:
        assert w in lines[0], (w, lines[0])


def last_line(stderr):
    """The last line a terminal shows: a progress bar redraws itself with a carriage return."""
    return [s for s in re.split(r"[\r\n]", stderr) if s.strip()][-1]


def start(args):
    # SIGHUP as a terminal's process has it: a test worker may run with it ignored, which a run keeps (nohup)
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def wait_for(path, proc, timeout=120):
    t0 = time.time()
    while not Path(path).exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < timeout, f"no {path} after {timeout} s"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- run folder lock and signals

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_second_writer_refused_and_a_signal_saves_a_resumable_checkpoint(gemma3_wide_ckpt, tmp_path, sig):
    ckpt, out = gemma3_wide_ckpt[0], tmp_path / "run"
    # an evaluation every step: the stop falls on one, so the resumed run must equal an uninterrupted one
    args = tiny_args(ckpt, out, "--steps", "100000", "--eval-every", "1", "--eval-samples", "8")
    first = start(args)
    wait_for(out / "last.pt", first)                       # the loop is running
    if sig == signal.SIGINT:
        second = run(*args, check=False)
        one_error_line(second, f"--out {out} is in use by process {first.pid}")
    first.send_signal(sig)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and last_line(err).startswith(f"stopped by {sig.name} at step"), err[-2000:]
    assert "--resume" in last_line(err)
    done = torch.load(out / "last.pt", weights_only=True)["step"]
    assert json.loads((out / "results.json").read_text())["steps_done"] == done
    assert not (out / ".lock").exists()
    if sig != signal.SIGINT:
        return
    steps = ["--steps", str(done + 3), "--eval-every", "1", "--eval-samples", "8"]
    run(*tiny_args(ckpt, out, *steps, "--resume"))
    run(*tiny_args(ckpt, tmp_path / "whole", *steps))
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (out, tmp_path / "whole"))
    assert a["step"] == b["step"] == done + 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_sac_stops_on_a_signal_between_environment_steps(tmp_path):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "sac"
    proc = start(["-m", "tasks.walker2d_medium", "sac", "--out", str(out), "--learning-starts", "50", "--eval-every", "100",
                  "--eval-episodes", "1", "--buffer-size", "100000", "--max-steps", "100000", "--stop-return", "1e9"])
    wait_for(out / "sac.pt", proc)                     # the first evaluation is done: SAC is learning
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    line = last_line(err)
    assert line.startswith("stopped by SIGTERM at step") and "sac.pt holds it" in line, line
    state = torch.load(out / "sac.pt", weights_only=True)
    assert line.split(" at step ")[1].startswith(f"{state['num_timesteps']:,}:")
    with np.load(out / "buffer.npz") as z:
        assert len(z["observations"]) == state["num_timesteps"]


def test_lock_names_its_holder_and_is_reentrant(tmp_path):
    lock = tmp_path / ".lock"
    runs.hold_lock(lock, "--out x")
    runs.hold_lock(lock, "--out x")                      # the same process may open its run again
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import runs\n"
            f"runs.hold_lock({str(lock)!r}, '--out x')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"--out x is in use by process {os.getpid()}" in res.stderr
    runs.release_lock(lock)
    assert not lock.exists()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ----------------------------------------------------------------------------- write failures

def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    runs.save_atomic({"step": 1}, path)
    before = path.read_bytes()

    def full_disk(obj, f):       # what torch's zip writer raises when the disk fills
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match="the previous file is kept"):
        runs.save_atomic({"step": 2}, path)
    assert path.read_bytes() == before and not (tmp_path / "last.pt.tmp").exists()


def test_full_disk_mid_run_is_one_line_and_keeps_the_checkpoint(gemma3_wide_ckpt, tmp_path):
    ckpt, out = gemma3_wide_ckpt[0], tmp_path / "run"
    run(*tiny_args(ckpt, out, "--steps", "2", "--eval-every", "2"))
    before = (out / "last.pt").read_bytes()
    limit = len(before) // 2          # no file of this process may grow past half a checkpoint: a full disk

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    res = subprocess.run([sys.executable, *tiny_args(ckpt, out, "--steps", "4", "--eval-every", "2", "--resume")],
                         cwd=REPO, capture_output=True, text=True, preexec_fn=small_disk)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert last_line(res.stderr).startswith("error: cannot write") and "previous file is kept" in last_line(res.stderr)
    assert (out / "last.pt").read_bytes() == before and not list(out.glob("*.tmp"))


# ----------------------------------------------------------------------------- errors mid-run and advice

def test_error_mid_run_is_the_last_line_and_the_lr_advice_works(gemma3_wide_ckpt, tmp_path):
    ckpt, out = gemma3_wide_ckpt[0], tmp_path / "run"
    run(*tiny_args(ckpt, out, "--steps", "2", "--eval-every", "2"))
    state = torch.load(out / "last.pt", weights_only=True)
    good = state["model"]["w_out.weight"].clone()
    state["model"]["w_out.weight"][0, 0] = float("nan")
    torch.save(state, out / "last.pt")
    res = run(*tiny_args(ckpt, out, "--steps", "4", "--eval-every", "2", "--resume"), check=False)
    assert res.returncode == 2 and last_line(res.stderr).startswith("error: the loss became nan"), res.stderr[-2000:]
    assert "with a lower --lr" in res.stderr
    state["model"]["w_out.weight"] = good                  # the last good state, as the advice assumes
    torch.save(state, out / "last.pt")
    res = run(*tiny_args(ckpt, out, "--steps", "4", "--eval-every", "2", "--resume", "--lr", "1e-3"))
    assert "--lr 0.001 from step 2 on" in res.stdout
    r = json.loads((out / "results.json").read_text())
    assert r["steps_done"] == 4 and r["config"]["lr"] == 1e-3
    assert r["config"]["lr_changes"] == [{"step": 2, "from": 3e-3, "to": 1e-3}]
    run(*tiny_args(ckpt, out, "--steps", "6", "--eval-every", "2", "--resume", "--lr", "1e-3"))
    r = json.loads((out / "results.json").read_text())
    assert r["steps_done"] == 6 and r["config"]["lr_changes"] == [{"step": 2, "from": 3e-3, "to": 1e-3}]


def test_resume_with_fewer_steps_than_done_is_refused(gemma3_wide_ckpt, tmp_path):
    ckpt, out = gemma3_wide_ckpt[0], tmp_path / "run"
    run(*tiny_args(ckpt, out, "--steps", "4", "--eval-every", "2"))
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    one_error_line(run(*tiny_args(ckpt, out, "--steps", "2", "--resume"), check=False), "has done 4 steps already")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


# ----------------------------------------------------------------------------- outputs that are inputs

def test_outputs_that_would_replace_an_input_are_refused(gemma3_wide_ckpt, tmp_path):
    ckpt, out = gemma3_wide_ckpt[0], tmp_path / "runs" / "a"
    run(*tiny_args(ckpt, out, "--steps", "2", "--eval-every", "2"))
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    for target in ("best.pt", "last.pt", "results.json"):
        res = run("evaluate.py", "--ckpt", str(out / "best.pt"), "--samples", "8", "--out", str(out / target), check=False)
        one_error_line(res, "is an input of this command")
    res = run("evaluate.py", "--aggregate", str(tmp_path / "runs"), "--out", str(out / "results.json"), check=False)
    one_error_line(res, "is an input of this command")
    res = run("ablate.py", "--ckpt", str(out / "best.pt"), "--samples", "8", "--heads", "L2.0", "--out", str(out / "best.pt"),
              check=False)
    one_error_line(res, "is an input of this command")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def sweep_args(ckpt, out, conditions):
    return ["sweep.py", "--task", "copy", "--model", str(ckpt), "--layers", "2-5", "--conditions", conditions,
            "--input-scales", "1.0", "--train-len", "3", "--eval-lengths", "2,4", "--select-len", "4",
            "--search-steps", "2", "--steps", "3", "--eval-every", "3", "--batch-size", "4", "--warmup", "1",
            "--eval-samples", "8", "--eval-samples-final", "16", "--jobs", "1", "--out", str(out)]


def test_sweep_never_replaces_a_summary_with_less(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "suite"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"conditions": {"pretrained": {}, "none": {}}}))
    (out / "sweep.json").write_text(json.dumps({"protocol": {"first_seed": 1}, "grids": {"pretrained": {}, "none": {}}}))
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    one_error_line(run(*sweep_args(gemma3_wide_ckpt[0], out, ","), check=False), "names no condition")
    one_error_line(run(*sweep_args(gemma3_wide_ckpt[0], out, "pretrained"), check=False), "holds none", "rewrite it")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


# ----------------------------------------------------------------------------- damaged data files and flags

# ----------------------------------------------------------------------------- a stopped sweep

# A stand-in for one training run: it marks its start, counts the signals it gets (each one is logged,
# the first ends it as a saved run would: 128 + the signal), or, told to fail, exits 1 once run 1 is up.
FAKE_RUN = """
import os, signal, sys, time
folder, i, fail = sys.argv[1], sys.argv[2], sys.argv[3] == "fail"
def on_signal(signum, frame):
    with open(os.path.join(folder, f"signals_{i}"), "a") as f:
        f.write(signal.Signals(signum).name + "\\n")
    time.sleep(0.3)  # long enough for a second, forwarded copy of the signal to arrive and be logged
    sys.exit(128 + signum)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, on_signal)
open(os.path.join(folder, f"started_{i}"), "w").close()
if fail:   # fail once the run beside it is up (its handler installed), so that it must be stopped
    while not os.path.exists(os.path.join(folder, "started_1")):
        time.sleep(0.05)
    sys.exit(1)
time.sleep(60)
"""

SWEEP_DRIVER = """
import signal, sys
from pathlib import Path
import runs, sweep
signal.signal(signal.SIGINT, signal.default_int_handler)   # a shell's background job starts with SIGINT ignored
signal.signal(signal.SIGHUP, signal.SIG_DFL)               # and a test worker may run with SIGHUP ignored (as nohup)
folder, n_jobs, fail = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
calls = [(["-c", sys.argv[4], str(folder), str(i), "fail" if str(i) in fail else "ok"], folder / f"log_{i}")
         for i in range(4)]
runs.run_main(lambda: sweep.run_all(calls, n_jobs))
"""


@pytest.mark.parametrize("sig, whole_group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGHUP, False),
                                              (signal.SIGINT, True), (signal.SIGTERM, True)])
def test_a_signalled_sweep_starts_no_queued_run_and_its_runs_get_the_signal_once(tmp_path, sig, whole_group):
    # whole_group: Ctrl-C in a terminal (or `kill -- -PGID`) signals the sweep's process group, not the sweep alone
    sweep_proc = subprocess.Popen([sys.executable, "-c", SWEEP_DRIVER, str(tmp_path), "2", "", FAKE_RUN], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(tmp_path / "started_0", sweep_proc)
        wait_for(tmp_path / "started_1", sweep_proc)
        (os.killpg if whole_group else os.kill)(sweep_proc.pid, sig)
        _, err = sweep_proc.communicate(timeout=60)
    finally:
        sweep_proc.kill()
    assert sweep_proc.returncode == 128 + sig, err[-2000:]
    assert "stopped by" in last_line(err), err[-2000:]
    # the two running runs got the signal exactly once (a second copy would stop a real run unsaved) ...
    for i in (0, 1):
        assert (tmp_path / f"signals_{i}").read_text().split() == [sig.name], i
    # ... and the two queued ones never started
    assert not started(tmp_path, 2) and not started(tmp_path, 3)


def test_a_failed_run_stops_its_sweep_without_starting_queued_runs(tmp_path):
    sweep_proc = subprocess.Popen([sys.executable, "-c", SWEEP_DRIVER, str(tmp_path), "2", "0", FAKE_RUN], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = sweep_proc.communicate(timeout=60)
    finally:
        sweep_proc.kill()
    assert sweep_proc.returncode != 0 and "failed (1)" in err, err[-2000:]
    # the run beside the failed one was told to save (SIGTERM, once); the queued ones never started
    assert (tmp_path / "signals_1").read_text().split() == ["SIGTERM"]
    assert not started(tmp_path, 2) and not started(tmp_path, 3)


def started(folder, i):
    """Did the sweep launch run i? It writes the command into the run's log just before it starts it (a
    run signalled while Python is still starting never gets to mark its own start)."""
    log = folder / f"log_{i}"
    return (folder / f"started_{i}").exists() or (log.exists() and "$ python" in log.read_text())


STOP_TWICE = """
import os, signal, sys, time
import runs
runs.stop_at_step_boundary()
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGTERM)      # the same signal again at once: one stop, still saved at a boundary
assert runs.stop_requested()
time.sleep(1.2)
try:
    os.kill(os.getpid(), signal.SIGTERM)  # a second signal later: at once
except runs.Stopped:
    print("stopped at once")
"""


NOHUP = """
import signal, sys
import runs
signal.signal(signal.SIGHUP, signal.SIG_IGN)     # what nohup does before it starts the command
runs.stop_at_step_boundary()
assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN and signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
runs.run_main(lambda: None)
assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
"""


def test_a_run_under_nohup_outlives_its_terminal():
    r = subprocess.run([sys.executable, "-c", NOHUP], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_same_signal_twice_at_once_is_one_stop():
    # a batch scheduler's kill of every process reaches a sweep's run twice: directly and from the sweep
    r = subprocess.run([sys.executable, "-c", STOP_TWICE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["stopped", "at", "once"], r.stderr[-2000:]


def test_damaged_results_json_in_aggregate_is_one_line(gemma3_wide_ckpt, tmp_path):
    run(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "runs" / "a", "--steps", "2", "--eval-every", "2"))
    bad = tmp_path / "runs" / "b" / "results.json"
    bad.parent.mkdir()
    for data, words in ((b'{"config": {"ta', "is not valid JSON"), (b"\xff\xfe\x00garbage", "is not UTF-8"),
                        (b"[1, 2]", "is not a results.json of this project")):
        bad.write_bytes(data)
        one_error_line(run("evaluate.py", "--aggregate", str(tmp_path / "runs"), check=False), str(bad), words)


def test_text_that_is_not_utf8_is_one_line(gemma3_wide_ckpt, tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_bytes("the cat sat on the mat\n".encode() + b"\xe9t\xe9 \xff\n")
    res = run("probe.py", "--model", str(gemma3_wide_ckpt[0]), "--layers", "2-3", "--text", str(text),
              "--out", str(tmp_path / "p.json"), check=False)
    one_error_line(res, str(text), "is not UTF-8")
    with pytest.raises(UserError, match="is not UTF-8"):
        runs.read_lines(text)


def test_truncated_hdf5_is_one_line(tmp_path):
    h5py = pytest.importorskip("h5py")
    from tasks import walker2d as W
    path = tmp_path / "d.hdf5"
    with h5py.File(path, "w") as f:
        for k, shape in (("observations", (500, 17)), ("actions", (500, 6)), ("rewards", (500,)),
                         ("terminals", (500,)), ("timeouts", (500,))):
            f[k] = np.ones(shape)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(UserError, match="is not a readable HDF5 file"):
        W.load_d4rl_hdf5(path)


def test_damaged_npz_is_one_line(tmp_path):
    pytest.importorskip("ogbench")
    from tasks import ogbench as O
    name = O.DEFAULT_ENV
    dataset, _ = O.split_name(name)
    for suffix in ("", "-val"):
        np.savez(tmp_path / f"{dataset}{suffix}.npz", observations=np.zeros((50, 4), np.float32))
    good = (tmp_path / f"{dataset}.npz").read_bytes()
    (tmp_path / f"{dataset}.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="cannot be read"):
        O.load(name, tmp_path)


def png_header(width, height):
    """A small PNG whose header claims width x height pixels (its one data chunk holds almost nothing)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12_000, 40_000])    # above PIL's warning limit, and above its error limit
def test_image_with_a_huge_header_is_one_line(image_folder, tmp_path, side):
    from tasks import images as I
    root = tmp_path / "imgs"
    shutil.copytree(image_folder, root)
    (root / "a_top" / "bomb.png").write_bytes(png_header(side, side))
    with pytest.raises(UserError, match="bomb.png claims a size too large"):
        I.load_folder(root, 16)


def test_overflowing_numeric_flags_are_one_line(gemma3_wide_ckpt, tmp_path):
    res = run(*tiny_args(gemma3_wide_ckpt[0], tmp_path / "x", "--steps", "2", "--seed", str(2 ** 64)), check=False)
    one_error_line(res, "a seed must be a whole number from 0 to 2147483647")
    assert not (tmp_path / "x").exists()
    import argparse
    import evaluate
    import train
    from tasks import images, ogbench, walker2d
    for parser, task in ((train.get_parser(), "copy"), (images.get_parser(), "images"), (ogbench.get_parser(), "ogbench"),
                         (walker2d.get_parser(), "walker2d")):
        with pytest.raises(UserError, match="a seed must be a whole number"):
            parser.parse_args(["--task", task, "--seed", "-1"])
    with pytest.raises(UserError, match="a seed must be"):
        evaluate.get_parser().parse_args(["--eval-seed", "1e3"])
    with pytest.raises(UserError, match="at most 3.4e38"):
        runs.need_positive_float(argparse.Namespace(lr=1e300), "lr")


# ----------------------------------------------------------------------------- the shared model cache

@pytest.fixture
def with_tokenizer(gemma3_wide_ckpt, tmp_path):
    from test_families import char_tokenizer
    path = tmp_path / "model"
    shutil.copytree(gemma3_wide_ckpt[0], path)
    char_tokenizer(path)
    return path


def test_a_second_run_waits_for_the_calibration_in_progress(with_tokenizer, tmp_path):
    """While one process holds a calibration's cache entry, another that needs it waits and then reads
    the first one's result instead of measuring and writing the same file at the same time."""
    cache = tmp_path / "cache"
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import pretrained; import runs\n"
            "runs.run_main(lambda: print(pretrained.residual_stats(pretrained.Checkpoint(sys.argv[2]), 2)[2]['typical_rms']))")
    env = {**os.environ, "BG_CACHE": str(cache)}
    import pretrained
    ckpt = pretrained.Checkpoint(str(with_tokenizer))
    entry = cache / "calibration" / pretrained.calibration_file(ckpt).name
    entry.parent.mkdir(parents=True)
    runs.hold_lock(entry.with_suffix(".lock"), "the cache entry")      # a calibration in progress
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(with_tokenizer)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < 120:      # until it waits on the lock (or is done)
        fds = Path(f"/proc/{proc.pid}/fd")
        try:
            if any(os.readlink(f) == str(entry.with_suffix(".lock")) for f in fds.iterdir()):
                break
        except OSError:
            pass
        time.sleep(0.05)
    layers = [{"typical_rms": 7.25}] * 3
    entry.write_text(json.dumps({"version": pretrained.CALIBRATION_VERSION, "text": pretrained.PROBE_TEXT.name,
                                 "layers": layers}))
    runs.release_lock(entry.with_suffix(".lock"))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert stdout.strip().splitlines()[-1] == "7.25"


def test_unwritable_cache_still_calibrates(with_tokenizer, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = tmp_path / "run"
    args = tiny_args(with_tokenizer, out, "--steps", "2", "--eval-every", "2")
    args[args.index("--input-scale") + 1] = "auto"
    res = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "BG_CACHE": str(blocker / "cache")})    # a path no one can create
    assert res.returncode == 0, res.stderr[-2000:]
    assert "cannot write the calibration cache" in res.stderr
    assert json.loads((out / "results.json").read_text())["body"]["input_scale"] > 0


@pytest.mark.embedded
def test_first_use_conversion_by_two_processes_at_once(tmp_path):
    """The README demo starts two runs at once on a fresh machine: both convert-or-wait, both succeed,
    and the cache holds one whole model."""
    code = "import runs, pretrained; runs.run_main(lambda: print(pretrained.Checkpoint().dir))"
    env = {**os.environ, "BG_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gemma3-270m"]
    assert (tmp_path / "gemma3-270m" / "model.safetensors").is_file()
