"""
Markdown tables and numbers from results JSON: what report.py fills into the READMEs and what
`sweep.py --table` prints. Every number is formatted here, so a table in a README is exactly what
its JSON holds (tests/test_results_readme.py re-renders them).
"""
import json
from pathlib import Path


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file")
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text)")


def lookup(obj, dotted):
    """Follow a dotted key path; list indices are numbers, and a key may itself hold dots (head
    labels such as L11.2): at each step the longest key that exists is taken."""
    parts = dotted.split(".")
    while parts:
        if isinstance(obj, list):
            obj = obj[int(parts.pop(0))]
            continue
        n = next((n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in obj), None)
        if n is None:
            raise KeyError(dotted)
        obj, parts = obj[".".join(parts[:n])], parts[n:]
    return obj


FEW_SEEDS = 5      # below this a bootstrap interval over seeds is only their range: the range is shown


def spread(d, fmt="{:.4f}"):
    """A stats.describe entry as its mean and, labelled, the range (fewer than FEW_SEEDS values) or
    the Student-t 95% interval (the bootstrap one, labelled so, in entries written before it)."""
    if len(d["values"]) < FEW_SEEDS:
        lo, hi = d.get("range") or [min(d["values"]), max(d["values"])]
        return f"{fmt.format(d['mean'])} (range {fmt.format(lo)} to {fmt.format(hi)})"
    (lo, hi), label = (d["t95"], "95% t interval") if d.get("t95") else (d["ci95"], "bootstrap 95% CI")
    return f"{fmt.format(d['mean'])} ({label} {fmt.format(lo)} to {fmt.format(hi)})"


def ratio_cell(r):
    """One stats.error_ratios entry: ratio of means; geometric mean [range]; the arithmetic mean of the
    per-seed ratios where the entry records it (the paper's statistic); ">=" where a zero error
    was replaced by its binomial upper bound (the ratio is then a lower bound); "n/a" where no pair
    has a ratio (neither made an error)."""
    ge = lambda flag: ">= " if flag else ""
    if r.get("geometric_mean") is None:
        g = "n/a"
    else:
        g = f"{ge(r['geometric_mean_lower_bound'])}{r['geometric_mean']:.1f}"
        if "geometric_mean_t95" in r:
            g += f" (95% t interval {r['geometric_mean_t95'][0]:.1f} to {r['geometric_mean_t95'][1]:.1f})"
        elif "geometric_mean_ci95" in r:      # entries written before: a bootstrap interval
            g += f" (bootstrap 95% CI {r['geometric_mean_ci95'][0]:.1f} to {r['geometric_mean_ci95'][1]:.1f})"
        g += f" [{r['range'][0]:.1f} to {r['range'][1]:.1f}]"
    cell = f"{ge(r['ratio_of_means_lower_bound'])}{r['ratio_of_means']:.1f}; {g}"
    if r.get("mean_of_ratios") is not None:      # summaries written before it was recorded lack it
        cell += f"; {ge(r['mean_of_ratios_lower_bound'])}{r['mean_of_ratios']:.1f}"
    return cell


def summary_tables(summary):
    """sweep.py's summary.json as markdown: per condition the held-out numbers with CIs, then the
    per-seed ratios (token tasks) or differences (images) to pretrained."""
    conds = summary["conditions"]
    what = summary.get("values", "errors")               # token tasks: errors per length; images: accuracy
    keys = list(next(iter(conds.values()))[what]) if conds else list(summary.get("floors", {}))
    head = [f"len{k}" for k in keys] if what == "errors" else [f"{k} accuracy" for k in keys]
    lines = ["| condition | trainable | lr | input scale | seeds | " + " | ".join(head) + " |",
             "|---|---|---|---|---|" + "---|" * len(keys)]
    for c, row in conds.items():
        lines.append(f"| {c} | {row['trainable_params']:,} | {row['lr']} | {row['input_scale']} | {row['n']} | "
                     + " | ".join(spread(row[what][k]) for k in keys) + " |")
    lines += floor_rows(summary, keys)
    if what == "accuracy":
        lines += ["", "| pretrained - condition, test accuracy (mean of per-seed differences) | |", "|---|---|"]
        for c, d in summary["differences_to_pretrained"].items():
            lines.append(f"| pretrained - {c} | {spread(d['test'])} |")
        return "\n".join(lines)
    ratios = summary["ratios_to_pretrained"]
    paper = any(e.get("mean_of_ratios") is not None for per_len in ratios.values() for e in per_len.values())
    what = "ratio of means; geometric mean of per-seed ratios [their range]" + (
        "; arithmetic mean of per-seed ratios (the paper's statistic)" if paper else "")
    lines += ["", f"| error / pretrained error: {what} | " + " | ".join(head) + " |", "|---|" + "---|" * len(keys)]
    for c, per_len in ratios.items():
        lines.append(f"| {c} / pretrained | " + " | ".join(ratio_cell(per_len[L]) for L in keys) + " |")
    return "\n".join(lines)


