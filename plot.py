"""
Draw the figures from the committed results JSON (no training, no model load, no network).

    python plot.py                      # every figure into results/figures/
    python plot.py --only heads         # one kind: heads, curves, lengths, images, control
    python plot.py --results R --out F  # another results folder / figure folder

Kinds (each reads only JSON under --results):
  heads     per task and seed: every head's ablation impact (layers x heads), the text probe's copy and
            induction scores on the same grid, and probe score against impact
            (heads/ablate_<task>_<condition>_s<seed>.json, probe/probe_*.json, heads/joint_*.json)
  curves    validation metric against step for every condition of a suite: mean over seeds, the seed
            range shaded (<suite>/runs/*/results.json; token tasks on a log scale)
  lengths   held-out per-bit error against length per condition with the seeds' range (a bootstrap
            CI from 5 seeds), the no-learning floor (tasks/floors.py) and the training edge marked; rule90
            beside the paper's Table B.6 (data/paper, Gemma 4 31B) (<suite>/summary.json)
  images    test accuracy per condition with the seeds' range, FPT's numbers as reference lines (images/summary.json);
            the long bridge's random-label curves and per-seed test accuracy without and with it
            (images/summary_bridge_long.json, when present)
  control   OGBench success rate and Walker2d normalised score against step, with published references
            (ogbench/*/results.json, walker2d/**/results.json)

A condition has one colour, marker and line style in every figure (readable in greyscale); each figure
names its source JSON in small print, and <figure>.sources.json beside it records each source's
sha256 and, for head ablations, the checkpoint each was measured on with its sha256.
"""
import argparse
import math
import os
import re
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")          # files only, no display
import matplotlib  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import stats  # noqa: E402
import tables  # noqa: E402
from runs import REPO, UserError, run_main, save_atomic, sources_record  # noqa: E402
from tasks.tokens import get_task  # noqa: E402

KINDS = ("heads", "curves", "lengths", "images", "control")
PAPER_RULE90 = REPO / "data" / "paper" / "ca_rule90_length_curve.json"

# condition -> (colour, marker, line style); Okabe-Ito colours with distinct markers and dashes
STYLE = {
    "pretrained": ("#000000", "o", "-"),
    "random-init": ("#E69F00", "s", "--"),
    "shuffled": ("#0072B2", "^", "-."),
    "matched": ("#009E73", "v", ":"),
    "gpt2-random": ("#CC79A7", "D", (0, (5, 1))),
    "scratch": ("#56B4E9", "x", (0, (3, 1, 1, 1))),
    "none": ("#999999", ".", (0, (1, 2))),
    "bridge": ("#D55E00", "P", "-"),
    "bridge-partial": ("#882255", "*", "--"),
    "bridge-random-init": ("#F0E442", "h", ":"),
    "bridge-partial-random-init": ("#44AA99", "p", (0, (2, 2))),
    "mlp": ("#D55E00", "P", "-"),
    "dt": ("#56B4E9", "x", "--"),
}
OTHER = ("#444444", "d", "-")

# published numbers drawn as reference lines (the project's README cites their sources)
ANCHORS = {
    "images": [("FPT frozen GPT-2, full MNIST", 0.980), ("FPT random-init GPT-2", 0.917), ("FPT trained GPT-2", 0.991)],
    "ogbench": {   # per task: the paper's and OGBench's numbers hold for that task only
        "scene-play-singletask-task1-v0": [("paper: frozen Gemma layer", 0.9733), ("GCIQL (OGBench)", 0.930),
                                           ("paper: random-init layer", 0.87)],
        "cube-double-play-singletask-task1-v0": [("paper: frozen Gemma layer", 0.6022), ("GCIQL (OGBench)", 0.74),
                                                 ("paper: random-init layer", 0.0089)]},
    "walker2d": [("paper: frozen slice DT", 76.2), ("DT (Chen et al.)", 74.0)],
}


def style(condition):
    base = condition.split("-L")[0] if condition.startswith(("pretrained-L", "random-init-L", "shuffled-L", "matched-L")) else condition
    return STYLE.get(base, OTHER)


def run_style(condition, seen):
    """style() for one of several runs of a condition in a panel: the second and later runs get a dash
    the condition's own line does not use. `seen` counts the runs per condition drawn so far."""
    colour, marker, line = style(condition)
    k = seen[condition] = seen.get(condition, -1) + 1
    return colour, marker, line if k == 0 else [d for d in ("--", ":", "-.") if d != line][(k - 1) % 2], k


