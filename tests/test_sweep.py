"""sweep.py end to end on a tiny checkpoint: the same search for every condition, the winner, the
seed runs, the held-out summary, and a second call that finds everything done."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_sweep_searches_alike_then_seeds_then_summarises(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "suite"
    cmd = [sys.executable, "sweep.py", "--task", "copy", "--model", str(gemma3_wide_ckpt[0]), "--layers", "2-5",
           "--conditions", "pretrained,none", "--input-scales", "1.0,2.0", "--train-len", "3", "--eval-lengths", "2,4", "--select-len", "4",
           "--search-steps", "2", "--steps", "3", "--eval-every", "3", "--batch-size", "4", "--warmup", "1",
           "--eval-samples", "8", "--eval-samples-final", "16", "--jobs", "2", "--no-floor-check", "--out", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    sweep = json.loads((out / "sweep.json").read_text())
    rows = sweep["search"]
    # a few steps leave every run at the floor: --no-floor-check seeds them anyway, the verdict is kept
    assert "floor_check" in sweep["chosen"]["pretrained"] and sweep["floors"] == {"2": 0.5, "4": 0.5}
    # every grid point was run for every condition: lr grid x both scales for the slice, x the first for none
    for c, scales in (("pretrained", {"1.0", "2.0"}), ("none", {"1.0"})):
        lrs = sweep["grids"][c]["lr"]
        assert len(lrs) >= 3
        got = {(x["lr"], x["input_scale"]) for x in rows if x["condition"] == c}
        assert got == {(lr, s) for lr in lrs for s in scales}
        best = min((x for x in rows if x["condition"] == c), key=lambda x: x["val_error"])
        assert sweep["chosen"][c]["lr"] == best["lr"] and sweep["chosen"][c]["input_scale"] == best["input_scale"]
    # search and seed runs evaluate only the selection length during training (the default --track-lengths)
    run1 = json.loads((out / "runs" / "copy__pretrained__1" / "results.json").read_text())
    assert set(run1["history"][-1]["errors"]) == {"4"} and run1["config"]["lr"] == float(sweep["chosen"]["pretrained"]["lr"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conditions"]["pretrained"]["n"] == 3 and summary["conditions"]["none"]["n"] == 2
    # the reported seeds start at 1: seed 0 is the search's, selected on its own validation curve
    assert summary["conditions"]["pretrained"]["seeds"] == [1, 2, 3] and not (out / "runs" / "copy__pretrained__0").exists()
    assert set(summary["conditions"]["pretrained"]["errors"]) == {"2", "4"}   # held-out at every --eval-lengths
    for L in ("2", "4"):
        e = summary["conditions"]["none"]["errors"][L]
        assert e["ci95"][0] <= e["mean"] <= e["ci95"][1] and len(e["values"]) == 2
        assert len(summary["ratios_to_pretrained"]["none"][L]["values"]) == 2
    # a second call trains nothing
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    to_go = [line for line in r.stdout.splitlines() if "to go" in line]
    assert r.returncode == 0 and len(to_go) >= 2 and all(line.endswith(" 0 to go") for line in to_go), r.stdout
    # the regime each evaluated checkpoint ran in, per seed (none has no body)
    reg = summary["conditions"]["pretrained"]["regime"]
    assert len(reg) == 3 and all(r["input_scale"] == float(sweep["chosen"]["pretrained"]["input_scale"]) for r in reg)
    assert summary["conditions"]["none"]["regime"] == [None, None]
    table = subprocess.run([sys.executable, "sweep.py", "--table", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert table.returncode == 0 and "| pretrained |" in table.stdout and "| none / pretrained |" in table.stdout, table.stdout
    # --seeds raises every condition to that count: only the missing seed is trained and evaluated
    before = {d.name: (d / "results.json").stat().st_mtime for d in (out / "runs").iterdir()}
    r = subprocess.run(cmd + ["--seeds", "3"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    after = {d.name: (d / "results.json").stat().st_mtime for d in (out / "runs").iterdir()}
    assert set(after) - set(before) == {"copy__none__3"} and all(after[k] == v for k, v in before.items())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conditions"]["none"]["n"] == 3 and summary["conditions"]["pretrained"]["n"] == 3
    # a call with fewer seeds than the suite holds would rewrite its summary with less: refused
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "--seeds 3" in r.stderr, r.stderr[-2000:]
    # so would another first seed: the folder's seed runs started at 1
    r = subprocess.run(cmd + ["--seeds", "3", "--first-seed", "0"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "--first-seed 1" in r.stderr, r.stderr[-2000:]
    # a seed run finished elsewhere, never evaluated, its checkpoints gone: a clear error, not a crash
    lost = out / "runs" / "copy__none__1"
    (lost / "eval_best.json").unlink()
    (lost / "best.pt").unlink()
    r = subprocess.run(cmd + ["--seeds", "3"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "copy__none__1" in r.stderr and "delete those folders" in r.stderr, r.stderr[-2000:]


def test_one_condition_name_for_sweep_keys_folders_and_json():
    """Every sweep condition (its keys name folders and summaries) is runs.condition_name of its own
    flags (what every results JSON records), bridge variants included."""
    import sweep
    from runs import condition_name
    for cond, (flags, *_rest) in {**sweep.CONDITIONS, **sweep.BRIDGES}.items():
        cfg = {"substrate": "gemma", "init": "pretrained", "layers": "6-11"}
        cfg.update({flags[i].lstrip("-"): flags[i + 1] for i in range(0, len(flags), 2)})
        if cond in sweep.BRIDGES:
            cfg.update(bridge_steps=200, bridge_layer_ids=[9, 10, 11] if cond == "bridge-partial" else list(range(6, 12)))
        assert condition_name(cfg) == cond, (cond, condition_name(cfg))


def test_images_sweep_with_bridge_conditions(gemma3_ckpt, image_folder, tmp_path):
    """--task images: the same search for every condition incl. the bridge variants, selection on
    validation accuracy, test accuracy and per-seed differences to pretrained in the summary."""
    out = tmp_path / "img"
    cmd = [sys.executable, "sweep.py", "--task", "images", "--dataset", str(image_folder), "--image-size", "8",
           "--model", str(gemma3_ckpt[0]), "--layers", "2-5", "--input-scales", "1.0", "--bridge-steps", "2",
           "--conditions", "pretrained,bridge-partial", "--search-steps", "2", "--steps", "3", "--eval-every", "3",
           "--batch-size", "4", "--warmup", "1", "--jobs", "2", "--out", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    sweep = json.loads((out / "sweep.json").read_text())
    for c in ("pretrained", "bridge-partial"):
        rows = [x for x in sweep["search"] if x["condition"] == c]
        assert {x["lr"] for x in rows} == set(sweep["grids"][c]["lr"])
        res = json.loads((Path(rows[0]["run"]) / "results.json").read_text())
        assert rows[0]["val_error"] == 1 - res["final"]["val_accuracy"]
    partial = json.loads((out / "runs" / "images__bridge-partial__1" / "results.json").read_text())
    assert partial["config"]["bridge_layer_ids"] == [4, 5]         # the slice 2-5 without its first two layers
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "top1_accuracy" and summary["conditions"]["pretrained"]["n"] == 3
    d = summary["differences_to_pretrained"]["bridge-partial"]["test"]
    pre, bri = (summary["conditions"][c]["accuracy"]["test"]["values"] for c in ("pretrained", "bridge-partial"))
    assert d["values"] == [pre[i] - bri[i] for i in range(2)]
    table = subprocess.run([sys.executable, "sweep.py", "--table", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert table.returncode == 0 and "test accuracy" in table.stdout and "pretrained - bridge-partial" in table.stdout


def test_a_run_stopped_after_its_bridge_is_not_finished(tmp_path):
    import sweep
    for done, bridge, want in ((4, 4, False), (5, 4, False), (6, 4, True), (6, 0, True), (5, 0, False)):
        (tmp_path / "results.json").write_text(json.dumps({"steps_done": done, "config": {"bridge_steps": bridge}}))
        assert sweep.finished(tmp_path, 2 if bridge else 6) is want, (done, bridge)


def test_scale_choices_and_superseded_seed_runs(tmp_path):
    import sweep
    choices = ["auto", "learn", "1"]
    assert sweep.scale_choices(sweep.CONDITIONS["shuffled"], choices) == choices
    assert sweep.scale_choices(sweep.CONDITIONS["gpt2-random"], choices) == ["auto", "learn"]   # its auto is 1
    assert sweep.scale_choices(sweep.CONDITIONS["none"], choices) == ["auto"]
    run = tmp_path / "runs" / "mqar__random-init__0"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"config": {"lr": 0.01, "input_scale": "learn"}}))
    sweep.set_aside_if_other_setting(run, tmp_path, {"lr": "1e-2", "input_scale": "learn"})
    assert run.exists()                                                   # same setting: kept
    sweep.set_aside_if_other_setting(run, tmp_path, {"lr": "1e-2", "input_scale": "1"})
    assert not run.exists() and (tmp_path / "superseded" / "mqar__random-init__0__lr0.01__scale-learn" / "results.json").exists()


def test_confirm_reruns_each_scales_best_rate_at_the_full_budget(gemma3_wide_ckpt, tmp_path):
    out = tmp_path / "suite"
    cmd = [sys.executable, "sweep.py", "--task", "copy", "--model", str(gemma3_wide_ckpt[0]), "--layers", "2-5",
           "--conditions", "pretrained", "--input-scales", "1.0,2.0", "--train-len", "3", "--eval-lengths", "2,4",
           "--select-len", "4", "--search-steps", "2", "--steps", "4", "--eval-every", "2", "--batch-size", "4",
           "--warmup", "1", "--eval-samples", "8", "--jobs", "2", "--confirm", "--phase", "search", "--out", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    sweep = json.loads((out / "sweep.json").read_text())
    rows = sweep["confirm"]
    # per input-scale choice: the best rate the short search found for it and its two ladder neighbours
    import sweep as S
    for scale in ("1.0", "2.0"):
        search = [s for s in sweep["search"] if s["input_scale"] == scale]
        i = S.LADDER.index(min(search, key=lambda s: s["val_error"])["lr"])
        want = {S.LADDER[j] for j in (i - 1, i, i + 1) if 0 <= j < len(S.LADDER)}
        got = {x["lr"] for x in rows if x["input_scale"] == scale}
        assert want <= got, (scale, rows)
        # beyond those, only rates the confirmation's own edge rule added: the best of what it reran sits
        # inside the rates rerun for that choice, unless the ladder ends there (then it is reported)
        lrs = sorted(got, key=float)
        best = S.strict_best(lrs, lambda lr: next(x["val_error"] for x in rows if (x["lr"], x["input_scale"]) == (lr, scale)))
        assert (best in (lrs[0], lrs[-1])) == (scale in sweep["confirm_open_edges"].get("pretrained", {})), (scale, rows)
        assert best not in (lrs[0], lrs[-1]) or best in (S.LADDER[0], S.LADDER[-1]), (scale, rows)
        assert len(got - want) <= len(S.LADDER), got
    for x in rows:
        assert x["steps"] == 4
        res = json.loads((out / "confirm" / f"pretrained__lr{x['lr']}__scale-{x['input_scale']}" / "results.json").read_text())
        assert res["steps_done"] == 4 and x["val_error"] == min(h["errors"]["4"] for h in res["history"])
        searched = [s["val_error"] for s in sweep["search"] if (s["lr"], s["input_scale"]) == (x["lr"], x["input_scale"])]
        assert x["search_val_error"] == (searched[0] if searched else None)
    best = min(rows, key=lambda x: x["val_error"])
    assert sweep["chosen"]["pretrained"]["lr"] == best["lr"] and sweep["chosen"]["pretrained"]["input_scale"] == best["input_scale"]
    assert sweep["chosen_by_search"]["pretrained"]["val_error"] == min(s["val_error"] for s in sweep["search"])
    # no input-scale choice ends with its best rate at an end of its grid, unless the ladder ran out
    for scale in ("1.0", "2.0"):
        best = min((s for s in sweep["search"] if s["input_scale"] == scale), key=lambda s: s["val_error"])["lr"]
        lrs = sorted(sweep["grids"]["pretrained"]["lr"], key=float)
        assert best not in (lrs[0], lrs[-1]) or best in (S.LADDER[0], S.LADDER[-1]), (scale, best, lrs)
        assert (best in (lrs[0], lrs[-1])) == (scale in sweep["open_edges"].get("pretrained", {}))
    help_text = " ".join(subprocess.run([sys.executable, "sweep.py", "--help"], cwd=REPO, capture_output=True, text=True).stdout.split())
    assert "Cost: up to 3 x (input-scale choices) runs of --steps per condition, and one more for each ladder step" in help_text  # the cost is stated


def rows(c, scale, errors):
    return [{"condition": c, "lr": lr, "input_scale": scale, "val_error": e} for lr, e in errors.items()]


def test_every_input_scale_choice_gets_its_grid_edge_closed():
    """The committed MQAR search: random-init's overall best (3e-3 at scale 1) sat inside its grid,
    but its best at the learnt scale was 1e-2, the grid's top, and the confirmation then chose that
    one; 3e-2 was never run for it. Each scale's best now closes its own edge."""
    import sweep as S
    grid = ["3e-4", "1e-3", "3e-3", "1e-2"]
    search = (rows("random-init", "learn", {"3e-4": 0.4959, "1e-3": 0.4878, "3e-3": 0.4285, "1e-2": 0.3767})
              + rows("random-init", "1", {"3e-4": 0.3961, "1e-3": 0.3749, "3e-3": 0.3708, "1e-2": 0.3713}))
    assert S.extend_at_edges(grid, search) and grid == ["3e-4", "1e-3", "3e-3", "1e-2", "3e-2"]
    search += rows("random-init", "learn", {"3e-2": 0.39}) + rows("random-init", "1", {"3e-2": 0.40})
    assert not S.extend_at_edges(grid, search) and S.open_edges({"random-init": grid}, search, ["random-init"]) == {}
    # the bottom edge grows downwards; the ladder's end stays open and is reported
    grid = ["1e-5", "3e-5"]
    low = rows("x", "auto", {"1e-5": 0.1, "3e-5": 0.2})
    assert not S.extend_at_edges(grid, low) and S.open_edges({"x": grid}, low, ["x"]) == {"x": {"auto": "1e-5"}}
    grid = ["1e-3", "3e-3"]
    assert S.extend_at_edges(grid, rows("x", "auto", {"1e-3": 0.1, "3e-3": 0.2})) and grid == ["3e-4", "1e-3", "3e-3"]


