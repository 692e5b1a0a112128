"""
Run bookkeeping shared by every script and task: the one-line user errors (UserError, run_main),
the stop on SIGINT/SIGTERM at a step boundary, the locks of run folders and cache entries, device
and dtype choice, the run folder guard, atomic writes, the one checkpoint loader, the environment
block of every results JSON, and checks of user input and of the files a user gives.

Nothing here runs at import time (the git commit is read on the first call to environment()).
"""
import atexit
import functools
import hashlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent


class UserError(Exception):
    """Bad input from the command line: scripts print it as one line and exit 2."""


class Stopped(Exception):
    """SIGINT/SIGTERM/SIGHUP ended the run: run_main prints the message and exits 128 + the signal number."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum


def run_main(main):
    """Call main(); a UserError becomes `error: ...` on stderr and exit code 2, a signal one line and exit
    130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP: the terminal closed); no traceback. Progress bars are
    closed first, so the line is the last."""
    for s in stop_signals(signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop_now)
    try:
        main()
    except UserError as e:
        close_progress_bars()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (Stopped, KeyboardInterrupt) as e:
        close_progress_bars()
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        print(str(e) if isinstance(e, Stopped) else "stopped by SIGINT; files written before it are kept", file=sys.stderr)
        sys.exit(128 + signum)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        # Under torchrun the work is done and saved; leave without the interpreter's shutdown. A gloo
        # worker thread can still be freeing the last collective's tensors, which takes the GIL; if
        # Python is finalising by then, the thread exits mid-destructor and the rank dies with SIGABRT
        # ("terminate called without an active exception"; torch 2.13, a few runs in 100 under load).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def close_progress_bars():
    """Close every live tqdm bar: left open, a bar redraws itself after the error line at exit."""
    from tqdm import tqdm
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


# ----------------------------------------------------------------------------- signals

_STOP = {"signal": None, "at": 0.0}


def stop_signals(*signals):
    """The signals to stop on, without a SIGHUP the process was started ignoring (`nohup`: the run must
    outlive its terminal)."""
    return [s for s in signals if not (s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN)]


def stop_now(signum, frame):
    """Outside a training loop a signal stops at once (files written before it are kept)."""
    raise Stopped(signum, f"stopped by {signal.Signals(signum).name}; files written before it are kept")


def stop_at_step_boundary():
    """From here on SIGINT/SIGTERM/SIGHUP only set a flag the training loop polls (stop_requested) between steps,
    so the loop can save a resumable checkpoint; a second signal stops at once. The same signal again
    within a second is one stop, not two: a kill of every process (a batch scheduler, `pkill`) reaches a
    sweep's run both directly and passed on by the sweep."""
    def on_signal(signum, frame):
        now = time.monotonic()
        if _STOP["signal"] is not None:
            if signum == _STOP["signal"] and now - _STOP["at"] < 1.0:
                return
            stop_now(signum, frame)
        _STOP["signal"], _STOP["at"] = signum, now
    for s in stop_signals(signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)


def stop_requested(world=1):
    """True once a signal arrived (on any rank under torchrun, so that all ranks stop at the same step)."""
    flag = _STOP["signal"] is not None
    return all_sum([float(flag)])[0] > 0 if world > 1 else flag


def stopped(out, step, saved="last.pt", how="run the same command with --resume"):
    """What a loop raises after it saved its checkpoint at a step boundary on a signal."""
    signum = _STOP["signal"] or signal.SIGTERM
    return Stopped(signum, f"stopped by {signal.Signals(signum).name} at step {step}: {out}/{saved} holds it; "
                           f"to continue, {how}")


# ----------------------------------------------------------------------------- locks

_LOCKS = {}