def regime_summary_table(summary):
    """Per condition of a sweep summary: the regime each seed's evaluated checkpoint ran in."""
    lines = ["| condition | input scale (per seed) | stream change | token-0 effect |", "|---|---|---|---|"]
    for c, row in summary["conditions"].items():
        reg = [r for r in row.get("regime", []) if r]
        if not reg:
            lines.append(f"| {c} | - | - | - |")
            continue
        cell = lambda k, f: " / ".join(f.format(r[k]) for r in reg)
        lines.append(f"| {c} | {cell('input_scale', '{:.2f}')} | {cell('stream_change', '{:.3g}')} | "
                     f"{cell('token0_effect', '{:.2f}')} |")
    return "\n".join(lines)


def regime_table(result):
    """regime.py's JSON: stream change and token-0 effect per body and scale (mean over seeds)."""
    scales = result["scales"]
    lines = ["| body | " + " | ".join(f"stream change, s = {s}" for s in scales) + " | "
             + " | ".join(f"token-0 effect, s = {s}" for s in scales) + " |",
             "|---|" + "---|" * (2 * len(scales))]
    for b, d in result["bodies"].items():
        sm = d["summary"]
        lines.append(f"| {b} | " + " | ".join(f"{sm[s]['stream_change']['mean']:.3g}" for s in scales) + " | "
                     + " | ".join(f"{sm[s]['token0_effect']['mean']:.2f}" for s in scales) + " |")
    return "\n".join(lines)


def floor_rows(summary, keys):
    """Rows under a token suite's error table: the no-learning floor per length, then each condition
    the search found not learned at this budget (no seeds), with what it would have had to reach."""
    if "floors" not in summary:
        return []
    rows = ["| no-learning floor | | | | | " + " | ".join(f"{summary['floors'][k]:.4f}" for k in keys) + " |"]
    for c, v in summary.get("not_learned", {}).items():
        chosen = summary["chosen"][c]
        need = "nothing can" if v["max_error"] is None else f"needed <= {v['max_error']:.4f}"
        rows.append(f"| {c} | | {chosen['lr']} | {chosen['input_scale']} | 0 | not learned at this budget: validation "
                    f"{v['error']:.4f} at len{v['length']} (floor {v['floor']:.4f}, {need} after {v['tries']} tries)"
                    + " | -" * (len(keys) - 1) + " |")
    return rows


def floors_table(floors):
    """`python -m tasks.floors floors` JSON: the no-learning floor of every token task per length."""
    lengths = sorted({L for t in floors["tasks"].values() for L in t["floors"]}, key=int)
    lines = ["| task | " + " | ".join(f"len{L}" for L in lengths) + " |", "|---|" + "---|" * len(lengths)]
    for name, t in floors["tasks"].items():
        lines.append(f"| {name} | " + " | ".join(f"{t['floors'][L]:.4f}" if L in t["floors"] else "-" for L in lengths) + " |")
    return "\n".join(lines)


