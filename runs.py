"""
Run bookkeeping shared by every script and task: the one-line user errors (UserError, run_main),
device and dtype choice, the run folder guard, atomic writes, the one checkpoint loader, the
environment block of every results JSON, and checks of user input.

Nothing here runs at import time (the git commit is read on the first call to environment()).
"""
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import warnings
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent


class UserError(Exception):
    """Bad input from the command line: scripts print it as one line and exit 2."""


def run_main(main):
    """Call main(); a UserError becomes `error: ...` on stderr and exit code 2, no traceback."""
    import sys
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        # Under torchrun the work is done and saved; leave without the interpreter's shutdown. A gloo
        # worker thread can still be freeing the last collective's tensors, which takes the GIL; if
        # Python is finalising by then, the thread exits mid-destructor and the rank dies with SIGABRT
        # ("terminate called without an active exception"; torch 2.13, a few runs in 100 under load).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def pick_device(name=None):
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but no CUDA GPU is available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r} (try cpu, cuda, cuda:1)")


DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def default_dtype(device):
    # bf16 halves memory on GPU and uses its tensor cores; CPU bf16 matmuls are slow, so fp32 there.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def resolve_dtype(name, device):
    """--dtype auto|bf16|fp32 -> the dtype the frozen body holds and computes in."""
    if name in (None, "auto"):
        return default_dtype(device)
    if name not in DTYPES:
        raise UserError(f"unknown --dtype {name!r}; choose from auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype):
    return {v: k for k, v in DTYPES.items()}[dtype]


@functools.cache
def git_commit():
    """HEAD of the code this process runs, with '-dirty' if tracked files differ from it. Cached at
    the first call, which every script makes when its run starts: a commit made while the run goes
    on does not change what the run says it ran."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def portable(path):
    """A path as results JSON records it: relative to the repository when inside it, '~/...' when
    under the home folder, else as given. Committed JSON must not hold one machine's absolute paths."""
    if path is None:
        return None
    p = Path(os.path.expanduser(str(path))).absolute()
    for base, shown in ((REPO, None), (Path.home(), "~")):
        if p.is_relative_to(base):
            rel = p.relative_to(base)
            return str(rel) if shown is None else f"{shown}/{rel}"
    return str(path)


def environment(device):
    import transformers
    return {"git_commit": git_commit(), "device": str(device), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


def write_or_print(obj, out=None):
    """A command's JSON result: written atomically to `out` if given, else printed."""
    if out:
        save_atomic(obj, Path(out))
        print(f"wrote {out}")
    else:
        print(json.dumps(obj, indent=1))


def save_atomic(obj, path):
    """Write a dict as JSON (.json) or anything else with torch.save; a kill mid-write leaves the old file."""
    path = Path(path)
    tmp = Path(str(path) + ".tmp")
    try:
        if isinstance(obj, dict) and path.suffix == ".json":
            tmp.write_text(json.dumps(obj, indent=1))
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")


def load_checkpoint(path, tasks=None):
    """A checkpoint written by this project, validated the same way for every kind.

    Refuses, with one line, a missing file, bytes that are not a torch file (random, truncated), a
    torch file that is not one of ours (a bare state_dict, another project's), and a checkpoint of
    another kind than `tasks` (e.g. a walker2d checkpoint given where a token task is expected).
    Loaded with weights_only=True: no code in the file is ever run."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        # torch's reader does not check the zip's CRC32s: a flipped bit in a tensor would load silently
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            raise UserError(f"{path} is corrupted: the checksum of {bad} does not match its bytes")
        with warnings.catch_warnings():      # a damaged pickle header warns before it fails: keep one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as e:   # damaged bytes fail anywhere in the unpickler (IndexError, KeyError, TypeError, ...)
        raise UserError(f"{path} is not a readable checkpoint (truncated, damaged, or not a torch file?): {type(e).__name__}")
    if not (isinstance(state, dict) and isinstance(state.get("config"), dict) and "task" in state["config"]
            and isinstance(state.get("model"), dict) and isinstance(state.get("step"), int)):
        raise UserError(f"{path} is a torch file but not a checkpoint of this project (no config/model/step)")
    if tasks is not None and state["config"]["task"] not in tasks:
        raise UserError(f"{path} is a {state['config']['task']} checkpoint; expected one of {', '.join(tasks)}")
    return state


def load_weights(net, weights, path, also=()):
    """Put a checkpoint's trained weights into the model its config rebuilt (every task's loader does).
    Refuses, with one line, weights of another shape (another task, model or slice) and a checkpoint
    that lacks a trainable weight or holds one the model does not have. `also`: name prefixes of
    weights training moves without a gradient (IQL's target critic), required as well."""
    try:
        missing, unexpected = net.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise UserError(f"{path} does not fit the model its config describes: {str(e).splitlines()[1].strip()}")
    trainable = {n for n, p in net.named_parameters() if p.requires_grad or n.startswith(tuple(also))}
    if unexpected or trainable & set(missing):
        raise UserError(f"{path} does not fit the model its config describes "
                        f"(missing {sorted(trainable & set(missing))[:3]}, unexpected {unexpected[:3]})")


def open_run(out, cfg, identity, resume, defaults=None, check_write=True):
    """The checkpoint to resume from (None for a new run); refuses to mix or overwrite runs.

    identity: the config keys a resumed run must share with its checkpoint (a key the checkpoint
    predates counts as its default in `defaults`). Also makes sure the folder can be written, so
    a bad --out fails before any work, not at the first checkpoint."""
    out = Path(out)
    if not resume:
        if (out / "last.pt").exists() or (out / "results.json").exists():
            raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        state = None
    else:
        state = load_checkpoint(out / "last.pt")
        old = state["config"]
        defaults = defaults or {}
        diff = [k for k in identity if old.get(k, defaults.get(k)) != cfg[k]]
        if diff:
            raise UserError(f"--resume: {out} was trained with different " + ", ".join(f"{k}={old.get(k, defaults.get(k))!r}" for k in diff)
                            + " (start a new run with another --out to change them)")
    if not check_write:     # torchrun: rank 0 checks, the others only read
        return state
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--out {out}: cannot create or write there ({e.strerror or type(e).__name__})")
    return state


def file_sha256(path):
    """SHA-256 of a file, read in 1 MB blocks (data files and policy checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sources_record(files):
    """What an analysis (or a figure) built from results JSON records about what it read: each
    file's sha256, and where the file is an analysis of a checkpoint (ablate.py), the checkpoint
    it names with that checkpoint's sha256 (None for a file written before ablate.py recorded it:
    such an analysis cannot show which checkpoint it is about)."""
    out = []
    for f in files:
        try:
            d = json.loads(Path(f).read_text())
        except (ValueError, UnicodeDecodeError):
            d = None
        d = d if isinstance(d, dict) else {}
        out.append({"file": portable(f), "sha256": file_sha256(f), "checkpoint": d.get("checkpoint"),
                    "checkpoint_sha256": d.get("checkpoint_sha256")})
    return out


def need_at_least(args, minimum, *names):
    """One line per bad value: --steps 0, --batch-size -1 and friends."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise UserError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def need_positive_float(args, *names):
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")



# ----------------------------------------------------------------------------- steps every training loop shares

def resume_training(state, net, opt, data_gen):
    """Where a run starts: a resumed run (state from open_run) gets its trainable weights, optimiser state
    and data stream back and continues at its saved (step, history, best, wall time so far); a new run
    (state None) starts at (0, [], None, 0.0)."""
    if state is None:
        return 0, [], None, 0.0
    net.load_state_dict(state["model"], strict=False)
    opt.load_state_dict(state["optimizer"])
    data_gen.set_state(state["data_rng"])
    return state["step"], state["history"], state.get("best"), state["wall_time_s"]


def warm_up(opt, lr, step, warmup):
    """Linear warm-up: step k (0-based) of a stage runs at lr * min(1, (k + 1) / warmup)."""
    for group in opt.param_groups:
        group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))