def hold_lock(lock_file, what, wait=False):
    """Hold an exclusive lock on lock_file until release_lock or the end of the process. Another process
    holding it: wait=False refuses in one line naming the holder; wait=True waits for it. Re-entrant
    within a process (a script that opens the same run twice)."""
    import fcntl
    lock_file = Path(lock_file).absolute()
    if lock_file in _LOCKS:
        return
    if not _LOCKS:
        atexit.register(lambda: [release_lock(f) for f in list(_LOCKS)])
    while True:
        f = open(lock_file, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{what} is in use by {holder} (lock {lock_file.name}); wait for it to end or choose another")
        try:   # the holder removes the file as it releases: a lock on a removed file guards nothing
            if os.stat(lock_file).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {platform.node()}\n")
    f.flush()
    _LOCKS[lock_file] = f


def release_lock(lock_file):
    f = _LOCKS.pop(Path(lock_file).absolute(), None)
    if f is not None:
        try:
            os.unlink(f.name)
        except OSError:
            pass
        f.close()


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
            "threads": torch.get_num_threads(), "cpu": cpu_info()}


@functools.lru_cache(maxsize=None)
def cpu_info():
    """The CPU's model name and its bf16 matrix units (amx_bf16, avx512_bf16): on a CPU, bf16 runs about
    twice as fast as fp32 with them and far slower without, so a run's speed needs both to be read."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:           # not Linux
        return {"model": platform.processor() or platform.machine(), "bf16_units": None}


def parse_cpuinfo(text):
    """cpu_info from the text of /proc/cpuinfo; bf16_units None where it lists no x86 flags (unknown, not none)."""
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            flags = set(value.split())
    return {"model": model or platform.machine(),
            "bf16_units": None if flags is None else sorted(flags & {"amx_bf16", "avx512_bf16"})}


def write_or_print(obj, out=None):
    """A command's JSON result: written atomically to `out` if given, else printed."""
    if out:
        save_atomic(obj, Path(out))
        print(f"wrote {out}")
    else:
        print(json.dumps(obj, indent=1))


def save_atomic(obj, path):
    """Write a dict as JSON (.json) or anything else with torch.save; a kill or a failed write (full disk,
    no permission) mid-write leaves the old file as it was."""
    path = Path(path)
    tmp = Path(str(path) + ".tmp")
    try:
        if isinstance(obj, dict) and path.suffix == ".json":
            tmp.write_text(json.dumps(obj, indent=1))
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:   # torch's zip writer reports a failed write as a RuntimeError
        try:
            tmp.unlink()
        except OSError:
            pass
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "the write failed; is the disk full?"
        kept = "the previous file is kept" if path.exists() else "nothing was written"
        raise UserError(f"cannot write {path} ({reason}); {kept}")


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
    predates counts as its default in `defaults`); but for "lr": a changed rate is allowed on resume
    and noted in cfg["lr_changes"] (what the divergence advice asks for). Also makes sure the folder
    can be written, so a bad --out fails before any work, not at the first checkpoint, and locks it
    for this process: a second run started into the same folder is refused, naming the first."""
    out = Path(out)
    if resume and not (out / "last.pt").is_file():
        load_checkpoint(out / "last.pt")        # the one-line refusal of a missing checkpoint
    if check_write:     # torchrun: rank 0 checks and locks, the others only read
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UserError(f"--out {out}: cannot create or write there ({e.strerror or type(e).__name__})")
        hold_lock(out / ".lock", f"--out {out}")
    if not resume:
        if (out / "last.pt").exists() or (out / "results.json").exists():
            raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        return None
    state = load_checkpoint(out / "last.pt")
    old = state["config"]
    defaults = defaults or {}
    diff = [k for k in identity if k != "lr" and old.get(k, defaults.get(k)) != cfg[k]]
    if diff:
        raise UserError(f"--resume: {out} was trained with different " + ", ".join(f"{k}={old.get(k, defaults.get(k))!r}" for k in diff)
                        + " (start a new run with another --out to change them)")
    planned = cfg.get("steps")
    if planned is not None and state["step"] > planned + (cfg.get("bridge_steps") or 0):
        raise UserError(f"--resume: {out} has done {state['step'] - (cfg.get('bridge_steps') or 0)} steps already; "
                        f"--steps {planned} is fewer (give at least that many)")
    note_lr_change(cfg, old, state["step"], "lr" in identity)
    return state


def note_lr_change(cfg, old, step, tracked):
    """--resume with another --lr: from `step` on the run trains at the new rate; cfg["lr_changes"] keeps
    every change (carried over from the checkpoint's config), so results.json says what was run."""
    changes = list(old.get("lr_changes", []))
    if tracked and old.get("lr") != cfg.get("lr"):
        changes.append({"step": step, "from": old.get("lr"), "to": cfg["lr"]})
        print(f"note: --lr {cfg['lr']} from step {step} on (trained at {old.get('lr')} before); recorded in the "
              f"run's config as lr_changes")
    if changes:
        cfg["lr_changes"] = changes


def refuse_overwrite(out, inputs, flag="--out"):
    """An output that is one of the command's inputs (a checkpoint, a dataset, a results.json it reads)
    would destroy it: refused in one line."""
    out = Path(out).resolve()
    for f in inputs:
        if Path(f).resolve() == out:
            raise UserError(f"{flag} {out} is an input of this command; writing there would replace it (choose another path)")


def read_json(path):
    """A JSON file a user gives (results.json, a summary, an analysis file): damage is one line naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (damaged, or not a JSON file?)")
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON (truncated or damaged?): {e}")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or type(e).__name__}")


def read_lines(path):
    """The non-empty lines of a UTF-8 text file a user gives, stripped; damage is one line naming it."""
    try:
        return [s.strip() for s in Path(path).read_text(encoding="utf-8").splitlines() if s.strip()]
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start} cannot be decoded)")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or type(e).__name__}")


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
    """Positive and finite, and small enough for the float32 tensors it multiplies (an lr of 1e300 is not)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and 0 < value <= torch.finfo(torch.float32).max):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number (at most 3.4e38), got {value}")


