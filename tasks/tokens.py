"""What the token tasks share: the task registry, the model a run config describes, the loss,
length limits and the per-bit error. Used by train.py, evaluate.py and ablate.py."""
import importlib

import torch
import torch.nn.functional as F

import model as M
from runs import all_sum, load_checkpoint, load_weights

TASKS = ("mqar", "ar", "rule90", "copy", "addition")


def get_task(name):
    if name not in TASKS:
        raise M.UserError(f"unknown --task {name!r}; choose from {', '.join(TASKS)}")
    return importlib.import_module(f"tasks.{name}")


def build(cfg, device, known_scale=None):
    """(task module, InterfaceModel, body info) from a run config.

    known_scale: the numeric input scale a checkpoint was trained with (skips calibration)."""
    task = get_task(cfg["task"])
    torch.manual_seed(cfg["seed"])
    body, info = M.body_from_config(cfg, device, known_scale)
    net = M.InterfaceModel(body, info["d_model"], task.IN_DIM, task.OUT_DIM, info["input_scale"],
                           learn_scale=info["input_scale_mode"] == "learn").to(device)
    net.longest = max_length(task, info["sliding_window"])   # longest task length this model takes
    return task, net, info


def load_trained(ckpt_path, device="auto", dtype=None):
    """(task, net, cfg, info, step, device): the model a checkpoint describes, with its weights in place.

    dtype: precision of the frozen body (None: the run's own --dtype)."""
    state = load_checkpoint(ckpt_path, TASKS)
    cfg = state["config"] if dtype is None else {**state["config"], "dtype": dtype}
    device = M.pick_device(device)
    # the number the interface was trained with, not a fresh calibration (which may have changed)
    task, net, info = build(cfg, device, known_scale=state["body"]["input_scale"])
    load_weights(net, state["model"], ckpt_path)
    return task, net, cfg, info, state["step"], device


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
        raise M.UserError(f"lengths must be comma-separated integers, got {spec!r}")
    if not lengths:
        raise M.UserError(f"no lengths in {spec!r}")
    for L in lengths:
        if not task.MIN_LEN <= L <= longest:
            raise M.UserError(f"length {L} is outside what task {task.NAME} supports with this model ({task.MIN_LEN}-{longest})")
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