def load(path):
    """JSON from a results file (tables.load); a missing or malformed file is one line."""
    try:
        return tables.load(path)
    except ValueError as e:
        raise UserError(str(e))


def field(obj, *keys, where=""):
    for k in keys:
        try:
            obj = obj[k]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{where}: expected key {'.'.join(map(str, keys))} (malformed results JSON)")
    return obj


def rel(path, results):
    """The source path as printed under a figure: relative to the results folder's parent."""
    path = Path(path).resolve()
    base = Path(results).resolve().parent
    return str(path.relative_to(base)) if path.is_relative_to(base) else path.name


def save(fig, out, name, sources, results, bottom=0.03):
    """Lay the figure out (room at the bottom for the source line), name its JSON, write the PNG."""
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.text(0.005, 0.003, "source: " + ", ".join(sorted({rel(s, results) for s in sources}))[:220],
             fontsize=5.5, color="#555555", ha="left", va="bottom")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    # beside the picture, what it was drawn from: each JSON's sha256 and the checkpoints behind it
    save_atomic({"figure": path.name, "sources": sources_record(sorted({str(s) for s in sources}))},
                out / f"{name}.sources.json")
    return path


SPREAD = f"bars: range over seeds, or bootstrap 95% CI from {tables.FEW_SEEDS} seeds"


def spread(d):
    """Error-bar ends of a stats.describe entry: the range below tables.FEW_SEEDS seeds (a bootstrap
    interval over three values is little more than it), the bootstrap 95% CI from there on."""
    if len(d["values"]) < tables.FEW_SEEDS:
        return min(d["values"]), max(d["values"])
    return d["ci95"][0], d["ci95"][1]


# ----------------------------------------------------------------------------- heads

def head_grid(values, layers, heads):
    return [[values.get(f"L{layer}.{h}", math.nan) for h in range(heads)] for layer in layers]


