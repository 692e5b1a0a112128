"""What the token tasks share: the model a run config describes, the loss, length limits, the
per-bit error, and the task protocol (tasks/__init__.py) for evaluate.py and ablate.py. The
training loop is train.py's own."""
import importlib
import time

import torch
import torch.nn.functional as F

import model as M
import stats
from runs import UserError, all_sum, environment, load_checkpoint, load_weights, pick_device, portable
from tasks import TABLE, floors

PAIRED = None   # key of the per-item 0/1 outcomes in a measurement's detail (McNemar), if any
METRIC, HIGHER_IS_BETTER = "per_bit_error", False


def get_task(name):
    """The data module of a token task (tasks/<name>.py), for a name the task table gives to this module."""
    if TABLE.get(name) != "tokens":
        raise UserError(f"unknown token task {name!r}; choose from {', '.join(t for t, m in TABLE.items() if m == 'tokens')}")
    return importlib.import_module(f"tasks.{name}")


def build(cfg, device, known_scale=None):
    """(task module, InterfaceModel, body info) from a run config.

    known_scale: the numeric input scale a checkpoint was trained with (skips calibration)."""
    task = get_task(cfg["task"])
    torch.manual_seed(cfg["seed"])
    body, info = M.body_from_config(cfg, device, known_scale)
    M.compile_body(body, cfg)
    net = M.InterfaceModel(body, info["d_model"], task.IN_DIM, task.OUT_DIM, info["input_scale"],
                           learn_scale=info["input_scale_mode"] == "learn").to(device)
    net.longest = max_length(task, info["sliding_window"])   # longest task length this model takes
    net.info = info
    return task, net, info


def load_run(ckpt_path, device="auto", dtype=None):
    """(net, cfg, checkpoint dict): the model a checkpoint describes, with its weights in place.

    dtype: precision of the frozen body (None: the run's own --dtype)."""
    state = load_checkpoint(ckpt_path, tuple(t for t, m in TABLE.items() if m == "tokens"))
    cfg = state["config"] if dtype is None else {**state["config"], "dtype": dtype}
    # the number the interface was trained with, not a fresh calibration (which may have changed)
    _, net, _ = build(cfg, pick_device(device), known_scale=state["body"]["input_scale"])
    load_weights(net, state["model"], ckpt_path)
    return net, cfg, state


def load_trained(ckpt_path, device="auto", dtype=None):
    """(task, net, cfg, info, step, device), the pieces evaluation and ablation use."""
    net, cfg, state = load_run(ckpt_path, device, dtype)
    return get_task(cfg["task"]), net, cfg, net.info, state["step"], pick_device(device)


def fresh_seed(cfg, eval_seed=None):
    """The evaluation stream: seed + 1 picked best.pt during training, seed + 2 never picked anything."""
    return cfg["seed"] + 2 if eval_seed is None else eval_seed


def task_loss(logits, y, mask):
    return F.binary_cross_entropy_with_logits(logits[mask], y[mask])


def max_length(task, window):
    """Longest task length whose sequence fits the checkpoint's sliding window (so every layer of a
    slice sees the whole sequence), and the task's own limit (e.g. distinct 6-bit MQAR keys)."""
    window = window or 10 ** 6
    L = task.MAX_LEN
    while L >= task.MIN_LEN and task.num_tokens(L) > window:
        L -= 1
    return L


def parse_lengths(spec, task, longest):
    try:
        lengths = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        raise UserError(f"lengths must be comma-separated integers, got {spec!r}")
    if not lengths:
        raise UserError(f"no lengths in {spec!r}")
    for L in lengths:
        if not task.MIN_LEN <= L <= longest:
            raise UserError(f"length {L} is outside what task {task.NAME} supports with this model ({task.MIN_LEN}-{longest})")
    return lengths


@torch.no_grad()
def bit_errors(net, task, lengths, samples, seed, device, batch=64, rank=0, world=1):
    """Per-bit error (threshold 0.5, chance 0.5) on the scored positions, per length.

    The data depends only on (seed, length), so every checkpoint, condition and ablated head is
    scored on the same sequences: comparisons are paired. Under torchrun every rank draws every
    chunk (to keep the stream) but scores only chunks i with i % world == rank; the integer counts
    are summed over ranks, so the result is exactly the single-process one."""
    net.eval()
    counts = []
    for L in lengths:
        g = torch.Generator().manual_seed(seed * 1000 + L)
        wrong = total = 0
        for i, start in enumerate(range(0, samples, batch)):
            x, y, mask = task.make_batch(min(batch, samples - start), L, g)
            if i % world != rank:
                continue
            x, y, mask = x.to(device), y.to(device), mask.to(device)
            pred = net(x) > 0
            wrong += (pred[mask] != (y[mask] > 0.5)).sum().item()
            total += y[mask].numel()
        counts += [wrong, total]
    counts = all_sum(counts) if world > 1 else counts
    net.train()
    return {str(L): counts[2 * i] / counts[2 * i + 1] for i, L in enumerate(lengths)}


# ----------------------------------------------------------------------------- the task protocol