def test_a_confirmed_best_at_an_end_of_the_rates_rerun_gets_the_next_rate():
    """The confirmation reruns a rate and its two neighbours; if the full budget favours an end of those
    (a rate the short search ranked lower), the rate beyond it was never run at that budget."""
    import sweep as S
    errors = {("c", "auto"): {"1e-3": 0.3, "3e-3": 0.2, "1e-2": 0.1, "3e-2": 0.05, "1e-1": 0.2},
              ("c", "1"): {"3e-4": 0.1, "1e-3": 0.3, "3e-3": 0.4, "1e-4": 0.2},
              ("d", "auto"): {"3e-2": 0.1, "1e-1": 0.05}}
    err = lambda c, lr, sc: errors[(c, sc)][lr]
    runs = [("c", lr, "auto") for lr in ("1e-3", "3e-3", "1e-2")] + [("c", lr, "1") for lr in ("3e-4", "1e-3", "3e-3")] \
        + [("d", "3e-2", "auto"), ("d", "1e-1", "auto")]
    assert S.confirm_extension(runs, err) == [("c", "3e-2", "auto"), ("c", "1e-4", "1")]   # d: the ladder ends at 1e-1
    runs += [("c", "3e-2", "auto"), ("c", "1e-4", "1")]
    assert S.confirm_extension(runs, err) == [("c", "1e-1", "auto")]                      # 3e-2 won: one more step up
    runs += [("c", "1e-1", "auto")]
    assert S.confirm_extension(runs, err) == []                                           # 3e-2 now sits inside
    rows = [{"condition": c, "lr": lr, "input_scale": sc, "val_error": err(c, lr, sc)} for c, lr, sc in runs]
    assert S.confirm_open_edges(rows) == {"d": {"auto": "1e-1"}}
    # a best that does not beat the floor is noise: no edge to follow
    assert S.confirm_extension(runs[:6], err, off_floor=lambda c, e: c != "c") == []
    # a tie ranks nothing (a flat confirmation at chance grows nothing)
    flat = [("e", lr, "auto") for lr in ("1e-3", "3e-3", "1e-2")]
    assert S.confirm_extension(flat, lambda c, lr, sc: 0.5) == []
    assert S.confirm_extension(flat, lambda c, lr, sc: {"1e-3": 0.4, "3e-3": 0.4, "1e-2": 0.5}[lr]) == []