def heads_figures(results, out):
    files = sorted((results / "heads").glob("ablate_*_s*.json"))
    if not files:
        raise UserError(f"no heads/ablate_*_s<seed>.json under {results}")
    probes = sorted((results / "probe").glob("probe_*.json"))
    probe = load(probes[0]) if probes else None
    groups = {}
    for f in files:
        m = re.fullmatch(r"ablate_(.+)_s(\d+)", f.stem)
        groups.setdefault(m.group(1), []).append((int(m.group(2)), f))
    written = []
    for group, seeds in sorted(groups.items()):
        seeds.sort()
        joint = next((j for j in (results / "heads").glob(f"joint_{group.split('_')[0]}_*.json")), None)
        cols = 4 if probe else 1
        fig, axes = plt.subplots(len(seeds), cols, figsize=(3.1 * cols, 2.5 * len(seeds) + 0.6), squeeze=False)
        sources = [f for _, f in seeds] + ([probes[0]] if probe else [])
        for row, (seed, f) in enumerate(seeds):
            a = load(f)
            impacts = {h: field(v, "impact", where=str(f)) for h, v in field(a, "heads", where=str(f)).items()}
            layers = sorted({int(h[1:].split(".")[0]) for h in impacts})
            n_heads = 1 + max(int(h.split(".")[1]) for h in impacts)
            grid = head_grid(impacts, layers, n_heads)
            vmax = max(abs(v) for v in impacts.values()) or 1.0
            ax = axes[row][0]
            im = ax.imshow(grid, cmap="Greys", vmin=0, vmax=vmax, aspect="auto")
            ax.grid(False)
            ax.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers])
            ax.set_xticks(range(n_heads))
            ax.set_xlabel("head")
            metric = a.get("metric", "metric").replace("_", " ")
            ax.set_title(f"{group} seed {seed}: ablation impact\n(intact {metric} {a.get('intact', math.nan):.3g})", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
            if not probe:
                continue
            pheads = field(probe, "heads", where=str(probes[0]))
            for col, prim in ((1, "copying"), (2, "induction")):
                scores = {h: pheads[h]["scores"][prim] for h in impacts if h in pheads}
                ax = axes[row][col]
                im = ax.imshow(head_grid(scores, layers, n_heads), cmap="Greys", vmin=0, aspect="auto")
                ax.grid(False)
                ax.set_yticks(range(len(layers)), [f"L{layer}" for layer in layers])
                ax.set_xticks(range(n_heads))
                ax.set_xlabel("head")
                ax.set_title(f"text probe: {prim} score", fontsize=8)
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax = axes[row][3]
            j = load(joint) if joint is not None else {}
            # the primitive the joint test found the strongest overlap on (else copying)
            prim = j.get("permutation", {}).get("primitive", "copying")
            hs = [h for h in impacts if h in pheads]
            ax.scatter([pheads[h]["scores"][prim] for h in hs], [impacts[h] for h in hs], c="#000000", s=12, marker="o")
            for h in sorted(hs, key=lambda h: -impacts[h])[:3]:
                ax.annotate(h, (pheads[h]["scores"][prim], impacts[h]), fontsize=6)
            ax.set_xlabel(f"{prim} score (English text)")
            ax.set_ylabel("ablation impact")
            caption = f"probe ({prim}) vs ablation"
            if j:
                perm = j.get("permutation", {})
                caption += (f"\ntop-tier overlap {perm.get('k', '?')}/{perm.get('n', '?')}\n"
                            f"permutation P = {perm.get('p_perm', math.nan):.3g}")
                sources.append(joint)
            else:   # no joint test on file: the overlap under the default rules of ablate.py --joint
                h = stats.joint_coincidence({x: pheads[x]["scores"][prim] for x in hs}, {"task": impacts},
                                            lambda sc: stats.top_by_ratio(sc, 1.5), lambda imp: stats.top_by_z(imp, 2.0))
                caption += f"\noverlap {h['k']}/{h['n']} (ratio>=1.5, z>=2)\nhypergeometric P = {h['p']:.3g}"
            ax.set_title(caption, fontsize=8)
        written.append(save(fig, out, f"heads_{group}", sources, results, bottom=0.02))
    return written


# ----------------------------------------------------------------------------- curves and lengths

def suites(results):
    """Folders holding a sweep: <suite>/summary.json or <suite>/runs/."""
    return sorted({p.parent for p in results.rglob("summary.json") if "archive" not in p.parts and (p.parent / "runs").is_dir()})


def curve_figures(results, out):
    written = []
    for suite in suites(results):
        runs = sorted((suite / "runs").glob("*/results.json"))
        if not runs:
            continue
        by_cond = {}
        for f in runs:
            r = load(f)
            cond = f.parent.name.split("__")[1] if f.parent.name.count("__") >= 2 else r.get("condition", "?")
            hist = [h for h in field(r, "history", where=str(f)) if h.get("phase", "train") == "train"]
            if r.get("metric") == "top1_accuracy":
                pts = [(h.get("train_step", h["step"]), h["val_accuracy"]) for h in hist]
                ylabel, log = "validation accuracy", False
            else:
                sel = str(field(r, "select_len", where=str(f)))
                pts = [(h["step"], h["errors"][sel]) for h in hist]
                ylabel, log = f"validation per-bit error at length {sel}", True
            by_cond.setdefault(cond, []).append(pts)
        fig, ax = plt.subplots(figsize=(6, 4))
        for cond, curves in by_cond.items():
            steps = sorted({s for c in curves for s, _ in c})
            at = [[dict(c).get(s) for c in curves] for s in steps]
            mean = [sum(v for v in vs if v is not None) / max(1, sum(v is not None for v in vs)) for vs in at]
            lo = [min(v for v in vs if v is not None) for vs in at]
            hi = [max(v for v in vs if v is not None) for vs in at]
            colour, marker, line = style(cond)
            floor = 1e-5 if log else None
            clip = (lambda xs: [max(x, floor) for x in xs]) if log else (lambda xs: xs)
            ax.plot(steps, clip(mean), color=colour, marker=marker, linestyle=line, label=f"{cond} (n={len(curves)})")
            ax.fill_between(steps, clip(lo), clip(hi), color=colour, alpha=0.15, linewidth=0)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{suite.name}: learning curves (mean over seeds, range shaded)", fontsize=9)
        ax.legend(fontsize=7)
        written.append(save(fig, out, f"curves_{suite.name}", runs, results))
    if not written:
        raise UserError(f"no <suite>/runs/*/results.json under {results}")
    return written


def suite_floors(summary, results):
    """({length: no-learning floor}, the file it came from) of a token suite: the summary's own, else, for
    a suite summarised before floors were recorded, the committed table of `python -m tasks.floors`."""
    if "floors" in summary:
        return summary["floors"], None
    f = results / "token_suite" / "floors.json"
    table = load(f)["tasks"].get(summary.get("task"), {}) if f.exists() else {}
    return (table["floors"], f) if table else (None, None)


def length_figures(results, out):
    written = []
    for suite in suites(results):
        f = suite / "summary.json"
        s = load(f)
        if s.get("values", "errors") != "errors":
            continue
        sweep = load(suite / "sweep.json") if (suite / "sweep.json").exists() else {}
        edge = sweep.get("protocol", {}).get("train_len")
        fig, ax = plt.subplots(figsize=(6, 4))
        sources = [f]
        for cond, row in field(s, "conditions", where=str(f)).items():
            lengths = sorted(field(row, "errors", where=str(f)), key=int)
            x = [int(L) for L in lengths]
            mean = [row["errors"][L]["mean"] for L in lengths]
            bars = [spread(row["errors"][L]) for L in lengths]
            err = [[m - lo for (lo, _), m in zip(bars, mean)], [hi - m for (_, hi), m in zip(bars, mean)]]
            colour, marker, line = style(cond)
            ax.errorbar(x, mean, yerr=err, color=colour, marker=marker, linestyle=line, capsize=2,
                        label=f"{cond} (n={row['n']})")
        drawn = {L for row in s["conditions"].values() for L in row["errors"]}
        floors, floor_source = suite_floors(s, results)
        if floors:
            xs = sorted((L for L in floors if L in drawn or not drawn), key=int)
            ax.plot([int(L) for L in xs], [floors[L] for L in xs], color="#555555", linestyle="--", marker="_",
                    linewidth=1.2, label="no-learning floor")
            sources += [floor_source] if floor_source else []
        if suite.name == "rule90" and PAPER_RULE90.exists():
            paper = load(PAPER_RULE90)
            for i, (name, curve) in enumerate(paper["conditions"].items()):
                xs = sorted(curve, key=int)
                ax.plot([int(L) for L in xs], [curve[L] for L in xs], color="#777777", linestyle=":",
                        marker="os^D"[i % 4], markersize=3, linewidth=1, label=f"paper (31B): {name}")
            sources.append(PAPER_RULE90)
        if edge:
            ax.axvline(edge, color="#777777", linewidth=0.8)
            ax.text(edge, ax.get_ylim()[1], " training edge", fontsize=7, va="top", color="#555555")
        ax.axhline(0.5, color="#bbbbbb", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"length ({get_task(suite.name).LENGTH_UNIT})")
        ax.set_ylabel("held-out per-bit error (chance 0.5)")
        ax.set_title(f"{suite.name}: length generalisation (mean over seeds; {SPREAD})", fontsize=9)
        ax.legend(fontsize=6)
        written.append(save(fig, out, f"lengths_{suite.name}", sources, results))
    demo = sorted((results / "demo").glob("*/results.json")) if (results / "demo").is_dir() else []
    if demo:     # README's demo: one run per body, the last evaluation's error per length
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for f in demo:
            r = load(f)
            errors = field(r, "final", "errors", where=str(f))
            cond = "random-init" if field(r, "config", "init", where=str(f)) == "random" else r["config"]["init"]
            colour, marker, line = style(cond)
            xs = sorted(errors, key=int)
            ax.plot([int(L) for L in xs], [errors[L] for L in xs], color=colour, marker=marker, linestyle=line,
                    label=f"{cond} slice ({r['config']['steps']} steps)")
        ax.axhline(0.5, color="#bbbbbb", linewidth=0.8, linestyle="--")
        ax.axvline(field(r, "config", "train_len", where=str(f)), color="#777777", linewidth=0.8)
        ax.set_xlabel("key-value pairs")
        ax.set_ylabel("per-bit error (chance 0.5)")
        ax.set_title("demo: MQAR through a frozen slice, pretrained vs re-initialised", fontsize=9)
        ax.legend(fontsize=7)
        written.append(save(fig, out, "lengths_demo", demo, results))
    if not written:
        raise UserError(f"no token-task summary.json under {results}")
    return written


# ----------------------------------------------------------------------------- images and control

def image_figures(results, out):
    f = results / "images" / "summary.json"
    s = load(f)
    conds = field(s, "conditions", where=str(f))
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, (cond, row) in enumerate(conds.items()):
        d = field(row, "accuracy", "test", where=str(f))
        colour, marker, _ = style(cond)
        lo, hi = spread(d)
        ax.errorbar([i], [d["mean"]], yerr=[[d["mean"] - lo], [hi - d["mean"]]], color=colour,
                    marker=marker, markersize=7, capsize=3)
        ax.scatter([i] * len(d["values"]), d["values"], color=colour, s=8, alpha=0.5)
    for j, (name, value) in enumerate(ANCHORS["images"]):
        ax.axhline(value, color="#777777", linewidth=0.8, linestyle=["--", ":", "-."][j], label=f"{name} ({value:.3f})")
    ax.legend(loc="lower left", fontsize=6, frameon=False)    # three close lines: labels in a legend, not on them
    scale = lambda r: "" if r.get("input_scale") in (None, "auto") else f", scale {r['input_scale']}"
    ax.set_xticks(range(len(conds)), [f"{c}\n(n={r['n']}{scale(r)})" for c, r in conds.items()], fontsize=7, rotation=20)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"images ({s.get('dataset', '?')}): test accuracy per condition, mean; {SPREAD}", fontsize=9)
    written = [save(fig, out, "images_accuracy", [f], results)]
    fb = results / "images" / "summary_bridge_long.json"
    return written + ([bridge_figure(fb, out, results)] if fb.is_file() else [])