def learnability_table(verdict):
    """`python -m tasks.floors verdict` JSON: per run the best checkpoint's validation error per length
    beside the floor, and whether its error at the selection length beats the floor by the margin."""
    runs = verdict["runs"]
    lengths = sorted({L for v in runs.values() for L in v["errors"]}, key=int)
    sel = verdict["select_len"]
    lines = [f"| run | lr | best step | " + " | ".join(f"len{L}" for L in lengths)
             + f" | at len{sel} | off the floor from step | under 0.01 at len{sel} from step |",
             "|---|---|---|" + "---|" * (len(lengths) + 3)]
    step = lambda v, k: "-" if k not in v else "never" if v[k] is None else f"{v[k]:,}"   # -: not recorded (older files)
    for d, v in runs.items():
        c = v["check"]
        need = "nothing can" if c["max_error"] is None else f"<= {c['max_error']:.4f}"
        lines.append(f"| `{Path(d).name}` | {v['lr']:g} | {v['best_step']:,} | "
                     + " | ".join(f"{v['errors'][L]:.4f}" if L in v["errors"] else "-" for L in lengths)
                     + f" | {'learned' if c['learned'] else 'not learned'} (needed {need}) | "
                     + f"{step(v, 'first_step_off_floor')} | {step(v, 'first_step_under_1pct')} |")
    floors = next(iter(runs.values()))["floors"]
    lines.append("| no-learning floor | | | " + " | ".join(f"{floors[L]:.4f}" if L in floors else "-" for L in lengths) + " | | | |")
    return "\n".join(lines)


def search_table(sweep):
    """sweep.py's search: the selection error of every (condition, learning rate, input scale) run,
    the chosen setting in bold."""
    rows = sweep["search"]
    lrs = sorted({r["lr"] for r in rows}, key=float)
    lines = ["| condition | input scale | " + " | ".join(f"lr {lr}" for lr in lrs) + " |", "|---|---|" + "---|" * len(lrs)]
    for c in dict.fromkeys(r["condition"] for r in rows):
        chosen = sweep["chosen"][c]
        for scale in dict.fromkeys(r["input_scale"] for r in rows if r["condition"] == c):
            cells = []
            for lr in lrs:
                hit = [r for r in rows if (r["condition"], r["lr"], r["input_scale"]) == (c, lr, scale)]
                v = f"{hit[0]['val_error']:.4f}" if hit else "-"
                cells.append(f"**{v}**" if hit and (lr, scale) == (chosen["lr"], chosen["input_scale"]) else v)
            lines.append(f"| {c} | {scale} | " + " | ".join(cells) + " |")
    if sweep.get("search_selection") == "best evaluation":     # older and short searches: the run's end
        lines += ["", "Each cell is that run's best evaluation over the full budget (as a seed run keeps best.pt)."]
    return "\n".join(lines)


def confirm_table(sweep):
    """sweep.py --confirm: each condition's best learning rate per input-scale choice and its ladder
    neighbours, rerun on seed 0 at the full budget; the error the short search saw (- where it never
    ran that rate) beside the best validation error of the full-budget run, the final choice in bold."""
    lines = ["| condition | lr | input scale | search error | full-budget error (best evaluation) |", "|---|---|---|---|---|"]
    for r in sweep["confirm"]:
        chosen = sweep["chosen"][r["condition"]]
        mark = "**" if (r["lr"], r["input_scale"]) == (chosen["lr"], chosen["input_scale"]) else ""
        searched = "-" if r["search_val_error"] is None else f"{r['search_val_error']:.4f}"
        lines.append(f"| {r['condition']} | {r['lr']} | {r['input_scale']} | {searched} "
                     f"| {mark}{r['val_error']:.4f}{mark} |")
    return "\n".join(lines)


def success_table(compare):
    """`python -m tasks.ogbench compare` JSON: success per evaluation and run with its exact 95% CI,
    then each run against the first over the pooled last evaluations (exact McNemar)."""
    runs = compare["runs"]
    steps = sorted({e["step"] for r in runs.values() for e in r["evaluations"]})
    lines = ["| step | " + " | ".join(f"`{n}`" for n in runs) + " |", "|---|" + "---|" * len(runs)]
    for st in steps:
        cells = []
        for r in runs.values():
            e = next((e for e in r["evaluations"] if e["step"] == st), None)
            cells.append("-" if e is None else f"{e['success_rate']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]")
        lines.append(f"| {st:,} | " + " | ".join(cells) + " |")
    if compare["versus_reference"]:
        lines += ["", "| run | against | steps pooled | episodes | success: reference / run | only reference / only run | exact P |",
                  "|---|---|---|---|---|---|---|"]
        for n, v in compare["versus_reference"].items():
            lines.append(f"| `{n}` | `{v['reference']}` | {', '.join(f'{x:,}' for x in v['steps'])} | {v['episodes']} | "
                         f"{v['reference_success']:.2f} / {v['success']:.2f} | {v['reference_only']} / {v['other_only']} | "
                         f"{v['mcnemar_exact_p']:.3f} |")
    return "\n".join(lines)


