"""Default outputs land under runs/ (never in results/ or the working directory), an existing output is
kept without --force, and every entry point's --help works."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd, check=True):
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_aggregate_writes_under_runs_reads_held_out_and_refuses_to_overwrite(tmp_path):
    src = tmp_path / "results" / "mqar"
    shutil.copytree(REPO / "results" / "token_suite" / "mqar" / "runs", src)
    before = files(src)
    res = run(str(REPO / "evaluate.py"), "--aggregate", "results/mqar", "--stream", "held-out", cwd=tmp_path)
    assert files(src) == before                                    # nothing new in the folder read
    out = tmp_path / "runs" / "summaries" / "results-mqar__held-out__best.json"
    assert out.is_file() and "held-out" in res.stdout and "95% CI" in res.stdout
    summary = json.loads((REPO / "results" / "token_suite" / "mqar" / "summary.json").read_text())
    rows = {r["condition"].split("-L")[0]: r for r in json.loads(out.read_text())["conditions"]}
    for c in ("pretrained", "random-init"):       # the README's table, CIs included
        assert rows[c]["errors"]["8"] == summary["conditions"][c]["errors"]["8"]
    again = run(str(REPO / "evaluate.py"), "--aggregate", "results/mqar", "--stream", "held-out", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "--force" in again.stderr
    run(str(REPO / "evaluate.py"), "--aggregate", "results/mqar", "--stream", "held-out", "--force", cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "runs"]


def test_joint_and_stability_write_under_runs_and_refuse_to_overwrite(tmp_path):
    h = REPO / "results" / "heads"
    ablations = [str(h / f"ablate_mqar_pretrained_s{s}.json") for s in (0, 1)]
    run(str(REPO / "ablate.py"), "--stability", *ablations, "--n-perm", "50", cwd=tmp_path)
    run(str(REPO / "ablate.py"), "--joint", str(REPO / "results" / "probe" / "probe_gemma3-270m.json"), ablations[0],
        "--n-perm", "20", cwd=tmp_path)
    assert files(tmp_path) == ["runs/joint.json", "runs/stability.json"]
    again = run(str(REPO / "ablate.py"), "--stability", *ablations, "--n-perm", "50", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    run(str(REPO / "ablate.py"), "--stability", *ablations, "--n-perm", "50", "--force", cwd=tmp_path)


def test_probe_defaults_under_runs_and_keeps_an_existing_output(gemma3_ckpt, tmp_path):
    ckpt = gemma3_ckpt[0]
    existing = tmp_path / "runs" / "probe" / f"probe_{Path(ckpt).name}.json"
    existing.parent.mkdir(parents=True)
    existing.write_text("{}")
    res = run(str(REPO / "probe.py"), "--model", str(ckpt), cwd=tmp_path, check=False)
    assert res.returncode == 2 and "--force" in res.stderr and existing.read_text() == "{}"


ENTRY_POINTS = [["train.py"], ["train.py", "--task", "images"], ["train.py", "--task", "ogbench"],
                ["train.py", "--task", "walker2d"], ["sweep.py"], ["evaluate.py"], ["ablate.py"], ["probe.py"],
                ["bench.py"], ["plot.py"], ["regime.py"], ["report.py"],
                ["-m", "tasks.images"], ["-m", "tasks.images", "train"], ["-m", "tasks.images", "compare-bridges"],
                ["-m", "tasks.ogbench"], ["-m", "tasks.ogbench", "train"], ["-m", "tasks.ogbench", "generate"],
                ["-m", "tasks.ogbench", "compare"], ["-m", "tasks.ogbench", "check"], ["-m", "tasks.ogbench", "seeds"],
                ["-m", "tasks.walker2d"], ["-m", "tasks.walker2d", "train"], ["-m", "tasks.walker2d", "record"],
                ["-m", "tasks.walker2d", "compare"], ["-m", "tasks.walker2d", "pick-lr"], ["-m", "tasks.walker2d", "seeds"],
                ["-m", "tasks.walker2d_medium"], ["-m", "tasks.walker2d_medium", "make"],
                ["-m", "tasks.walker2d_medium", "sac"], ["-m", "tasks.walker2d_medium", "record"],
                ["-m", "tasks.floors", "floors"], ["-m", "tasks.floors", "verdict"]]


def documented_flags(entry):
    """Flags docs/scripts.md names where it documents this entry: for a `python -m tasks.X` command, its
    module's own bullet (so a flag documented only under another script does not count); for a script
    or a module's `train` (train.py's flags), the whole page: the tasks share flags across sections."""
    text = (REPO / "docs" / "scripts.md").read_text()
    if entry[0] == "-m" and entry[-1] != "train":
        bullets = re.findall(r"^- `python -m " + re.escape(entry[1]) + r"[ `].*?(?=^- |^#|\Z)", text, re.M | re.S)
        assert bullets, f"docs/scripts.md has no bullet for python -m {entry[1]}"
        text = "\n".join(bullets)
    return set(re.findall(r"--[a-z0-9][a-z0-9-]*", text))


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=" ".join)
def test_help_exits_0_and_every_flag_is_documented(entry, tmp_path):
    res = run(*[str(REPO / a) if a.endswith(".py") else a for a in entry], "--help", cwd=REPO, check=False)
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr[-2000:]
    flags = set(re.findall(r"^  (?:-\w(?: \S+)?, )?(--[a-z0-9][a-z0-9-]*)", res.stdout, re.M)) - {"--help"}
    documented = documented_flags(entry)
    assert flags <= documented, f"{' '.join(entry)}: not in docs/scripts.md: {sorted(flags - documented)}"


def test_help_lists_commands_and_dry_run():
    assert "compare-bridges" in run("-m", "tasks.images", "--help", cwd=REPO).stdout
    assert "--dry-run" in run("train.py", "--task", "images", "--help", cwd=REPO).stdout
    for module, command in (("tasks.ogbench", "generate"), ("tasks.walker2d", "record"), ("tasks.walker2d_medium", "make")):
        assert command in run("-m", module, "--help", cwd=REPO).stdout


def test_regime_takes_the_sweeps_condition_names(gemma3_ckpt, tmp_path):
    res = run(str(REPO / "regime.py"), "--model", str(gemma3_ckpt[0]), "--layers", "2-3", "--conditions", "random-init",
              "--scales", "1", "--seeds", "0", "--out", "runs/regime.json", cwd=tmp_path)
    assert list(json.loads((tmp_path / "runs" / "regime.json").read_text())["bodies"]) == ["random-init"], res.stdout