def global_loss(loss, world, step, out):
    """The loss of the whole global batch as a float (the mean of the ranks' means under torchrun), checked
    finite before the update, so last.pt stays the last good state."""
    value = all_sum([loss.item()])[0] / world if world > 1 else loss.item()
    check_finite(value, step + 1, out)
    return value


def training_state(cfg, info, step, model_state, opt, data_gen, history, best, wall_time_s, **extra):
    """What last.pt and best.pt hold: all that --resume needs and evaluate/ablate rebuild the run from."""
    return {"config": cfg, "body": info, "step": step, "model": model_state, "optimizer": opt.state_dict(),
            "data_rng": data_gen.get_state(), "history": history, "best": best, "wall_time_s": wall_time_s, **extra}


def results_head(cfg, info, condition, counts, env, step, wall_time_s):
    """The fields every results.json starts with: full config, seed, model, slice, the run's one condition
    name, the body's description, trainable and frozen parameter counts, the environment (git commit,
    versions, device), wall time and steps done."""
    return {"config": cfg, "seed": cfg["seed"], "model": cfg["model"], "slice": info["layers"], "condition": condition,
            "body": info, **counts, **env, "wall_time_s": wall_time_s, "steps_done": step}

def check_finite(loss, step, out):
    """Stop on a NaN/inf loss; the last good checkpoint stays as it was."""
    if not math.isfinite(loss):
        raise UserError(f"the loss became {loss} at step {step}; stopped. The last good checkpoint is kept in "
                        f"{out}/last.pt; resume it with a lower --lr")