def bridge_table(compare):
    """`python -m tasks.images compare-bridges` JSON: per bridged run the bridge's own record (steps, final
    accuracy on its random labels, weight change, regime before -> after) and its test accuracy against
    the unbridged run of the same seed; then per condition the means and the per-seed differences."""
    lines = ["| condition | seed | bridged layers | bridge steps | random-label accuracy | weight change (rel. Frobenius, per layer) "
             "| stream change before -> after | test, bridged | test, unbridged | difference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c, row in compare["conditions"].items():
        for r in row["runs"]:
            # runs from before the bridge recorded its accuracy, weight change and regime show "-"
            fro = list((r.get("frobenius_change") or {}).values())
            acc = "-" if r.get("bridge_train_accuracy") is None else f"{r['bridge_train_accuracy']:.3f}"
            reg = [(r.get(k) or {}).get("stream_change") for k in ("regime_before", "regime_after")]
            layers = r["bridge_layers"]
            steps = "-" if r.get("bridge_steps_run") is None else f"{r['bridge_steps_run']:,}"
            lines.append(f"| {c} | {r['seed']} | {layers[0]}-{layers[-1]} | {steps} | "
                         f"{acc}{' (not reached)' if r.get('bridge_until_accuracy') and not r['bridge_reached'] else ''} | "
                         f"{f'{min(fro):.3f}-{max(fro):.3f}' if fro else '-'} | "
                         f"{' -> '.join('-' if x is None else f'{x:.3g}' for x in reg)} | {r['test_accuracy']:.3f} | "
                         f"{r['unbridged_test_accuracy']:.3f} | {r['difference']:+.3f} |")
    lines += ["", "| condition | seeds | every bridge reached its criterion | test, bridged | test, unbridged "
              "| bridged - unbridged (mean of per-seed differences) |", "|---|---|---|---|---|---|"]
    for c, row in compare["conditions"].items():
        lines.append(f"| {c} | {row['n']} | {'yes' if row['all_bridges_reached'] else 'no'} | {spread(row['test'], '{:.3f}')} | "
                     f"{spread(row['unbridged_test'], '{:.3f}')} | {spread(row['bridged_minus_unbridged'], '{:+.3f}')} |")
    return "\n".join(lines)


def interval(d, fmt):
    """A mean with its t interval over seeds; one seed has no interval."""
    if d.get("ci95") is None:
        return f"{fmt.format(d['mean'])} (one seed)"
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"


def seeds_table(summary):
    """`python -m tasks.ogbench seeds` JSON: per run the success of the last evaluations and their mean,
    per condition the mean over seeds, then each condition against the reference over seeds."""
    steps = summary["steps"]
    lines = ["| condition | seed | " + " | ".join(f"success at {s:,}" for s in steps) + " | mean | steps done | wall time (h) |",
             "|---|---|" + "---|" * len(steps) + "---|---|---|"]
    for name, r in summary["runs"].items():
        lines.append(f"| {r['condition']} | {r['seed']} | " + " | ".join(f"{x:.2f}" for x in r["success"])
                     + f" | {r['mean']:.3f} | {r['steps_done']:,}{'' if r['finished'] else ' (unfinished)'} | "
                     f"{r['wall_time_s'] / 3600:.1f} |")
    lines += ["", "| condition | seeds | mean over seeds [95% t interval] | one code version |", "|---|---|---|---|"]
    for c, row in summary["conditions"].items():
        lines.append(f"| {c} | {', '.join(map(str, row['seeds']))} | {interval(row, '{:.3f}')} | "
                     f"{'yes' if row['one_code_version'] else 'no: ' + ', '.join(x[:8] for x in row['git_commits'])} |")
    ref = summary["reference"]
    lines += ["", f"| {ref} - condition | per seed | mean [95% t interval] | paired t over seeds: P (df) | over seeds "
              "| between runs: only reference / only condition, McNemar P (pooled episodes) |", "|---|---|---|---|---|---|"]
    for c, d in summary["differences"].items():
        t = d["paired_t"]
        mc = summary["between_runs"][c]["pooled"]
        p = "-" if mc["mcnemar_exact_p"] is None else f"{mc['mcnemar_exact_p']:.3g}"
        test = "-" if t is None else f"{t['p']:.3g} ({t['df']})"
        lines.append(f"| {ref} - {c} | {' / '.join(f'{x:+.3f}' for x in d['values'])} | {interval(d, '{:+.3f}')} | "
                     f"{test} | {d['verdict']} | "
                     f"{mc['reference_only']} / {mc['other_only']}, {p} |")
    return "\n".join(lines)


def walker_seeds_table(summary):
    """`python -m tasks.walker2d seeds` JSON: per run its fresh-episode score per target, per condition the
    mean over seeds with a t interval, then each condition against the reference per target."""
    targets = summary["targets"]
    lines = ["| condition | seed | lr | batch | " + " | ".join(f"target {t}" for t in targets) + " | steps | wall time (h) |",
             "|---|---|---|---|" + "---|" * len(targets) + "---|---|"]
    for r in summary["runs"].values():
        lines.append(f"| {r['condition']} | {r['seed']} | {r['lr']:g} | {r['batch_size']} | "
                     + " | ".join(f"{r['fresh'][t]:.1f}" for t in targets) + f" | {r['steps_done']:,} | {r['wall_time_s'] / 3600:.1f} |")
    lines += ["", "| condition | seeds | trainable | " + " | ".join(f"target {t}: mean [95% t interval]" for t in targets) + " |",
              "|---|---|---|" + "---|" * len(targets)]
    for c, row in summary["conditions"].items():
        lines.append(f"| {c} | {', '.join(map(str, row['seeds']))} | {row['trainable_params']:,} | "
                     + " | ".join(interval(row["fresh"][t], "{:.1f}") for t in targets) + " |")
    ref = summary["reference"]
    lines += ["", f"| {ref} - condition | target | per seed | mean [95% t interval] | paired t over seeds: P (df) | over seeds |",
              "|---|---|---|---|---|---|"]
    for c, per_target in summary["differences"].items():
        for t in targets:
            d = per_target[t]
            test = "-" if d["paired_t"] is None else f"{d['paired_t']['p']:.3g} ({d['paired_t']['df']})"
            lines.append(f"| {ref} - {c} | {t} | {' / '.join(f'{x:+.1f}' for x in d['values'])} | {interval(d, '{:+.1f}')} | "
                         f"{test} | {d['verdict']} |")
    return "\n".join(lines)


def lr_check_table(choice):
    """`python -m tasks.walker2d pick-lr` JSON: each body's check runs, the criterion value per rate, the chosen one in bold."""
    lines = ["| body | lr | steps | criterion (training-time episodes) | per target | wall time (h) |", "|---|---|---|---|---|---|"]
    for body, b in choice["bodies"].items():
        for name, r in sorted(b["runs"].items(), key=lambda kv: kv[1]["lr"]):
            mark = "**" if name == b["chosen_run"] else ""
            lines.append(f"| {body} | {mark}{r['lr']:g}{mark} | {r['steps_done']:,} | {mark}{r['value']:.1f}{mark} | "
                         + " / ".join(f"{t}: {v:.1f}" for t, v in r["per_target"].items()) + f" | {r['wall_time_s'] / 3600:.1f} |")
    edges = [f"{body}: best rate {b['chosen_lr']:g} at the {b['open_edge']} end of the rates checked, "
             + (f"{b['next_lr']:g} beyond it not run" if b["next_lr"] else "the ladder ends there")
             for body, b in choice["bodies"].items() if b.get("open_edge")]
    return "\n".join(lines + ([""] + [f"Open edge: {e}." for e in edges] if edges else []))


TABLES = {"summary": summary_tables, "regime": regime_table, "summary-regime": regime_summary_table,
          "search": search_table, "confirm": confirm_table, "success": success_table, "bridges": bridge_table,
          "seeds": seeds_table, "walker-seeds": walker_seeds_table, "lr-check": lr_check_table,
          "floors": floors_table, "learnability": learnability_table}
