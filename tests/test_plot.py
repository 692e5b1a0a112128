"""plot.py draws every figure kind from small synthetic results JSON, and refuses bad JSON in one line."""
import json
import subprocess
import sys

import pytest

REPO = __import__("runs").REPO
pytest.importorskip("matplotlib")


def ci(m):
    return {"mean": m, "std": 0.01, "ci95": [m - 0.02, m + 0.02], "values": [m - 0.01, m + 0.01]}


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def synthetic_results(root):
    heads = [f"L{layer}.{h}" for layer in (2, 3) for h in range(2)]
    for seed in (0, 1):
        write(root / "heads" / f"ablate_mqar_pretrained_s{seed}.json",
              {"metric": "per_bit_error", "intact": 0.01, "heads": {h: {"impact": 0.1 * i} for i, h in enumerate(heads)}})
    write(root / "probe" / "probe_tiny.json",
          {"heads": {h: {"scores": {"copying": 0.05 * i, "induction": 0.2 - 0.05 * i}} for i, h in enumerate(heads)}})
    write(root / "heads" / "joint_mqar_L2-3.json", {"permutation": {"primitive": "induction", "k": 1, "n": 2, "p_perm": 0.2}})
    for cond, err in (("pretrained", 0.01), ("random-init", 0.3)):
        for seed in (0, 1):
            write(root / "token_suite" / "mqar" / "runs" / f"mqar__{cond}__{seed}" / "results.json",
                  {"metric": "per_bit_error", "select_len": 8, "condition": cond,
                   "history": [{"step": s, "errors": {"8": err * (2 - s / 100)}} for s in (50, 100)]})
    write(root / "token_suite" / "mqar" / "summary.json",
          {"values": "errors", "conditions": {c: {"n": 2, "errors": {L: ci(e) for L in ("4", "8", "16")}}
                                              for c, e in (("pretrained", 0.05), ("random-init", 0.3))},
           "floors": {"4": 0.31, "8": 0.36, "16": 0.40}})
    write(root / "token_suite" / "mqar" / "sweep.json", {"protocol": {"train_len": 6}})
    write(root / "images" / "summary.json", {"values": "accuracy", "dataset": "tiny", "conditions": {
        c: {"n": 2, "accuracy": {"test": ci(a)}} for c, a in (("pretrained", 0.8), ("shuffled", 0.7))}})
    run = {"seed": 0, "bridge_curve": [{"step": 100, "train_accuracy": 0.4}, {"step": 200, "train_accuracy": 0.95}],
           "unbridged_test_accuracy": 0.8, "test_accuracy": 0.82}
    write(root / "images" / "summary_bridge_long.json", {"conditions": {"bridge": {"runs": [run, {**run, "seed": 1}]}}})
    write(root / "ogbench" / "mlp" / "results.json", {"condition": "mlp", "history": [
        {"step": s, "eval": {"success_rate": r, "successes": [1] * int(r * 10) + [0] * (10 - int(r * 10))}}
        for s, r in ((1000, 0.1), (2000, 0.5))]})
    write(root / "walker2d" / "medium" / "runs" / "dt" / "results.json", {
        "condition": "pretrained-L8", "dataset_is_standin": False, "dataset": "local/x", "dataset_stats": {"return_mean": 3000.0},
        "normalisation": {"ref_min_return": 0.0, "ref_max_return": 4000.0}, "history": [
        {"step": s, "scores": {"5000": {"score_mean": v}, "2500": {"score_mean": v / 2}}} for s, v in ((100, 20.0), (200, 40.0))]})


def run(*args):
    return subprocess.run([sys.executable, "plot.py", *args], cwd=REPO, capture_output=True, text=True)


def test_every_figure_kind_renders(tmp_path):
    from matplotlib.image import imread
    root = tmp_path / "results"
    synthetic_results(root)
    out = run("--results", str(root))
    assert out.returncode == 0, out.stderr
    figs = sorted((root / "figures").glob("*.png"))
    names = {f.stem for f in figs}
    assert names == {"heads_mqar_pretrained", "curves_mqar", "lengths_mqar", "images_accuracy", "images_bridge",
                     "control_ogbench", "control_walker2d"}, names
    for f in figs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(f)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img[..., :3].std() > 0.05, f.name   # not blank
    only = run("--results", str(root), "--only", "images", "--out", str(tmp_path / "one"))
    assert only.returncode == 0 and sorted(p.name for p in (tmp_path / "one").glob("*.png")) == ["images_accuracy.png", "images_bridge.png"]
    # beside each figure, the hash of every JSON it was drawn from
    side = json.loads((tmp_path / "one" / "images_accuracy.sources.json").read_text())
    from runs import file_sha256
    assert side["figure"] == "images_accuracy.png" and all(r["sha256"] == file_sha256(r["file"]) for r in side["sources"])


@pytest.mark.parametrize("damage,message", [
    ("missing", "no such file"),
    ("malformed", "not valid JSON"),
    ("wrong keys", "malformed results JSON"),
])
def test_missing_or_malformed_json_is_one_line(tmp_path, damage, message):
    root = tmp_path / "results"
    synthetic_results(root)
    f = root / "images" / "summary.json"
    if damage == "missing":
        f.unlink()
    elif damage == "malformed":
        f.write_text("{not json")
    else:
        f.write_text(json.dumps({"conditions": {"pretrained": {"n": 1}}}))
    out = run("--results", str(root), "--only", "images")
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_bad_flags_one_line(tmp_path):
    out = run("--only", "pictures")
    assert out.returncode == 2 and "unknown figure kind" in out.stderr
    out = run("--results", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no such folder" in out.stderr


def test_ogbench_panels_split_by_task_and_data_file():
    import plot
    h = lambda env, sha: {"env": env, "dataset_stats": {"sha256": sha}} if sha else {"env": env, "dataset_stats": {"transitions": 5}}
    runs = [("a", h("scene-play-singletask-task1-v0", "f" * 64)), ("b", h("cube-double-play-singletask-task1-v0", "e" * 64)),
            ("c", h("scene-play-singletask-task1-v0", None)), ("d", h("scene-play-singletask-task1-v0", "f" * 64))]
    panels = plot.ogbench_panels(runs)
    assert [k for k, _ in panels] == [("cube-double-play-singletask-task1-v0", "e" * 64),
                                      ("scene-play-singletask-task1-v0", "5 transitions, task1 success 0.00%"),
                                      ("scene-play-singletask-task1-v0", "f" * 64)]
    assert [f for f, _ in panels[2][1]] == ["a", "d"]
