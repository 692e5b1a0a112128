"""tasks/images.py: exact patching, the bundled MNIST-5k, a folder of class sub-folders, the bridge
stage (changes exactly its layers, then stays frozen), the offline failure, evaluate/ablate on
image checkpoints, torchrun, and one real run on the embedded model."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import model as M
import runs
from runs import UserError
from tasks import images

REPO = Path(__file__).resolve().parents[1]


def run(*args, check=True, torchrun=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pre = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun else []
    out = subprocess.run([sys.executable, *pre, *args], cwd=REPO, capture_output=True, text=True, env=env)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def tiny_args(ckpt, data, out, *extra):
    return ["train.py", "--task", "images", "--dataset", str(data), "--image-size", "8", "--patch", "4",
            "--model", str(ckpt), "--layers", "2-5", "--input-scale", "1.0", "--batch-size", "8",
            "--lr", "3e-3", "--warmup", "1", "--out", str(out), *extra]


def test_patchify_is_exact():
    x = torch.arange(2 * 4 * 6).reshape(1, 2, 4, 6)          # C=2, H=4, W=6, patch 2 -> 2 x 3 patches of 8 values
    t = images.patchify(x, 2)
    assert t.shape == (1, 6, 8)
    # second patch of the first row: rows 0-1, columns 2-3; channel 0 then channel 1, row by row
    assert t[0, 1].tolist() == [2, 3, 8, 9, 26, 27, 32, 33]
    # first patch of the second row: rows 2-3, columns 0-1
    assert t[0, 3].tolist() == [12, 13, 18, 19, 36, 37, 42, 43]
    cfg = {"pixel_mean": [0.0, 0.0], "pixel_std": [1.0, 1.0], "patch": 2}
    tok = images.to_tokens(torch.zeros(3, 2, 4, 6, dtype=torch.uint8), cfg)
    assert tok.shape == (3, 6, 8 + 6) and torch.equal(tok[0, :, 8:], torch.eye(6))   # one-hot position after the values
    with pytest.raises(UserError):
        images.check_geometry(28, 5)
    assert images.check_geometry(28, 4) == 49 and images.check_geometry(32, 4) == 64


def test_mnist5k_is_5000_digits_500_per_class_split_by_seed():
    x, y = images.load_mnist5k()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.uint8 and int(x.max()) > 200
    assert torch.bincount(y).tolist() == [500] * 10
    d = images.load_dataset("mnist5k", None, None, split_seed=0)
    assert [len(d[k][1]) for k in ("train", "val", "test")] == [3500, 500, 1000]
    assert torch.bincount(d["test"][1]).tolist() == [100] * 10 and torch.bincount(d["val"][1]).tolist() == [50] * 10
    flat = {k: {bytes(img.numpy()) for img in d[k][0]} for k in ("train", "val", "test")}
    assert not (flat["train"] & flat["test"]) and not (flat["val"] & flat["test"])
    again = images.load_dataset("mnist5k", None, None, split_seed=0)
    other = images.load_dataset("mnist5k", None, None, split_seed=1)
    assert torch.equal(again["test"][0], d["test"][0]) and not torch.equal(other["test"][0], d["test"][0])
    assert d["classes"] == 10 and d["channels"] == 1 and d["size"] == 28


def test_folder_of_class_subfolders(image_folder, tmp_path):
    d = images.load_dataset(str(image_folder), None, 8, split_seed=0)
    assert d["classes"] == 3 and d["channels"] == 3 and d["size"] == 8
    assert [len(d[k][1]) for k in ("train", "val", "test")] == [24, 3, 3]
    assert sorted(d["test"][1].tolist()) == [0, 1, 2]
    x, y = d["train"]
    top = x[y == 0][:, :, :4, :4].float().mean()
    assert top > 200 and x[y == 2][:, :, :4, :4].float().mean() < 80      # resized, class by folder name
    (tmp_path / "only").mkdir()
    with pytest.raises(UserError, match="at least 2 class"):
        images.load_dataset(str(tmp_path), None, 8, 0)
    with pytest.raises(UserError, match="not mnist5k"):
        images.load_dataset("no-such-dataset", None, 8, 0)


def test_augment_crops_and_flips_within_the_padding():
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = images.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert any(torch.equal(o[0], x[0, 0].flip(-1)) for o in out) and any(torch.equal(o[0], x[0, 0]) for o in out)
    assert (out == 0).any()                                     # some crops reach into the zero padding


def test_offline_download_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "host_reachable", lambda *a, **k: False)
    with pytest.raises(UserError, match="www.cs.toronto.edu cannot be reached"):
        images.load_dataset("cifar10", str(tmp_path), None, 0)
    # the command line: exit 2, one line, in seconds (the host is made unreachable for the subprocess too)
    code = ("import sys, runs, tasks.images as I; I.host_reachable = lambda *a, **k: False; "
            f"runs.run_main(lambda: I.main(['--dataset', 'fashion-mnist', '--data-dir', {str(tmp_path)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "fashion-mnist" in out.stderr and "cannot be reached" in out.stderr


def test_bridge_trains_exactly_its_layers_then_they_stay_frozen(gemma3_ckpt, image_folder, tmp_path):
    ckpt, original = gemma3_ckpt
    out = tmp_path / "bridge"
    r = run(*tiny_args(ckpt, image_folder, out, "--bridge-steps", "4", "--bridge-layers", "3-4", "--steps", "2", "--eval-every", "2"))
    state = torch.load(out / "last.pt", weights_only=True)
    bridged = state["bridged"]
    assert state["config"]["bridge_layer_ids"] == [3, 4] and json.loads((out / "results.json").read_text())["condition"] == "bridge-partial"
    # only layers 3 and 4 are in the checkpoint, and every one of their weight tensors moved
    assert {k.split(".")[1] for k in bridged} == {"1", "2"}          # body positions of layers 3, 4 in slice 2-5
    ref = {k: v for k, v in original.state_dict().items()}
    for k, v in bridged.items():
        pos, rest = int(k.split(".")[1]), k.split(".", 2)[2]
        before = ref[f"model.layers.{2 + pos}.{rest}"]
        if rest.endswith("weight") and v.numel() > 1:
            assert not torch.equal(v, before), k
    # the model rebuilt from the checkpoint: layers 2 and 5 are the original weights, 3 and 4 the bridged ones
    net, cfg, info, _ = images.load_trained(out / "last.pt", "cpu")
    body = net.body.state_dict()
    for pos in (0, 3):
        for k, v in body.items():
            if k.startswith(f"layers.{pos}."):
                assert torch.equal(v, ref[f"model.layers.{2 + pos}.{k.split('.', 2)[2]}"]), k
    assert all(torch.equal(body[k], v) for k, v in bridged.items())
    assert not any(p.requires_grad for p in net.body.parameters())
    # the frozen run after the bridge: 6 more interface steps leave the bridged layers bit-identical
    interface_before = state["model"]
    run(*tiny_args(ckpt, image_folder, out, "--bridge-steps", "4", "--bridge-layers", "3-4", "--steps", "8", "--eval-every", "2", "--resume"))
    later = torch.load(out / "last.pt", weights_only=True)
    assert later["step"] == 12 and all(torch.equal(later["bridged"][k], v) for k, v in bridged.items())
    assert not torch.equal(later["model"]["w_in.weight"], interface_before["w_in.weight"])
    assert set(later["model"]) == {"w_in.weight", "w_in.bias", "w_out.weight", "w_out.bias"}   # the run's interface only
    # a bridge needs a Gemma slice, and its layers must lie inside it
    bad = run(*tiny_args(ckpt, image_folder, tmp_path / "bad", "--bridge-steps", "2", "--bridge-layers", "1-3"), check=False)
    assert bad.returncode == 2 and "inside --layers" in bad.stderr
    bad = run(*tiny_args(ckpt, image_folder, tmp_path / "bad2", "--bridge-steps", "2", "--substrate", "none"), check=False)
    assert bad.returncode == 2 and "--substrate gemma" in bad.stderr


def test_bridge_interrupted_mid_stage_resumes_to_the_same_weights(gemma3_ckpt, image_folder, tmp_path, monkeypatch):
    ckpt = gemma3_ckpt[0]
    straight, cut, plain = tmp_path / "straight", tmp_path / "cut", tmp_path / "plain"
    flags = ("--bridge-steps", "4", "--steps", "2", "--eval-every", "2")
    run(*tiny_args(ckpt, image_folder, straight, *flags))
    # stop the run inside the bridge: last.pt of step 2 (the bridge checkpoints every --eval-every steps)
    def crash(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(images, "end_bridge", crash)
    with pytest.raises(KeyboardInterrupt):
        images.main(tiny_args(ckpt, image_folder, cut, *flags)[1:])
    monkeypatch.undo()
    runs.release_lock(cut / ".lock")            # what the end of a crashed process does
    mid = torch.load(cut / "last.pt", weights_only=True)
    assert mid["step"] == 2 and mid["bridged"] is None and any(k.startswith("body.layers.") for k in mid["model"])
    with pytest.raises(UserError, match="during the bridge stage"):      # evaluate/ablate refuse it
        images.load_trained(cut / "last.pt", "cpu")
    run(*tiny_args(ckpt, image_folder, cut, *flags, "--resume"))
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(cut / "last.pt", weights_only=True)
    for k in a["bridged"]:
        assert torch.equal(a["bridged"][k], b["bridged"][k]), k
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the frozen stage draws the same batches as an unbridged run of the seed (the bridge has its own stream)
    run(*tiny_args(ckpt, image_folder, plain, "--steps", "2", "--eval-every", "2"))
    p = torch.load(plain / "last.pt", weights_only=True)
    assert torch.equal(p["data_rng"], a["data_rng"])
    ra, rp = (json.loads((d / "results.json").read_text()) for d in (straight, plain))
    assert ra["trainable_params"] == rp["trainable_params"] and ra["frozen_params"] == rp["frozen_params"]
    assert ra["bridge_trained_params"] == sum(v.numel() for v in a["bridged"].values())
    assert ra["final"]["train_step"] == 2 and ra["final"]["step"] == 6


def test_evaluate_refuses_a_changed_test_split(gemma3_ckpt, image_folder, tmp_path):
    import shutil
    data = tmp_path / "imgs"
    shutil.copytree(image_folder, data)
    out = tmp_path / "run"
    run(*tiny_args(gemma3_ckpt[0], data, out, "--steps", "2", "--eval-every", "2"))
    shutil.copy(data / "a_top" / "0.png", data / "a_top" / "extra.png")
    bad = run("evaluate.py", "--ckpt", str(out / "last.pt"), check=False)
    assert bad.returncode == 2 and "not the one this run was scored on" in bad.stderr


def test_bridge_keeps_the_body_dtype(gemma3_ckpt):
    """start/end of the bridge on a bf16 body: trained in fp32, frozen back in bf16, others untouched."""
    body, info = M.build_body(str(gemma3_ckpt[0]), "2-5", dtype=torch.bfloat16, input_scale=1.0)
    net = M.InterfaceModel(body, info["d_model"], 5, 3, 1.0)
    cfg = {"bridge_layer_ids": [4], "bridge_classes": 3, "seed": 0}
    bnet = images.start_bridge(net, cfg, info, "cpu")
    trainable = {n for n, p in bnet.named_parameters() if p.requires_grad}
    assert {n.split(".")[2] for n in trainable if n.startswith("body.")} == {"2"}
    assert all(p.dtype == torch.float32 for p in body.layers[2].parameters())
    bridged = images.end_bridge(net, cfg)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in body.parameters())
    assert {k.split(".")[1] for k in bridged} == {"2"}


def test_evaluate_and_ablate_image_checkpoints(gemma3_ckpt, image_folder, tmp_path):
    out = tmp_path / "run"
    run(*tiny_args(gemma3_ckpt[0], image_folder, out, "--steps", "6", "--eval-every", "3"))
    r = json.loads((out / "results.json").read_text())
    for key in ("config", "trainable_params", "frozen_params", "git_commit", "wall_time_s", "best", "final", "history"):
        assert key in r
    assert r["config"]["num_patches"] == 4 and r["trainable_params"] == (3 * 16 + 4) * 64 + 64 + 64 * 3 + 3
    run("evaluate.py", "--ckpt", str(out / "best.pt"))
    e = json.loads((out / "eval_best.json").read_text())
    assert e["accuracy"]["test"] == r["best"]["test_accuracy"] and e["accuracy"]["val"] == r["best"]["val_accuracy"]
    run("ablate.py", "--ckpt", str(out / "best.pt"), "--out", str(tmp_path / "sweep.json"))
    s = json.loads((tmp_path / "sweep.json").read_text())
    assert s["metric"] == "top1_accuracy" and len(s["heads"]) == 4 * 4 and s["intact"] == e["accuracy"]["test"]
    assert all(0 <= h["mcnemar_p"] <= 1 for h in s["heads"].values())
    agg = run("evaluate.py", "--aggregate", str(tmp_path), "--out", str(tmp_path / "summary.json")).stdout
    assert "images" in agg and "test=" in agg


def test_torchrun_matches_single_process(gemma3_ckpt, image_folder, tmp_path):
    common = ("--steps", "6", "--eval-every", "3", "--augment")
    run(*tiny_args(gemma3_ckpt[0], image_folder, tmp_path / "one", *common))
    run(*tiny_args(gemma3_ckpt[0], image_folder, tmp_path / "two", *common), torchrun=True)
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert b["world_size"] == 2
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert abs(ha["loss"] - hb["loss"]) < 1e-5 and abs(ha["test_accuracy"] - hb["test_accuracy"]) <= 1 / 3


@pytest.mark.embedded
def test_mnist5k_end_to_end_on_the_embedded_model(tmp_path):
    out = tmp_path / "mnist"
    run("train.py", "--task", "images", "--dataset", "mnist5k", "--patch", "7", "--steps", "40", "--eval-every", "40",
        "--batch-size", "32", "--lr", "3e-3", "--warmup", "5", "--out", str(out))
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["num_patches"] == 16 and r["slice"] == "6-11"
    assert r["final"]["test_accuracy"] > 0.3, r["final"]           # chance is 0.1


def test_torchvision_datasets_are_converted_and_split(tmp_path, monkeypatch):
    """The torchvision path without torchvision (its CUDA wheel does not import next to a CPU torch):
    a stand-in module with torchvision's attributes (CIFAR: HWC numpy + list; MNIST: tensor [N,H,W])."""
    import types
    rng = np.random.default_rng(0)

    class CIFAR10:
        def __init__(self, root, train, download):
            n = 200 if train else 50
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]

    class MNIST:
        def __init__(self, root, train, download):
            n = 100 if train else 20
            self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
            self.targets = torch.arange(n) % 10

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(CIFAR10=CIFAR10, MNIST=MNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    monkeypatch.setattr(images, "host_reachable", lambda *a, **k: pytest.fail("already downloaded: no network check"))
    for name in ("cifar10", "mnist"):
        marker = tmp_path / images.ONLINE[name][3]
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    d = images.load_dataset("cifar10", str(tmp_path), None, 0)
    assert d["train"][0].shape == (180, 3, 32, 32) and len(d["val"][1]) == 20 and len(d["test"][1]) == 50
    assert torch.bincount(d["val"][1]).tolist() == [2] * 10 and d["channels"] == 3 and d["size"] == 32
    m = images.load_dataset("mnist", str(tmp_path), 32, 0)          # resized on request
    assert m["train"][0].shape == (90, 1, 32, 32) and m["train"][0].dtype == torch.uint8


def test_statistics_controls_train_evaluate_and_ablate(gemma3_ckpt, image_folder, tmp_path):
    for init in ("shuffled", "matched"):
        out = tmp_path / init
        run(*tiny_args(gemma3_ckpt[0], image_folder, out, "--steps", "2", "--eval-every", "2", "--init", init))
        r = json.loads((out / "results.json").read_text())
        assert r["body"]["init"] == init and r["condition"] == init
        assert r["regime_end"]["input_scale"] == r["input_scale_end"] == 1.0
        run("evaluate.py", "--ckpt", str(out / "best.pt"))
        e = json.loads((out / "eval_best.json").read_text())
        assert e["accuracy"]["test"] == r["best"]["test_accuracy"] and e["regime"] == r["regime_end"]
    run("ablate.py", "--ckpt", str(out / "best.pt"), "--out", str(tmp_path / "sweep.json"))
    assert len(json.loads((tmp_path / "sweep.json").read_text())["heads"]) == 16


def test_bridge_stops_when_it_has_memorised_its_labels_and_reports_what_it_moved(gemma3_ckpt, image_folder, tmp_path):
    ckpt, original = gemma3_ckpt
    out = tmp_path / "memorise"
    # 8 images at a rate well inside Adam's stable range for this tiny stack: the bridge learns their random
    # labels long before its 400-step cap (all 8 by step 65 here). At 3e-3 the accuracy oscillated on one
    # CPU and never reached 0.9 in 400 steps, though it did on another: float rounding differs by CPU.
    run(*tiny_args(ckpt, image_folder, out, "--bridge-steps", "400", "--bridge-images", "8", "--bridge-until-acc", "0.9",
                   "--bridge-lr", "1e-3", "--steps", "2", "--eval-every", "5"))
    r = json.loads((out / "results.json").read_text())
    b = next(h for h in r["history"] if h.get("phase") == "bridge")
    assert b["images"] == 8 and b["reached"] and b["train_accuracy"] >= 0.9 and b["steps_run"] < 400
    assert b["steps_run"] % 5 == 0 and b["curve"][-1]["step"] == b["steps_run"]
    assert all(c["train_accuracy"] < 0.9 for c in b["curve"][:-1])     # it stopped at the first evaluation that got there
    assert r["steps_done"] == 402                                       # the run's own steps count on from the cap
    # every bridged layer moved, and the diagnostics are relative Frobenius changes and two regimes
    assert set(b["frobenius_change"]) == {"2", "3", "4", "5"} and all(v > 0 for v in b["frobenius_change"].values())
    assert b["regime_before"]["stream_change"] != b["regime_after"]["stream_change"]
    bad = run(*tiny_args(ckpt, image_folder, tmp_path / "bad", "--bridge-steps", "4", "--bridge-until-acc", "1.5"), check=False)
    assert bad.returncode == 2 and "--bridge-until-acc" in bad.stderr


def fake_image_run(folder, test_acc, seed, init="pretrained", bridge=None, **cfg_over):
    """results.json + eval_best.json as train.py and evaluate.py write them, with a chosen test accuracy."""
    folder.mkdir(parents=True)
    cfg = {"dataset": "mnist5k", "patch": 7, "layers": "6-11", "substrate": "gemma", "init": init, "input_scale": "auto", "lr": 0.03,
           "steps": 400, "batch_size": 32, "warmup": 50, "seed": seed, "test_fingerprint": "ab", **cfg_over}
    history = [{"step": 400, "phase": "train", "val_accuracy": 0.5, "test_accuracy": test_acc}]
    if bridge:
        cfg.update(bridge_steps=6000, bridge_layer_ids=[6, 7, 8, 9, 10, 11])
        history.insert(0, {"step": 6000, "phase": "bridge", "loss": 0.2, **bridge})
    (folder / "results.json").write_text(json.dumps({"condition": "bridge" if bridge else init, "config": cfg, "history": history}))
    (folder / "eval_best.json").write_text(json.dumps({"accuracy": {"test": test_acc, "val": 0.5}}))


def test_compare_bridges_pairs_each_bridged_run_with_its_unbridged_seed(tmp_path):
    from tasks import images as I
    un = tmp_path / "unbridged"
    for seed, acc in ((0, 0.80), (1, 0.90)):
        fake_image_run(un / f"images__pretrained__{seed}", acc, seed)
    fake_image_run(un / "images__none__0", 0.3, 0, substrate="none")     # the interface alone: another body, same flags
    done = {"train_accuracy": 0.95, "reached": True, "steps_run": 900, "frobenius_change": {"6": 0.1},
            "curve": [{"step": 900, "loss": 0.2, "train_accuracy": 0.95}]}
    fake_image_run(tmp_path / "b0", 0.70, 0, bridge=done)
    fake_image_run(tmp_path / "b1", 0.85, 1, bridge={**done, "reached": False, "train_accuracy": 0.5})
    out = I.compare_bridges([str(tmp_path / "b1"), str(tmp_path / "b0"), "--unbridged", str(un), "--out", str(tmp_path / "c.json")])
    c = out["conditions"]["bridge"]
    assert c["seeds"] == [0, 1] and c["n"] == 2 and c["all_bridges_reached"] is False
    assert [r["difference"] for r in c["runs"]] == pytest.approx([-0.10, -0.05])
    assert c["bridged_minus_unbridged"]["mean"] == pytest.approx(-0.075) and c["unbridged_test"]["mean"] == pytest.approx(0.85)
    assert c["runs"][0]["bridge_curve"] == done["curve"]
    assert c["runs"][0]["frobenius_change"] == {"6": 0.1} and json.loads((tmp_path / "c.json").read_text())["conditions"]["bridge"]["n"] == 2
    # a stage 2 that differs from the unbridged run's (here its learning rate) is refused, as is a missing twin
    fake_image_run(tmp_path / "b_lr", 0.7, 0, bridge=done, lr=0.01)
    with pytest.raises(UserError, match="no unbridged run with its stage-2 settings; .*images__pretrained__0 differs in lr"):
        I.compare_bridges([str(tmp_path / "b_lr"), "--unbridged", str(un)])
    fake_image_run(tmp_path / "b_seed2", 0.7, 2, bridge=done)
    with pytest.raises(UserError, match="none of body pretrained, seed 2"):
        I.compare_bridges([str(tmp_path / "b_seed2"), "--unbridged", str(un)])
    # the twin is found by its settings, not its name, in any of several folders; two candidates are refused
    other = tmp_path / "other"
    fake_image_run(other / "anything", 0.75, 0, lr=0.01)
    out = I.compare_bridges([str(tmp_path / "b_lr"), "--unbridged", str(un), str(other)])
    assert out["conditions"]["bridge"]["runs"][0]["unbridged_run"].endswith("other/anything")
    fake_image_run(other / "copy", 0.75, 0, lr=0.01)
    with pytest.raises(UserError, match="several unbridged runs"):
        I.compare_bridges([str(tmp_path / "b_lr"), "--unbridged", str(un), str(other)])
    with pytest.raises(UserError, match="not a bridged run"):
        I.compare_bridges([str(un / "images__pretrained__0"), "--unbridged", str(un)])
