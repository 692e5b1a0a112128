"""ablate.py on a tiny trained checkpoint: sweep, sets, keep-only, and the joint classification."""
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from runs import file_sha256
from test_train import run, tiny_args


@pytest.fixture(scope="module")
def trained(gemma3_wide_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("abl") / "run"
    run(*tiny_args(gemma3_wide_ckpt[0], out, "--steps", "40", "--eval-every", "40", "--lr", "1e-2"))
    return out


def test_sweep_every_head(trained):
    run("ablate.py", "--ckpt", str(trained / "best.pt"), "--samples", "32")
    r = json.loads((trained / "ablate_best_sweep.json").read_text())
    assert len(r["heads"]) == 4 * 4 and r["lengths"] == [8] and r["task"] == "copy"
    assert sorted(v["rank"] for v in r["heads"].values()) == list(range(1, 17))
    deltas = [v["delta"] for v in r["heads"].values()]
    assert any(d != 0 for d in deltas)  # zeroing real heads changes the metric
    assert abs(sum(v["z"] for v in r["heads"].values())) < 1e-6
    top = r["top5"][0]
    assert r["heads"][top]["delta"] == max(deltas)
    for key in ("intact", "config", "eval_seed", "git_commit", "wall_time_s"):
        assert key in r
    assert r["checkpoint_sha256"] == file_sha256(trained / "best.pt")     # bound to the exact file it read


def test_set_and_keep_only(trained):
    ckpt = str(trained / "best.pt")
    all_heads = ",".join(f"L{l}.{h}" for l in range(2, 6) for h in range(4))
    run("ablate.py", "--ckpt", ckpt, "--samples", "32", "--heads", all_heads, "--keep-only", "--out", str(trained / "keep_all.json"))
    r = json.loads((trained / "keep_all.json").read_text())
    assert r["ablated_heads"] == [] and r["delta"] == 0  # keeping every head ablates nothing
    run("ablate.py", "--ckpt", ckpt, "--samples", "32", "--heads", "L3.1", "--keep-only", "--out", str(trained / "keep1.json"))
    r = json.loads((trained / "keep1.json").read_text())
    assert len(r["ablated_heads"]) == 15 and "L3.1" not in r["ablated_heads"]
    out = run("ablate.py", "--ckpt", ckpt, "--heads", "L9.0", check=False)
    assert out.returncode == 2 and "not in this slice" in out.stderr


def test_joint_finds_planted_heads(tmp_path):
    heads = [f"L{l}.{h}" for l in range(6) for h in range(8)]
    rng = random.Random(0)
    planted = {"L2.3", "L4.5", "L5.1"}
    probe = {"heads": {h: {"scores": {"copying": (1.0 if h in planted else rng.uniform(0.05, 0.2)),
                                      "induction": rng.uniform(0, 0.2), "prev_token": rng.uniform(0, 0.2)}} for h in heads}}
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    files = []
    for task in ("copy", "ar"):
        abl = {"task": task, "heads": {h: {"delta": (0.3 if h in planted else rng.gauss(0, 0.01))} for h in heads}}
        (tmp_path / f"{task}.json").write_text(json.dumps(abl))
        files.append(str(tmp_path / f"{task}.json"))
    run("ablate.py", "--joint", str(tmp_path / "probe.json"), *files, "--n-perm", "2000", "--out", str(tmp_path / "joint.json"))
    j = json.loads((tmp_path / "joint.json").read_text())
    assert set(j["both"]) == planted
    # ablation files without a checkpoint hash are recorded as such, never as bound
    assert [x["checkpoint_sha256"] for x in j["read"]] == [None, None] and len(j["probe_sha256"]) == 64
    assert j["hypergeometric"]["p"] < 1e-3 and j["permutation"]["p_perm"] < 0.01
    # shuffle the ablation labels: the coincidence should vanish
    for f in files:
        a = json.loads(open(f).read())
        vals = list(a["heads"].values())
        rng.shuffle(vals)
        a["heads"] = dict(zip(heads, vals))
        open(f, "w").write(json.dumps(a))
    run("ablate.py", "--joint", str(tmp_path / "probe.json"), *files, "--n-perm", "2000", "--out", str(tmp_path / "joint2.json"))
    j2 = json.loads((tmp_path / "joint2.json").read_text())
    assert j2["permutation"]["p_perm"] > 0.05


@pytest.mark.parametrize("script,args,message", [
    ("evaluate.py", ["--samples", "0"], "--samples must be at least 1"),
    ("ablate.py", ["--samples", "-3"], "--samples must be at least 1"),
    ("ablate.py", ["--n-perm", "0"], "--n-perm must be at least 1"),
    ("evaluate.py", ["--out", "/proc/nope/x.json"], "cannot write"),
])
def test_evaluate_and_ablate_bad_flags(trained, script, args, message):
    out = run(script, "--ckpt", str(trained / "best.pt"), "--lengths", "4", *args, check=False)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_stability_of_fingerprints(trained, tmp_path):
    """--stability: Spearman of per-head impact vectors for every pair of sweeps, permutation P."""
    for seed in (5, 6):
        run("ablate.py", "--ckpt", str(trained / "best.pt"), "--samples", "32", "--eval-seed", str(seed),
            "--out", str(tmp_path / f"s{seed}.json"))
    run("ablate.py", "--stability", str(tmp_path / "s5.json"), str(tmp_path / "s6.json"), "--n-perm", "500",
        "--out", str(tmp_path / "stab.json"))
    r = json.loads((tmp_path / "stab.json").read_text())
    assert [x["sha256"] for x in r["read"]] == [file_sha256(tmp_path / f"s{s}.json") for s in (5, 6)]
    assert {x["checkpoint_sha256"] for x in r["read"]} == {file_sha256(trained / "best.pt")}
    (pair,) = r["pairs"]
    assert pair["kind"] == "same task, same condition" and pair["n"] == 16 and 0 < pair["p_perm_within_layer"] <= 1 and -1 <= pair["rho"] <= 1 and 0 < pair["p_perm"] <= 1
    a = json.loads((tmp_path / "s5.json").read_text())["heads"]
    b = json.loads((tmp_path / "s6.json").read_text())["heads"]
    import stats
    heads = sorted(a)
    assert abs(pair["rho"] - stats.spearman([a[h]["impact"] for h in heads], [b[h]["impact"] for h in heads])[0]) < 1e-12
    out = run("ablate.py", "--stability", str(tmp_path / "s5.json"), check=False)
    assert out.returncode == 2 and "at least two" in out.stderr


def test_heads_script_ablates_exactly_the_solved_checkpoints(trained, tmp_path):
    """results/heads/run.sh reads which checkpoints are solved from their own eval_best.json, sweeps
    only those, binds each sweep to its checkpoint by hash, and stops when a sweep fails."""
    repo = Path(__file__).resolve().parents[1]
    suite = tmp_path / "suite"
    errors = {"pretrained__0": 0.01, "pretrained__1": 0.05, "random-init__0": 0.08, "random-init__1": 0.3,
              "shuffled__0": 0.4}                                   # solved: at most 0.1 at 8 pairs
    for name, err in errors.items():
        d = suite / f"mqar__{name}"
        d.mkdir(parents=True)
        shutil.copy(trained / "best.pt", d / "best.pt")
        (d / "eval_best.json").write_text(json.dumps({"errors": {"8": err}}))
    heads = [f"L{l}.{h}" for l in range(2, 6) for h in range(4)]
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"heads": {h: {"scores": {"copying": 0.1 + 0.01 * i, "induction": 0.1, "prev_token": 0.1}}
                                           for i, h in enumerate(heads)}}))
    out = tmp_path / "heads"
    images = tmp_path / "no_images"
    sh = lambda: subprocess.run(["bash", str(repo / "results/heads/run.sh"), str(out), str(suite), str(images)],
                                cwd=repo, capture_output=True, text=True, env={**os.environ, "PROBE": str(probe)})
    r = sh()
    assert r.returncode == 2 and "no image runs folder" in r.stderr      # a folder named but missing is an error
    images.mkdir()
    r = sh()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    made = sorted(p.name for p in out.iterdir())
    assert made == ["ablate_mqar_pretrained_s0.json", "ablate_mqar_pretrained_s1.json", "ablate_mqar_random-init_s0.json",
                    "joint_mqar_pretrained_s0.json", "joint_mqar_pretrained_s1.json",
                    "stability_mqar.json", "stability_mqar_random-init.json"], made
    for f in made[:3]:
        a = json.loads((out / f).read_text())
        assert a["checkpoint_sha256"] == file_sha256(trained / "best.pt") and len(a["heads"]) == 16
    assert "not solved, not ablated" in r.stderr and "mqar__shuffled__0" in r.stderr
    # another token suite (TOKEN_SUITES): the same rule at its own ablation length, outputs named by task;
    # a trainable stack (scratch) is never ablated
    copy = tmp_path / "copy_suite"
    for name, err in {"pretrained__0": 0.05, "pretrained__1": 0.2, "random-init__0": 0.02, "scratch__0": 0.0}.items():
        d = copy / f"copy__{name}"
        d.mkdir(parents=True)
        shutil.copy(trained / "best.pt", d / "best.pt")
        (d / "eval_best.json").write_text(json.dumps({"errors": {"4": err, "8": 0.0}}))
    run_with = lambda suites: subprocess.run(["bash", str(repo / "results/heads/run.sh"), str(out), str(suite), str(images)],
                                             cwd=repo, capture_output=True, text=True,
                                             env={**os.environ, "PROBE": str(probe), "TOKEN_SUITES": suites})
    r = run_with(f"copy:{copy}")
    assert r.returncode == 2 and "TASK:RUNS:LENGTH" in r.stderr
    r = run_with(f"copy:{copy}:4")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    new = sorted(p.name for p in out.iterdir() if p.name not in made)
    assert new == ["ablate_copy_pretrained_s0.json", "ablate_copy_random-init_s0.json", "joint_copy_pretrained_s0.json",
                   "stability_copy_random-init.json"], new
    assert json.loads((out / "ablate_copy_pretrained_s0.json").read_text())["lengths"] == [4]
    assert "copy__pretrained__1" in r.stderr and "not solved" in r.stderr
    # a kept sweep of another length is refused, not reused; a folder without the task's runs is an
    # error, not "none solved"; a path may hold ':'
    for p in copy.iterdir():
        (p / "eval_best.json").write_text(json.dumps({"errors": {"4": 0.05, "8": 0.05}}))
    r = run_with(f"copy:{copy}:8")
    assert r.returncode == 2 and "swept length [4], not 8" in r.stderr, r.stderr[-2000:]
    r = run_with(f"ar:{copy}:4")
    assert r.returncode == 2 and "no ar__CONDITION__SEED runs" in r.stderr
    colon = tmp_path / "a:b"
    shutil.copytree(copy, colon)
    r = run_with(f"copy:{colon}:4")
    assert r.returncode == 0, r.stderr[-2000:]
    # a kept sweep is bound to its checkpoint: one that read another file is refused, not reused
    kept = out / "ablate_mqar_pretrained_s1.json"
    a = json.loads(kept.read_text())
    kept.write_text(json.dumps({**a, "checkpoint_sha256": "0" * 64}))
    r = sh()
    assert r.returncode == 2 and "read another checkpoint" in r.stderr, r.stderr[-2000:]
    kept.write_text(json.dumps(a))
    # a held-out file that cannot be read stops the script; it is never taken for "not solved"
    ev = suite / "mqar__shuffled__0" / "eval_best.json"
    ev.write_text(json.dumps({"errors": {"4": 0.4}}))
    r = sh()
    assert r.returncode == 2 and "cannot read errors.8" in r.stderr, r.stderr[-2000:]
    ev.write_text(json.dumps({"errors": {"8": 0.4}}))
    # a sweep that fails stops the script (no analysis is built on a missing sweep)
    (out / "ablate_mqar_random-init_s0.json").unlink()
    (suite / "mqar__random-init__0" / "best.pt").write_bytes(b"not a checkpoint")
    r = sh()
    assert r.returncode != 0 and not (out / "ablate_mqar_random-init_s0.json").exists()