# the learning rates a search may extend its grid along, one step (x ~3) beyond an end its best rate sits
# on (sweep.py for the token and image suites, tasks/walker2d.py pick-lr for the Walker2d check)
LADDER = ("1e-5", "3e-5", "1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1")


def ladder_index(lr):
    """Where a learning rate sits on LADDER, compared as numbers; a rate off the ladder is a UserError."""
    for i, step in enumerate(LADDER):
        if math.isclose(float(step), float(lr), rel_tol=1e-9):
            return i
    raise UserError(f"learning rate {lr:g} is not on the ladder {', '.join(LADDER)}; a grid can only be extended from it")


SEED_MAX = 2 ** 31 - 1     # numpy takes seeds below 2**32 and the code derives seeds as seed + small offsets


def seed_arg(text):
    """argparse type of every seed flag: a whole number 0..SEED_MAX. Out of range is one `error:` line
    (a UserError passes through argparse to run_main), not an overflow deep in torch or numpy."""
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"a seed must be a whole number from 0 to {SEED_MAX}, got {text!r}")
    if not 0 <= value <= SEED_MAX:
        raise UserError(f"a seed must be a whole number from 0 to {SEED_MAX}, got {text}")
    return value



# ----------------------------------------------------------------------------- steps every training loop shares

def resume_training(state, net, opt, data_gen):
    """Where a run starts: a resumed run (state from open_run) gets its trainable weights, optimiser state
    and data stream back and continues at its saved (step, history, best, wall time so far); a new run
    (state None) starts at (0, [], None, 0.0)."""
    if state is None:
        return 0, [], None, 0.0
    net.load_state_dict(state["model"], strict=False)
    rates = [g["lr"] for g in opt.param_groups]
    opt.load_state_dict(state["optimizer"])
    for group, lr in zip(opt.param_groups, rates):    # the rate given now (an --lr changed on resume)
        group["lr"] = lr
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
            "body": info, **counts, **env, "wall_time_s": wall_time_s, "steps_done": step,
            "compilations": compilations() if cfg.get("compile") else 0}


def compilations():
    """Graphs torch.compile has built in this process so far: a handful per run, never one per step."""
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]

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


# settings that do not change what a run trains (how long, how often it reports, where it goes)
NOT_IDENTITY = ("out", "resume", "steps", "eval_every", "device", "dry_run", "checkpoint_minutes", "log_every", "compile")


