"""tasks/walker2d_medium.py on a tiny budget: SAC trains and resumes, the recorder writes a Minari
dataset that training reads as real (not stand-in) data, and what it refuses."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("stable_baselines3")
pytest.importorskip("minari")
from runs import file_sha256  # noqa: E402
from tasks import walker2d as W  # noqa: E402
from tasks import walker2d_medium as WM  # noqa: E402

TINY = ["--learning-starts", "50", "--eval-every", "100", "--eval-episodes", "1", "--buffer-size", "1000"]


def run(*args, minari_dir, check=True):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_dir), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "tasks.walker2d_medium", *map(str, args)], cwd=REPO,
                         capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def test_make_from_nothing_then_training_reads_it_as_real_data(tmp_path, monkeypatch):
    minari_dir, sac_dir = tmp_path / "minari", tmp_path / "sac"
    # a return of -1000 counts as "medium" here, so the tiny run stops at its first evaluation
    run("make", "--out", sac_dir, *TINY, "--max-steps", "300", "--stop-return", "-1000", "--transitions", "400",
        "--id", "local/w2d-medium-test-v0", minari_dir=minari_dir)
    curve = json.loads((sac_dir / "curve.json").read_text())
    assert curve["medium_reached"] and curve["steps_done"] == 100 and len(curve["history"]) == 1
    assert "git_commit" in curve and curve["config"]["seed"] == 0
    s = json.loads((sac_dir / "dataset_summary.json").read_text())
    assert s["transitions"] >= 400 and s["policy_sha256"] == file_sha256(sac_dir / "sac.pt")
    assert s["return_min"] <= s["return_mean"] <= s["return_max"]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_dir))
    episodes, standin = W.load_minari("local/w2d-medium-test-v0")
    assert not standin and sum(len(e["actions"]) for e in episodes) == s["transitions"]
    assert len(episodes) == s["episodes"]
    import minari
    meta = minari.load_dataset("local/w2d-medium-test-v0").storage.metadata
    assert s["policy_sha256"] in meta["description"] and meta["algorithm_name"].startswith(WM.MEDIUM_TAG)
    # the same id again is refused, nothing overwritten
    out = run("record", "--sac", sac_dir, "--id", "local/w2d-medium-test-v0", "--transitions", "10",
              minari_dir=minari_dir, check=False)
    assert out.returncode == 2 and "already exists" in out.stderr


def test_sac_resumes_from_its_checkpoint_and_refuses_another_seed(tmp_path):
    sac_dir = tmp_path / "sac"
    run("sac", "--out", sac_dir, *TINY, "--max-steps", "100", "--stop-return", "1e9", minari_dir=tmp_path)
    first = torch.load(sac_dir / "sac.pt", weights_only=True)
    assert first["num_timesteps"] == 100
    out = run("sac", "--out", sac_dir, *TINY, "--max-steps", "200", "--stop-return", "1e9", minari_dir=tmp_path)
    assert "resuming" in out.stdout
    second = torch.load(sac_dir / "sac.pt", weights_only=True)
    curve = json.loads((sac_dir / "curve.json").read_text())
    assert second["num_timesteps"] == 200 and [h["step"] for h in curve["history"]] == [100, 200]
    assert not curve["medium_reached"]
    # the resumed run learnt from where the first stopped: its actor moved on from the checkpoint
    k = next(k for k in first["params"]["policy"] if "actor" in k and k.endswith("weight"))
    assert not torch.equal(first["params"]["policy"][k], second["params"]["policy"][k])
    import numpy as np
    with np.load(sac_dir / "buffer.npz") as z:
        assert len(z["observations"]) == 200 and int(z["pos"]) == 200
    out = run("sac", "--out", sac_dir, *TINY, "--seed", "1", "--max-steps", "300", minari_dir=tmp_path, check=False)
    assert out.returncode == 2 and "seed=0" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    # a policy short of medium is not recorded unless asked
    out = run("record", "--sac", sac_dir, "--id", "local/w2d-not-medium-v0", minari_dir=tmp_path, check=False)
    assert out.returncode == 2 and "before medium" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["sac", "--eval-every", "0"], "--eval-every"),
    (["record", "--id", "no-version"], "Minari id"),
    (["record", "--sac", "nowhere", "--id", "local/x-v0"], "no sac.pt"),
    (["fly"], "usage"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, message):
    out = run(*args, minari_dir=tmp_path, check=False)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1