def test_a_confirmation_made_before_the_edge_rule_keeps_its_choices(tmp_path):
    import sweep as S
    held = tmp_path / "sweep.json"
    assert S.confirm_edge_rule(held)                                           # a new folder: the rule
    held.write_text(json.dumps({"search": [], "confirm": [{"condition": "c"}]}))
    assert not S.confirm_edge_rule(held)                                       # confirmed before the rule
    held.write_text(json.dumps({"search": []}))
    assert S.confirm_edge_rule(held)                                           # searched, not yet confirmed
    held.write_text(json.dumps({"confirm": [{"condition": "c"}], "confirm_edges": True}))
    assert S.confirm_edge_rule(held)


def test_confirmation_takes_each_scales_best_rate_and_its_ladder_neighbours():
    import sweep as S
    search = (rows("c", "auto", {"1e-3": 0.3, "3e-3": 0.1, "1e-2": 0.2}) + rows("c", "1", {"1e-3": 0.3, "3e-3": 0.4, "1e-2": 0.5})
              + rows("c", "learn", {"1e-1": 0.1}))
    assert S.confirm_settings(search, ["auto", "1", "learn"]) == [
        ("1e-3", "auto"), ("3e-3", "auto"), ("1e-2", "auto"), ("3e-4", "1"), ("1e-3", "1"), ("3e-3", "1"),
        ("3e-2", "learn"), ("1e-1", "learn")]