def run_folder(label, cfg):
    """Default folder of a run: runs/<task label>__<condition>__<seed>__<hash>, the run's name as sweep.py
    names it plus a short hash of every setting that defines it (slice, learning rate, input scale, ...),
    so two runs that differ in any of them never share a folder; a longer run of the same settings
    (--steps) is the same run and resumes there."""
    settings = {k: v for k, v in sorted(cfg.items()) if k not in NOT_IDENTITY}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return Path("runs") / f"{label}__{condition_name(cfg)}__{cfg['seed']}__{digest}"


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


# ----------------------------------------------------------------------------- the researcher's loop: resume by folder, outputs, live logs

def add_run_args(p):
    """Flags every training loop shares beyond its own: resume by folder, the wall-clock checkpoint and
    the TensorBoard scalars."""
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue a run from its last.pt: --resume DIR, or --resume with --out DIR; every flag not "
                        "given comes from the run's stored config (--steps may extend it)")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="also write last.pt every this many minutes of training, so a kill loses minutes, not an "
                        "evaluation interval (default 10; 0: after every step)")
    p.add_argument("--log-every", type=int, default=10,
                   help="TensorBoard: training loss and learning rate every N steps, into the run folder (default 10)")


def parse_run_args(parser, argv=None):
    """A training script's flags. With --resume DIR (or --resume --out DIR) every flag not typed defaults to
    the value in DIR/last.pt's stored config, so `--resume DIR --steps N` is all a longer run needs; a
    typed flag that differs from the stored one is still refused by open_run."""
    args = parser.parse_args(argv)
    if args.resume is False:
        return args
    folder = args.out if args.resume is True else args.resume
    if folder is None:
        raise UserError("--resume needs the run folder: --resume DIR, or --resume --out DIR")
    if args.resume is not True and args.out is not None and Path(args.out) != Path(args.resume):
        raise UserError(f"--resume {args.resume} and --out {args.out} name two folders; give one")
    stored = load_checkpoint(Path(folder) / "last.pt")["config"]
    dests = {a.dest for a in parser._actions}
    parser.set_defaults(**{k: v for k, v in stored.items() if k in dests and k not in ("out", "resume")})
    args = parser.parse_args(argv)
    args.out, args.resume = str(folder), True
    return args


def checkpoint_due(saved_at, minutes):
    """Has the wall-clock checkpoint interval passed since `saved_at` (time.time())?"""
    return time.time() - saved_at >= minutes * 60


def refuse_existing(path, force):
    """An analysis output that exists already is kept unless --force."""
    if Path(path).exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it or choose another --out")


def scalar_writer(out, step, enabled=True):
    """TensorBoard event file in the run folder (`tensorboard --logdir runs`). A resumed run hides the
    events an earlier session logged after the checkpoint's step, so the curves show the run as it continued."""
    if not enabled:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(out), purge_step=step + 1 if step else None)


def log_scalars(writer, values, step, prefix=""):
    """Every number in a (nested) dict as a scalar named by its path, e.g. val/errors/8."""
    if writer is None:
        return
    for key, value in values.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            log_scalars(writer, value, step, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            writer.add_scalar(name, value, step)


def subcommands(prog, description, commands, argv, default=None):
    """`python -m tasks.X COMMAND [flags]`: commands = {name: (function(argv), one-line help)}. `--help`
    lists the commands, `COMMAND --help` gives that command's own flags; with `default`, flags without
    a command go to that command."""
    import argparse
    if default and (not argv or argv[0] not in commands) and argv[:1] not in (["-h"], ["--help"]):
        argv = [default, *argv]
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help")):
        raise UserError(f"usage: {prog} {{{','.join(commands)}}} [flags]  (--help lists the commands)")
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"{prog} COMMAND --help lists the flags of a command")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, text) in commands.items():
        sub.add_parser(name, help=text, add_help=False)
    args = p.parse_args(argv[:1])
    return commands[args.command][0](argv[1:])
