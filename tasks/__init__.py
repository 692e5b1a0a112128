"""
The task table: which module implements each --task. Adding a task = one module in tasks/ and one
line here. A token task (fixed-length bit patterns, per-bit error) is a small data module, e.g.
tasks/mqar.py, run by tasks/tokens.py; a task with its own data and loop is a module of its own.

Every module named on the right offers the same surface, used by the scripts instead of branching:
    get_parser(), main(argv)      its training flags and loop (not tasks/tokens.py: the token tasks
                                  share train.py's own parser and loop)
    build(cfg, device, known_scale=None)                 the run's network from its config (its body through
                                                         model.body_from_config; load_run passes the stored scale)
    load_run(ckpt, device, dtype) -> (net, cfg, state)   a checkpoint's model, weights in place, its stored
                                                         input scale (never recalibrated)
    evaluate_run(ckpt, opts)      -> JSON dict           what evaluate.py writes (opts: its flags)
    summary_line(result)          -> str                 evaluate.py's one-line summary
    ablation_target(ckpt, opts)   -> (body, measure, cfg, meta, device)   what ablate.py zeroes heads of;
                                                         measure() -> (value, detail), on the same data each call
    run_values(results, which)    -> (name, entry, {k: v}) or None   what evaluate.py --aggregate summarises
    head_extra(intact, detail)    -> dict                per-head extras in an ablation sweep
    PAIRED                        key of per-item 0/1 outcomes in a measurement's detail (McNemar tests), or None
    METRIC, HIGHER_IS_BETTER

A task sweep.py can run (the token tasks and images) also offers:
    sweep_check(args), sweep_flags(args) -> [train.py flags], held_out_flags(args) -> [evaluate.py flags]
    selection_error(entry, args)  -> float               what the search and best.pt minimise, from one evaluation
    summary_values(args)          -> (header, keys, value(result, key))   what summary.json tabulates
    versus_pretrained(args, values, reference) -> dict   each control against pretrained, seeds paired
    COMPARISON                    the summary key that comparison goes under
A task with a no-learning floor (the token tasks: each data module's floor(length), tasks/floors.py)
also offers, and sweep.py then refuses to choose from noise:
    sweep_floors(args)            -> {length: floor}     at the held-out and selection lengths
    floor_check(args, error, tries) -> dict              does the choice beat the floor by the margin?
"""
import importlib

from runs import UserError

TABLE = {
    "mqar": "tokens", "ar": "tokens", "rule90": "tokens", "copy": "tokens", "addition": "tokens",
    "images": "images",
    "walker2d": "walker2d",
    "ogbench": "ogbench",
}


def module(task):
    """The module that implements `task`."""
    if task not in TABLE:
        raise UserError(f"unknown --task {task!r}; choose from {', '.join(TABLE)}")
    return importlib.import_module(f"tasks.{TABLE[task]}")