def test_restate_recomputes_a_finished_suites_statistics_from_its_runs(tmp_path):
    """sweep.py --restate: a suite whose checkpoints are gone gets its summary's statistics rebuilt from
    sweep.json and each seed run's eval_best.json, nothing trained or evaluated; the rest is kept."""
    protocol = {"task": "mqar", "train_len": 6, "eval_lengths": "8", "track_lengths": "8", "select_len": 8,
                "eval_samples": 16, "eval_samples_final": 4, "dataset": "mnist5k"}
    (tmp_path / "sweep.json").write_text(json.dumps({"protocol": protocol}))
    errors = {"pretrained": [0.0, 0.01], "random-init": [0.2, 0.1]}
    for c, errs in errors.items():
        for s, e in enumerate(errs):
            run = tmp_path / "runs" / f"mqar__{c}__{s}"
            run.mkdir(parents=True)
            (run / "eval_best.json").write_text(json.dumps({"errors": {"8": e}}))
    old = {"task": "mqar", "values": "errors", "chosen": {"kept": True},
           "conditions": {c: {"n": 2, "seeds": [0, 1], "lr": "1e-2", "errors": {"8": {"mean": 9.0}}} for c in errors},
           "ratios_to_pretrained": {"random-init": {"8": {"mean": 9.0}}}}
    (tmp_path / "summary.json").write_text(json.dumps(old))
    r = subprocess.run([sys.executable, "sweep.py", "--restate", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["chosen"] == {"kept": True} and s["conditions"]["random-init"]["lr"] == "1e-2"
    e = s["conditions"]["random-init"]["errors"]["8"]
    assert e["values"] == [0.2, 0.1] and e["range"] == [0.1, 0.2] and abs(e["mean"] - 0.15) < 1e-12
    ratio = s["ratios_to_pretrained"]["random-init"]["8"]
    assert abs(ratio["ratio_of_means"] - 0.15 / 0.005) < 1e-9 and ratio["value_lower_bound"] == [True, False]
    (tmp_path / "runs" / "mqar__random-init__1" / "eval_best.json").unlink()
    r = subprocess.run([sys.executable, "sweep.py", "--restate", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "mqar__random-init__1" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_relative_out_from_another_folder_is_refused(tmp_path):
    """The runs start in the repository: a relative --out given elsewhere would split the suite in two."""
    r = subprocess.run([sys.executable, str(REPO / "sweep.py"), "--task", "mqar", "--out", "suite"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is relative" in r.stderr and not (tmp_path / "suite").exists(), r.stderr[-2000:]


def test_confirm_scales_best_keeps_every_choice_when_the_search_sat_at_the_floor():
    """--confirm-scales best confirms one input-scale choice only where the search could tell the
    choices apart: AR at 6 items has a floor of 0.313, so a search best of 0.31 is noise."""
    import argparse
    import sweep as S
    args = argparse.Namespace(task="ar", select_len=6, eval_samples=256, confirm_scales="best")
    scales = ["auto", "learn", "1"]
    search = rows("c", "auto", {"1e-2": 0.33, "3e-2": 0.31}) + rows("c", "learn", {"1e-2": 0.32, "3e-2": 0.34})
    at_floor = {"lr": "3e-2", "input_scale": "auto", "val_error": 0.31}
    assert S.confirmed_scales(args, search, scales, at_floor)["scales"] == scales
    learned = {"lr": "3e-2", "input_scale": "learn", "val_error": 0.01}
    assert S.confirmed_scales(args, search, scales, learned) == {"scales": ["learn"], "why": "the search's best"}
    args.confirm_scales = "all"
    assert S.confirmed_scales(args, search, scales, learned)["scales"] == scales


def test_lrs_flags_move_the_starting_grids_and_off_ladder_rates_are_refused(tmp_path):
    import argparse
    import sweep as S
    args = argparse.Namespace(bridge_steps=0, lrs="1e-2,3e-2,1e-1", scratch_lrs=None)
    grids = {c: v[2] for c, v in S.conditions_of(args).items()}
    assert grids["pretrained"] == grids["random-init"] == grids["none"] == ("1e-2", "3e-2", "1e-1")
    assert grids["scratch"] == S.SCRATCH_LRS
    assert S.ladder_rates("lrs", "0.1, 3E-2,0.01,1e-2") == "1e-2,3e-2,1e-1"
    old = argparse.Namespace(bridge_steps=0)        # a record written before the flags
    assert S.conditions_of(old)["pretrained"][2] == S.FROZEN_LRS
    r = subprocess.run([sys.executable, "sweep.py", "--task", "ar", "--out", str(tmp_path / "s"), "--lrs", "1e-2,0.05"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --lrs") and not (tmp_path / "s").exists(), r.stderr


def test_confirm_with_best_scales_reruns_only_that_choice(tmp_path, monkeypatch):
    """The wiring of --confirm-scales best: a condition off the floor reruns its best choice's three
    rates; one whose search sat at the floor reruns every setting it searched."""
    import argparse
    import sweep as S
    args = argparse.Namespace(task="ar", select_len=6, eval_samples=256, confirm_scales="best", steps=10,
                              eval_every=5, bridge_steps=0, model="m", layers="6-11", batch_size=4, warmup=1,
                              compile=False, dtype="auto", train_len=6, eval_lengths="6", track_lengths=None, jobs=1)
    search = (rows("pretrained", "auto", {"1e-2": 0.2, "3e-2": 0.01}) + rows("pretrained", "1", {"1e-2": 0.3, "3e-2": 0.3})
              + rows("random-init", "auto", {"1e-2": 0.32, "3e-2": 0.33}) + rows("random-init", "1", {"1e-2": 0.31, "3e-2": 0.34}))
    record = {"search": search}
    chosen = {"pretrained": {"lr": "3e-2", "input_scale": "auto", "val_error": 0.01},
              "random-init": {"lr": "1e-2", "input_scale": "1", "val_error": 0.31}}
    trained = []
    monkeypatch.setattr(S, "train_all", lambda jobs, n: trained.extend(jobs))
    monkeypatch.setattr(S, "selection_error", lambda d, a, best=False: 0.5)
    S.confirm(args, record, ["pretrained", "random-init"], lambda c: ["auto", "1"], tmp_path, chosen)
    got = {(x["condition"], x["lr"], x["input_scale"]) for x in record["confirm"]}
    # pretrained: its best rate and both neighbours at its best scale; random-init, whose search could
    # rank nothing: every setting it searched
    assert got == {("pretrained", lr, "auto") for lr in ("1e-2", "3e-2", "1e-1")} | {
        ("random-init", lr, sc) for lr in ("1e-2", "3e-2") for sc in ("auto", "1")}
    assert len(trained) == 3 + 4 and record["confirm_scales"]["pretrained"]["scales"] == ["auto"]


def test_confirm_of_every_scale_reruns_a_scale_at_the_floor_whole(tmp_path, monkeypatch):
    """--confirm-scales all: a scale whose search left the floor reruns its best rate and neighbours; one
    whose search sat at the floor ranked nothing, so every rate it searched is rerun; a folder confirmed
    before this rule keeps the window."""
    import argparse
    import sweep as S
    args = argparse.Namespace(task="ar", select_len=6, eval_samples=256, confirm_scales="all", steps=10,
                              eval_every=5, bridge_steps=0, model="m", layers="6-11", batch_size=4, warmup=1,
                              compile=False, dtype="auto", train_len=6, eval_lengths="6", track_lengths=None, jobs=1)
    search = (rows("pretrained", "auto", {"1e-2": 0.2, "3e-2": 0.01, "3e-3": 0.25})
              + rows("pretrained", "1", {"1e-3": 0.31, "3e-3": 0.31, "1e-2": 0.30, "3e-2": 0.305})
              + rows("random-init", "auto", {"1e-3": 0.33, "3e-3": 0.32, "1e-2": 0.32, "3e-2": 0.33}))
    chosen = {"pretrained": {"lr": "3e-2", "input_scale": "auto", "val_error": 0.01},
              "random-init": {"lr": "3e-3", "input_scale": "auto", "val_error": 0.32}}
    monkeypatch.setattr(S, "train_all", lambda jobs, n: None)
    monkeypatch.setattr(S, "selection_error", lambda d, a, best=False: 0.5)
    scales = {"pretrained": ["auto", "1"], "random-init": ["auto"]}
    for held_rules, want_ri in ((True, {"1e-3", "3e-3", "1e-2", "3e-2"}), (False, {"1e-3", "3e-3", "1e-2"})):
        record = {"search": search, "confirm_edges": held_rules}
        S.confirm(args, record, ["pretrained", "random-init"], lambda c: scales[c], tmp_path, dict(chosen))
        got = lambda c, sc: {x["lr"] for x in record["confirm"] if (x["condition"], x["input_scale"]) == (c, sc)}
        assert got("pretrained", "auto") == {"1e-2", "3e-2", "1e-1"}                   # off the floor: the window
        assert got("pretrained", "1") == ({"1e-3", "3e-3", "1e-2", "3e-2"} if held_rules else {"3e-3", "1e-2", "3e-2"})
        assert got("random-init", "auto") == want_ri, held_rules                        # at the floor: every rate


def test_a_resumed_sweep_must_run_the_protocol_its_folder_holds(tmp_path):
    import argparse
    import pytest
    import sweep as S
    from runs import UserError
    args = lambda **kw: argparse.Namespace(**{"first_seed": 1, "lrs": None, "scratch_lrs": None, "search_steps": 150,
                                              "confirm_scales": "all", "dtype": "auto", "resolved_dtype": "fp32", "steps": 5000, **kw})
    held = tmp_path / "sweep.json"
    held.write_text(json.dumps({"protocol": {"first_seed": 0, "search_steps": 150}}))   # before the newer flags
    S.refuse_other_protocol(held, args(first_seed=0))
    for changed in ({"lrs": "1e-2,3e-2"}, {"search_steps": 300}, {"confirm_scales": "best"}, {"first_seed": 1}):
        with pytest.raises(UserError, match="--" + next(iter(changed)).replace("_", "-")):
            S.refuse_other_protocol(held, args(**{"first_seed": 0, **changed}))
    held.write_text(json.dumps({"protocol": {"first_seed": 1, "search_steps": 1500, "lrs": "1e-2,3e-2,1e-1",
                                             "scratch_lrs": None, "confirm_scales": "best"}}))
    S.refuse_other_protocol(held, args(search_steps=1500, lrs="1e-2,3e-2,1e-1", confirm_scales="best"))
    with pytest.raises(UserError, match="--lrs"):
        S.refuse_other_protocol(held, args(search_steps=1500, lrs="3e-3,1e-2,3e-2", confirm_scales="best"))
    # the dtype a folder ran in, held resolved ("auto" is fp32 on a CPU, bf16 on CUDA); a record from
    # before the flag has none
    S.refuse_other_protocol(held, args(search_steps=1500, lrs="1e-2,3e-2,1e-1", confirm_scales="best",
                                       dtype="bf16", resolved_dtype="bf16"))
    held.write_text(json.dumps({"protocol": {"first_seed": 1, "search_steps": 1500, "dtype": "auto", "resolved_dtype": "fp32"}}))
    S.refuse_other_protocol(held, args(search_steps=1500, dtype="fp32", resolved_dtype="fp32"))
    with pytest.raises(UserError, match="computed in fp32; --dtype auto here means bf16"):
        S.refuse_other_protocol(held, args(search_steps=1500, dtype="auto", resolved_dtype="bf16"))
    # how its search runs were scored: a record from before the rule was scored at the end of each run
    with pytest.raises(UserError, match="scored by their last evaluation"):
        S.refuse_other_protocol(held, args(search_steps=1500, steps=1500))
    held.write_text(json.dumps({"protocol": {"first_seed": 1, "search_steps": 5000}, "search_selection": "best evaluation"}))
    S.refuse_other_protocol(held, args(search_steps=5000, steps=5000))
    with pytest.raises(UserError, match="scored by their best evaluation"):
        S.refuse_other_protocol(held, args(search_steps=5000, steps=6000))


def test_sweep_passes_its_dtype_to_every_run(tmp_path):
    import sweep as S
    import tasks
    base = ["--task", "mqar", "--out", str(tmp_path), "--train-len", "6", "--eval-lengths", "8", "--select-len", "8"]
    for given, want in (([], "auto"), (["--dtype", "bf16"], "bf16"), (["--dtype", "fp32"], "fp32")):
        args = S.get_parser().parse_args(base + given)
        tasks.module("mqar").sweep_check(args)
        cmd = S.train_cmd(args, "pretrained", "1e-3", "auto", 0, 10, 5, tmp_path / "r")
        assert cmd[cmd.index("--dtype") + 1] == want


def test_a_search_at_the_full_budget_scores_each_run_by_its_best_evaluation(tmp_path, monkeypatch):
    """Rule 90's step-1 run was at 0.434 at step 4,000 and back at 0.488 at 5,000, above what the floor
    check allows: a full-budget search scored at its end could call a rate that learns unlearned. So a
    search as long as the seed runs evaluates every --eval-every and is scored like a seed run's best.pt,
    and every evaluation counts as a try against the floor; a short search is still scored at its end."""
    import sweep as S
    import tables
    import tasks
    # 3e-3 dips to 0.10 and ends at 0.45; the others are flat, 1e-3 the best of them (scored at the end,
    # it sits at the grid's lower edge, so the short search also runs 3e-4)
    curve = {"3e-4": [0.40, 0.40], "1e-3": [0.30, 0.30], "3e-3": [0.10, 0.45], "1e-2": [0.32, 0.32]}
    calls = []

    def fake_train_all(jobs, n_jobs):
        for out, cmd, steps in jobs:
            calls.append(cmd)
            lr, every = cmd[cmd.index("--lr") + 1], int(cmd[cmd.index("--eval-every") + 1])
            at = sorted(set(range(every, steps, every)) | {steps})      # train.py evaluates at the end too
            errors = curve[lr][:1] * (len(at) - 1) + curve[lr][-1:]     # the dip lasts until the last evaluation
            hist = [{"step": s, "errors": {"8": e}} for s, e in zip(at, errors)]
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps({"history": hist, "final": hist[-1], "steps_done": steps}))
    monkeypatch.setattr(S, "train_all", fake_train_all)
    base = ["--task", "mqar", "--train-len", "6", "--eval-lengths", "8", "--select-len", "8", "--lrs", "1e-3,3e-3,1e-2",
            "--steps", "700", "--eval-every", "300"]
    for search_steps, every, want_lr, want_error, selection in (("700", "300", "3e-3", 0.10, "best evaluation"),
                                                                 ("150", "150", "1e-3", 0.30, "last evaluation")):
        calls.clear()
        args = S.get_parser().parse_args(base + ["--search-steps", search_steps, "--out", str(tmp_path / search_steps)])
        tasks.module("mqar").sweep_check(args)
        record = {"grids": {"pretrained": {}}}
        chosen = S.search(args, record, ["pretrained"], lambda c: ["auto"], tmp_path / search_steps)
        assert record["search_selection"] == selection
        # the README's search table says which error its cells hold
        assert ("best evaluation" in tables.search_table({**record, "chosen": chosen})) == (selection == "best evaluation")
        assert {c[c.index("--eval-every") + 1] for c in calls} == {every}
        assert chosen["pretrained"]["lr"] == want_lr and chosen["pretrained"]["val_error"] == want_error
        checked = S.refuse_noise(args, record, ["pretrained"], chosen)
        # at the full budget each run looked at 3 evaluations (300, 600, 700): 3 rates x 3 tries
        assert checked["pretrained"]["floor_check"]["tries"] == (3 * 3 if selection == "best evaluation" else 4)


def test_confirm_is_refused_when_the_search_already_runs_the_full_budget(tmp_path):
    r = subprocess.run([sys.executable, "sweep.py", "--task", "mqar", "--train-len", "6", "--eval-lengths", "8",
                        "--select-len", "8", "--search-steps", "600", "--steps", "600", "--confirm",
                        "--out", str(tmp_path / "s")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0 and "drop --confirm" in r.stderr and not (tmp_path / "s").exists()