def bridge_figure(f, out, results):
    """The long bridge (tasks.images compare-bridges JSON): each bridge's accuracy on its own random labels
    against its step, and each seed's test accuracy without and with the bridge, joined by a line."""
    conds = field(load(f), "conditions", where=str(f))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (cond, row) in enumerate(conds.items()):
        seen = {}
        for r in field(row, "runs", where=str(f)):
            colour, marker, line, _ = run_style(cond, seen)
            curve = r.get("bridge_curve") or []
            left.plot([c["step"] for c in curve], [c["train_accuracy"] for c in curve], color=colour,
                      marker=marker, linestyle=line, markersize=4, label=f"{cond}, seed {r['seed']}")
            right.plot([i - 0.15, i + 0.15], [r["unbridged_test_accuracy"], r["test_accuracy"]], color=colour,
                       marker=marker, linestyle=line)
    for level, name, dash in ((0.9, "stop criterion 0.9", "--"), (0.1, "chance (10 labels)", ":")):
        left.axhline(level, color="#777777", linewidth=0.8, linestyle=dash)
        left.text(left.get_xlim()[0], level, " " + name, fontsize=6, va="bottom", color="#555555")
    left.set_xlabel("bridge step (accuracy measured every 100 steps)")
    left.set_ylabel("accuracy on the bridge's random labels")
    left.set_ylim(0, 1.02)
    left.legend(fontsize=6, loc="lower right")
    left.set_title("the bridge memorising random labels of 1,000 images", fontsize=9)
    right.set_xticks(range(len(conds)), list(conds), fontsize=7, rotation=15)
    right.set_xlim(-0.5, len(conds) - 0.5)
    right.set_ylabel("test accuracy (best.pt)")
    right.set_title("test accuracy per seed: unbridged (left end) -> bridged (right end)", fontsize=9)
    return save(fig, out, "images_bridge", [f], results)


