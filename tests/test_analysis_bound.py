"""An analysis is about exactly the checkpoint it read. ablate.py records each checkpoint's sha256,
the joint and stability tests and the head figures record the hash of every file they read and of
the checkpoint behind it; these tests fail when a committed analysis names a checkpoint whose file
here has another hash, and say so (skip, with the list) when a checkpoint is not on this machine.

Analyses committed before the hash was recorded are listed in UNBOUND, each with what is known of
it; the list may only shrink (a rerun analysis records its hashes and must leave the list)."""
import json
from pathlib import Path

import pytest

from runs import file_sha256

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"

# file -> why it cannot be bound to a checkpoint. "first suite": its config differs from the run now
# at the path it names (the archived first MQAR suite, results/archive/mqar_first/, input scale
# learn; the current suite's pretrained runs are at auto). "config matches": the run now at that
# path has the same settings, but without a hash nothing shows it is the same file.
FIRST_SUITE, MATCHES, ARCHIVED = "first suite", "config matches", "archived"
UNBOUND = {
    "heads/ablate_mqar_pretrained_s0.json": FIRST_SUITE,
    "heads/ablate_mqar_pretrained_s1.json": FIRST_SUITE,
    "heads/ablate_mqar_pretrained_s2.json": FIRST_SUITE,
    "heads/joint_mqar_L6-11.json": FIRST_SUITE,
    "heads/stability_mqar.json": FIRST_SUITE,
    "heads/stability_images_mqar.json": FIRST_SUITE,
    "heads/stability_mqar_random-init.json": FIRST_SUITE,
    "heads/stability_mqar_shuffled.json": FIRST_SUITE,
    "heads/ablate_mqar_random-init_s0.json": MATCHES,
    "heads/ablate_mqar_random-init_s1.json": MATCHES,
    "heads/ablate_mqar_random-init_s2.json": MATCHES,
    "heads/ablate_mqar_shuffled_s0.json": MATCHES,
    "heads/ablate_mqar_shuffled_s2.json": MATCHES,
    "heads/ablate_images_pretrained_s0.json": MATCHES,
    "heads/ablate_images_pretrained_s1.json": MATCHES,
    "heads/ablate_images_pretrained_s2.json": MATCHES,
    "archive/heads_near_chance/joint_L6-11.json": ARCHIVED,
    "archive/ogbench_5k_batch64/pretrained/ablate_last_sweep.json": ARCHIVED,
    "archive/token_suite_700steps/ar__gemma-pretrained__0/ablate_last_sweep.json": ARCHIVED,
    "archive/token_suite_700steps/copy__gemma-pretrained__0/ablate_last_sweep.json": ARCHIVED,
}


def analyses(results=RESULTS):
    """{path under results/: (kind, JSON)} for every committed ablation sweep or set, joint test and
    stability test, found by what the file holds."""
    out = {}
    for f in sorted(results.rglob("*.json")):
        try:
            d = json.loads(f.read_text())
        except ValueError:
            continue
        if not isinstance(d, dict):
            continue
        kind = ("ablation" if "checkpoint" in d and ("heads" in d or "ablated_heads" in d) else
                "joint" if "ablations" in d and "both" in d else
                "stability" if "pairs" in d and "files" in d else None)
        if kind:
            out[str(f.relative_to(results))] = (kind, d)
    return out


def bound_checkpoints(kind, d):
    """[(checkpoint path, sha256)] an analysis records; None where it records none."""
    if kind == "ablation":
        return [(d["checkpoint"], d.get("checkpoint_sha256"))]
    if "read" not in d:
        return None
    return [(r["checkpoint"], r["checkpoint_sha256"]) for r in d["read"]]


def test_every_analysis_records_the_checkpoints_it_read():
    found = analyses()
    unlisted = [f for f, (kind, d) in found.items() if f not in UNBOUND
                and (bound_checkpoints(kind, d) is None or any(h is None for _, h in bound_checkpoints(kind, d)))]
    assert not unlisted, f"analyses that record no checkpoint hash: {unlisted}"
    # the list only shrinks: a listed file that is gone, or now records its hashes, must leave it
    stale = [f for f in UNBOUND if f not in found or all(h for _, h in bound_checkpoints(*found[f]) or [(None, None)])]
    assert not stale, f"remove from UNBOUND: {stale}"


def test_joint_and_stability_read_the_committed_ablation_files():
    """A joint or stability test records each ablation file's sha256: it must be the committed file's."""
    changed = []
    for f, (kind, d) in analyses().items():
        for r in d.get("read", []) if kind != "ablation" else []:
            path = REPO / r["file"]
            if path.is_file() and file_sha256(path) != r["sha256"]:
                changed.append(f"{f}: {r['file']}")
    assert not changed, f"analyses built from another version of these files (rerun them): {changed}"


def check(results=RESULTS, repo=REPO):
    """(analyses whose checkpoint file here has another hash, checkpoints not on this machine)."""
    mismatched, absent = [], []
    for f, (kind, d) in analyses(results).items():
        for ckpt, sha in bound_checkpoints(kind, d) or []:
            if sha is None:
                continue
            path = Path(repo) / ckpt
            if not path.is_file():
                absent.append(ckpt)
            elif file_sha256(path) != sha:
                mismatched.append(f"{f}: {ckpt}")
    return mismatched, sorted(set(absent))


def test_committed_analyses_name_checkpoints_with_the_hash_they_record():
    mismatched, absent = check()
    assert not mismatched, f"the checkpoint now at this path is not the one analysed: {mismatched}"
    if absent:
        pytest.skip(f"cannot check {len(absent)} checkpoint(s) not on this machine: {absent[:5]}")
    if not any(bound_checkpoints(k, d) and all(h for _, h in bound_checkpoints(k, d)) for k, d in analyses().values()):
        pytest.skip("no committed analysis records a checkpoint hash yet (see UNBOUND)")


def test_head_figures_were_drawn_from_the_committed_files():
    """plot.py writes <figure>.sources.json; a head figure drawn from an older ablation file fails."""
    stale = []
    for side in sorted((RESULTS / "figures").glob("heads_*.sources.json")):
        for r in json.loads(side.read_text())["sources"]:
            path = REPO / r["file"]
            if path.is_file() and file_sha256(path) != r["sha256"]:
                stale.append(f"{side.name}: {r['file']}")
    assert not stale, f"redraw with python plot.py --only heads: {stale}"
    assert list((RESULTS / "figures").glob("heads_*.sources.json")), "the head figures name no sources (python plot.py --only heads)"


def test_the_pages_say_which_head_analyses_are_not_bound():
    """While MQAR head analyses from the first suite are committed, both pages say so beside them."""
    if FIRST_SUITE not in UNBOUND.values():
        return
    for page in ("README.src.md", "results/README.src.md"):
        text = (REPO / page).read_text()
        assert "archived first suite" in text and "not yet ablated" in text, page


def test_an_analysis_with_another_checkpoint_is_caught(tmp_path):
    """The check itself: an ablation whose recorded hash differs from the file now at its path."""
    ckpt = tmp_path / "runs" / "best.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"one checkpoint")
    (tmp_path / "abl.json").write_text(json.dumps({"checkpoint": "runs/best.pt", "checkpoint_sha256": file_sha256(ckpt),
                                                   "heads": {}}))
    assert check(tmp_path, tmp_path) == ([], [])
    ckpt.write_bytes(b"another run written to the same path")
    assert check(tmp_path, tmp_path) == (["abl.json: runs/best.pt"], [])
    ckpt.unlink()
    assert check(tmp_path, tmp_path) == ([], ["runs/best.pt"])