def refuse_changed_scale(state, scale, out, flag):
    """--resume: the input scale the run starts with now must be the one it was trained with (a changed
    calibration would change the model under the trained interface)."""
    if state is not None and state["body"]["input_scale"] != scale:
        raise UserError(f"--resume: {out} was trained with input scale {state['body']['input_scale']!r}, but "
                        f"--input-scale {flag} now gives {scale!r} (did the calibration change?); resuming would "
                        f"change the model under the trained interface")


def condition_name(cfg):
    """A run's one condition name, the same in sweep keys, run folders, results JSON ("condition"),
    summaries, ablation files and figures: the slice's control (pretrained, random-init, shuffled,
    matched) or the substrate (gpt2-random, scratch, none, mlp); an image run with a random-label
    bridge: bridge, bridge-partial (only some layers bridged), then the control if not pretrained
    (bridge-random-init, bridge-partial-random-init). The slice is not part of it: JSON records it as "slice", folders add it."""
    if cfg["substrate"] != "gemma":
        return cfg["substrate"]
    init = "random-init" if cfg["init"] == "random" else cfg["init"]
    if not cfg.get("bridge_steps"):
        return init
    first, _, last = str(cfg["layers"]).partition("-")
    partial = list(cfg["bridge_layer_ids"]) != list(range(int(first), int(last or first) + 1))
    return "-".join(["bridge"] + (["partial"] if partial else []) + ([init] if init != "pretrained" else []))


def run_folder(label, cfg):
    """Default folder of a run: runs/<task label>__<condition>[-L<slice>]__<seed> (the slice where the
    body has layers, so runs of two slices do not collide)."""
    sliced = cfg["substrate"] not in ("none", "mlp", "dt")
    return Path("runs") / f"{label}__{condition_name(cfg)}{'-L' + str(cfg['layers']) if sliced else ''}__{cfg['seed']}"


def episode_seed_base(run_seed, stream):
    """Environment seeds of the control tasks: stream 1 = evaluations during training, 2 = fresh
    re-evaluation and ablation. Episode i of a stream resets with seed base + i for every
    checkpoint, target and head, so every comparison is paired."""
    return 10_000 * run_seed + 1000 * stream


def need_package(module, pip_name, what):
    """Import an optional dependency, or one line naming the pip command."""
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"{what} needs `pip install {pip_name}` (see requirements.txt)")


def host_reachable(host, timeout=3.0, port=443):
    """Can a direct connection reach host:port within seconds? Dataset downloaders retry a dead
    connection for tens of seconds; this answers first. Behind a proxy a direct probe proves
    nothing, so the download itself decides."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        import socket
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- torchrun

def distributed():
    """(rank, world_size, local_rank): under torchrun the process group is set up here (NCCL on CUDA,
    gloo on CPU) from the environment torchrun exports; a plain `python` run is (0, 1, 0)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def data_parallel(batch_size, device_name):
    """(rank, world_size, device) of a training process: one GPU per rank under torchrun, and a
    global --batch-size that splits evenly over the ranks."""
    rank, world, local_rank = distributed()     # (0, 1, 0) unless started by torchrun
    if batch_size % world:
        raise UserError(f"--batch-size {batch_size} is the global batch: it must divide evenly over {world} ranks")
    device = pick_device(device_name)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return rank, world, device


def wrap_ddp(net, device, world):
    """What a training step calls: DDP around net under torchrun (it averages the ranks' gradients;
    every rank holds its own frozen body), net itself in a single process."""
    if world == 1:
        return net
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)


def all_sum(values):
    """Element-wise sum of a list of numbers over all ranks (unchanged in a single process)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in a single process)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish_distributed():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