def evaluate_run(ckpt_path, opts):
    """Per-bit error per length on a stream no selection used (default: run seed + 2)."""
    task, net, cfg, info, step, device = load_trained(ckpt_path, opts.device, opts.dtype)
    lengths = parse_lengths(opts.lengths or cfg["eval_lengths"], task, net.longest)
    seed = fresh_seed(cfg, opts.eval_seed)
    t0 = time.time()
    errors = bit_errors(net, task, lengths, opts.samples, seed, device)
    return {"config": cfg, "seed": cfg["seed"], "model": cfg["model"], "slice": info["layers"], "body": info,
            **M.param_counts(net), **environment(device), "checkpoint": portable(ckpt_path), "checkpoint_step": step,
            "metric": METRIC, "eval_seed": seed, "eval_samples": opts.samples, "errors": errors,
            "regime": M.regime(net.body, net.input_scale()), "wall_time_s": time.time() - t0}


def summary_line(result):
    return " ".join(f"len{L}={e:.4f}" for L, e in result["errors"].items())


def ablation_target(ckpt_path, opts):
    """Mean per-bit error over the lengths (default: the run's selection length) on fixed sequences."""
    task, net, cfg, info, _, device = load_trained(ckpt_path, opts.device, opts.dtype)
    lengths = parse_lengths(opts.lengths or str(cfg["select_len"]), task, net.longest)
    seed = fresh_seed(cfg, opts.eval_seed)

    def measure():
        errors = bit_errors(net, task, lengths, opts.samples, seed, device)
        return sum(errors.values()) / len(errors), errors

    meta = {"metric": METRIC, "higher_is_better": HIGHER_IS_BETTER, "lengths": lengths, "samples": opts.samples,
            "eval_seed": seed, "slice": info["layers"]}
    return net.body, measure, cfg, meta, device


def run_values(r, which="best"):
    """(name, curve entry, {length: error}) of a results.json: its best checkpoint's or last evaluation's."""
    curve = r["best"] if which == "best" else r["final"]
    return None if curve is None else ("errors", curve, curve["errors"])


def head_extra(intact_detail, detail):
    return {}


# ----------------------------------------------------------------------------- what sweep.py needs

COMPARISON = "ratios_to_pretrained"    # the summary's per-seed comparison of each control with pretrained


def sweep_check(args):
    """A token sweep's own flags, checked before the first run."""
    for name in ("train_len", "eval_lengths", "select_len"):
        if getattr(args, name) is None:
            raise UserError(f"--{name.replace('_', '-')} is required for a token task")
    args.track_lengths = args.track_lengths or str(args.select_len)
    if str(args.select_len) not in [s.strip() for s in args.track_lengths.split(",")]:
        raise UserError(f"--track-lengths {args.track_lengths} must include --select-len {args.select_len}")
    floors.need_floor_above_zero(args.task, args.select_len)
    if args.select_len > args.train_len:
        print(f"note: --select-len {args.select_len} is beyond the training edge {args.train_len}: the search then "
              f"rewards reach past the training range as well as learning", flush=True)


def sweep_flags(args):
    """train.py flags every run of a token sweep gets."""
    return ["--train-len", str(args.train_len), "--eval-lengths", args.track_lengths,
            "--select-len", str(args.select_len), "--eval-samples", str(args.eval_samples)]


def selection_error(entry, args):
    """What the search and best.pt minimise: one evaluation's validation per-bit error at --select-len."""
    return entry["errors"][str(args.select_len)]


def sweep_floors(args):
    """{length: no-learning floor} at the held-out lengths and the selection length (tasks/floors.py)."""
    lengths = sorted({int(s) for s in args.eval_lengths.split(",") if s.strip()} | {args.select_len})
    return floors.floors(args.task, lengths)


def floor_check(args, error, tries):
    """Does the search's choice, the lowest of `tries` validation errors, beat the floor at --select-len
    by the margin (tasks/floors.py)?"""
    return floors.check(args.task, args.select_len, args.eval_samples, error, tries)


def held_out_flags(args):
    """evaluate.py flags of the held-out evaluation."""
    return ["--lengths", args.eval_lengths, "--samples", str(args.eval_samples_final)]


def summary_values(args):
    """(summary header, the keys each condition is summarised at, the value of an evaluate.py result at a key)."""
    head = {"metric": METRIC, "values": "errors", "stream": "held-out (seed + 2)",
            "samples_per_length": args.eval_samples_final}
    return head, [s.strip() for s in args.eval_lengths.split(",")], lambda r, k: r["errors"][k]


def versus_pretrained(args, values, reference):
    """Per length, control error / pretrained error over seeds paired by index (stats.error_ratios:
    ratio of means, geometric mean of per-seed ratios, their range). values, reference: {length:
    [per-seed error]}. A pretrained seed with no error at all gets the exact one-sided 95% binomial
    upper bound on its error from the held-out sequences it scored (independent draws; the bits of
    one sequence are not), so its ratio and the geometric mean are lower bounds, flagged, never an
    infinity."""
    return {L: stats.error_ratios(values[L], reference[L], args.eval_samples_final) for L in values}


def scored_bits(task_name, length, samples):
    """Bits scored at one length over `samples` sequences (the resolution of a per-bit error)."""
    task = get_task(task_name)
    _, _, mask = task.make_batch(1, length, torch.Generator().manual_seed(0))
    return samples * int(mask.sum()) * task.OUT_DIM
