"""Damaged checkpoints: random bytes, truncations and bit flips of a real one are refused in one line.

A flip that lands where the zip format keeps no meaning (padding, an unused header field) loads the
same state as the intact file, which is fine; anything else must be a UserError, never a traceback."""
import random
import subprocess
import sys

import pytest
import torch

from runs import REPO, UserError, load_checkpoint

REPO = REPO


@pytest.fixture(scope="module")
def real_ckpt(gemma3_wide_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    subprocess.run([sys.executable, "train.py", "--task", "mqar", "--model", str(gemma3_wide_ckpt[0]), "--layers", "2-5",
                    "--input-scale", "1.0", "--steps", "2", "--eval-every", "2", "--train-len", "4", "--eval-lengths", "4",
                    "--select-len", "4", "--eval-samples", "8", "--batch-size", "4", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True)
    return out / "last.pt"


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)   # NaN == NaN here


def damaged(real, seed=0):
    rng = random.Random(seed)
    for _ in range(100):
        yield "random", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4000)))
    for _ in range(100):
        yield "truncated", real[:rng.randrange(len(real))]
    for _ in range(250):
        b = bytearray(real)
        for _ in range(rng.randint(1, 4)):
            j = rng.randrange(len(b))
            b[j] ^= 1 << rng.randrange(8)
        yield "flipped", bytes(b)


def test_damaged_checkpoints_are_refused_in_one_line(real_ckpt, tmp_path):
    real = real_ckpt.read_bytes()
    intact = load_checkpoint(real_ckpt)
    counts = {"refused": 0, "same": 0}
    for kind, data in damaged(real):
        path = tmp_path / "x.pt"
        path.write_bytes(data)
        try:
            state = load_checkpoint(path)
        except UserError as e:
            assert "\n" not in str(e), (kind, str(e))
            counts["refused"] += 1
            continue
        assert kind == "flipped" and same(state, intact), kind      # loaded: must be exactly the intact state
        counts["same"] += 1
    assert counts["refused"] >= 350                                 # most damage is caught, not harmless


@pytest.mark.parametrize("script", ["evaluate.py", "ablate.py"])
def test_scripts_refuse_damaged_checkpoints_with_exit_2_and_write_nothing(real_ckpt, tmp_path, script):
    real = real_ckpt.read_bytes()
    for i, (kind, data) in enumerate(damaged(real, seed=1)):
        if i % 90:                                                   # a handful of each kind; the loader test has them all
            continue
        path = tmp_path / f"{kind}.pt"
        path.write_bytes(data)
        try:
            load_checkpoint(path)
            continue                                                 # harmless flip: the script would run normally
        except UserError:
            pass
        out = tmp_path / "out.json"
        res = subprocess.run([sys.executable, script, "--ckpt", str(path), "--out", str(out)], cwd=REPO,
                             capture_output=True, text=True)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (kind, res.stderr[-500:])
        assert not out.exists()