def wilson(k, n, z=1.96):
    if n == 0:
        return 0.0, 1.0
    p = k / n
    c = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    return max(0.0, mid - c), min(1.0, mid + c)


def ogbench_panels(runs):
    """[((task, data file), [(path, results)...])...]: runs compare only on one task and one data file,
    so each pair gets its own panel. A file is named by its sha256, or for runs that predate the hash,
    by its transition count and success fraction; per task, files with a hash (the newest) come last."""
    files = {}
    for f, r in runs:
        st = r.get("dataset_stats", {})
        key = st.get("sha256") or f"{st.get('transitions')} transitions, task1 success {st.get('task_success_fraction', 0):.2%}"
        files.setdefault((r.get("env", "scene-play-singletask-task1-v0"), key), []).append((f, r))
    return [(k, files[k]) for k in sorted(files, key=lambda k: (k[0], len(k[1]) == 64))]


def control_figures(results, out):
    written = []
    og = sorted(f for f in (results / "ogbench").glob("*/results.json")) if (results / "ogbench").is_dir() else []
    if og:
        panels = ogbench_panels([(f, load(f)) for f in og])
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharey=True, squeeze=False)
        for ax, (key, runs) in zip(axes[0], panels):
            seen = {}
            for f, r in runs:
                hist = field(r, "history", where=str(f))
                steps = [h["step"] for h in hist]
                rate = [h["eval"]["success_rate"] for h in hist]
                n = [len(h["eval"]["successes"]) for h in hist]
                lo, hi = zip(*(wilson(round(p * k), k) for p, k in zip(rate, n))) if hist else ((), ())
                cond = r.get("condition", f.parent.name)
                colour, marker, line, k = run_style(cond, seen)
                ax.plot(steps, rate, color=colour, marker=marker, linestyle=line, markersize=5 - k,
                        label=f"{f.parent.name} ({cond})")
                ax.fill_between(steps, lo, hi, color=colour, alpha=0.12, linewidth=0)
            for j, (name, value) in enumerate(ANCHORS["ogbench"].get(key[0], [])):
                ax.axhline(value, color="#777777", linewidth=0.8, linestyle=["--", ":", "-."][j])
                ax.text(ax.get_xlim()[0], value, " " + name, fontsize=6, va="bottom", color="#555555")
            ax.set_xlabel("training step")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{key[0]}\ndata file {key[1][:12] + '...' if len(key[1]) == 64 else key[1]}", fontsize=7)
            ax.legend(fontsize=6, loc="center right")
        axes[0][0].set_ylabel("success rate (95% Wilson interval shaded)")
        fig.suptitle("OGBench: success against step, one panel per task and generated data file "
                     "(references at 1M steps)", fontsize=9)
        written.append(save(fig, out, "control_ogbench", og, results))
    wk = sorted((results / "walker2d").rglob("results.json")) if (results / "walker2d").is_dir() else []
    if wk:
        runs = [(f, load(f)) for f in wk]
        targets = sorted({t for _, r in runs for h in field(r, "history", where="walker2d") for t in h["scores"]}, key=float, reverse=True)
        data_means = {r.get("dataset"): (r["dataset_stats"]["return_mean"], r["normalisation"])
                      for _, r in runs if "dataset_stats" in r and "normalisation" in r}
        fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 4.2), sharey=True, squeeze=False)
        for ax, target in zip(axes[0], targets):
            seen = {}
            for f, r in runs:
                hist = [h for h in field(r, "history", where=str(f)) if target in h["scores"]]
                colour, marker, line, _ = run_style(r.get("condition", f.parent.name), seen)
                ax.plot([h["step"] for h in hist], [h["scores"][target]["score_mean"] for h in hist], color=colour,
                        marker=marker, linestyle=line, label=f.parent.name + (" (STAND-IN data)" if r.get("dataset_is_standin") else ""))
            for j, (name, value) in enumerate(ANCHORS["walker2d"]):
                ax.axhline(value, color="#777777", linewidth=0.8, linestyle=["--", ":"][j])
                ax.text(ax.get_xlim()[0], value, " " + name + " (D4RL medium, 100K steps)", fontsize=6, va="bottom", color="#555555")
            for data, (mean, norm) in data_means.items():   # the data's own mean return, normalised as the scores are
                level = 100 * (mean - norm["ref_min_return"]) / (norm["ref_max_return"] - norm["ref_min_return"])
                ax.axhline(level, color="#009E73", linewidth=0.8, linestyle="-.")
                ax.text(ax.get_xlim()[1], level, f"mean of the data {data} ", fontsize=6, va="bottom", ha="right", color="#009E73")
            ax.set_xlabel("training step")
            ax.set_title(f"target return {target}", fontsize=8)
            ax.legend(fontsize=6, loc="center left")
        axes[0][0].set_ylabel("D4RL-normalised score (selection episodes)")
        datasets = sorted({str(r.get("dataset")) for _, r in runs})
        fig.suptitle(f"Walker2d: normalised score against step; data {', '.join(datasets)}", fontsize=9)
        written.append(save(fig, out, "control_walker2d", wk, results))
    if not written:
        raise UserError(f"no ogbench/*/results.json or walker2d/**/results.json under {results}")
    return written


DRAW = {"heads": heads_figures, "curves": curve_figures, "lengths": length_figures, "images": image_figures,
        "control": control_figures}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help=f"comma-separated figure kinds: {', '.join(KINDS)} (default: all)")
    p.add_argument("--results", default=str(REPO / "results"), help="results folder to read (default results/)")
    p.add_argument("--out", default=None, help="folder for the PNG files (default RESULTS/figures)")
    args = p.parse_args()
    kinds = [k.strip() for k in (args.only or ",".join(KINDS)).split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            raise UserError(f"unknown figure kind {k!r}; choose from {', '.join(KINDS)}")
    results = Path(args.results)
    if not results.is_dir():
        raise UserError(f"--results {results}: no such folder")
    out = Path(args.out) if args.out else results / "figures"
    matplotlib.rcParams.update({"font.size": 8, "axes.grid": True, "grid.alpha": 0.3})
    for k in kinds:
        for path in DRAW[k](results, out):
            print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
