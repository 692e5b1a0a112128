"""Adding a task is one module and one line in the task table: a toy task defined here runs through
train.py, evaluate.py and ablate.py without any of them naming it."""
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from runs import UserError
import tasks


def toy_module():
    """Echo the previous token's single bit: the smallest token task."""
    mod = types.ModuleType("tasks.toy")
    mod.NAME, mod.IN_DIM, mod.OUT_DIM, mod.MIN_LEN, mod.MAX_LEN = "toy", 1, 1, 2, 16
    mod.num_tokens = lambda length: length

    def make_batch(batch_size, length, generator):
        bits = torch.randint(0, 2, (batch_size, length, 1), generator=generator).float()
        y = torch.zeros_like(bits)
        y[:, 1:] = bits[:, :-1]
        mask = torch.zeros(batch_size, length, 1, dtype=torch.bool)
        mask[:, 1:] = True
        return bits, y, mask[..., 0]
    mod.make_batch = make_batch

    def floor(length):
        """Blind to the previous token: every guess is a coin flip."""
        return 0.5
    mod.floor = floor          # a token task names its no-learning floor (tasks/floors.py)
    return mod


def run_script(monkeypatch, script, *argv):
    module = __import__(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, argv)])
    module.main()


def test_a_toy_task_added_through_the_table(gemma3_wide_ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(tasks.TABLE, "toy", "tokens")
    monkeypatch.setitem(sys.modules, "tasks.toy", toy_module())
    out = tmp_path / "toy"
    run_script(monkeypatch, "train", "--task", "toy", "--model", gemma3_wide_ckpt[0], "--layers", "2-5",
               "--input-scale", "1.0", "--steps", "4", "--eval-every", "2", "--train-len", "6", "--eval-lengths", "4,8",
               "--select-len", "8", "--eval-samples", "16", "--batch-size", "8", "--out", out)
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["task"] == "toy" and r["steps_done"] == 4 and set(r["final"]["errors"]) == {"4", "8"}
    run_script(monkeypatch, "evaluate", "--ckpt", out / "best.pt", "--samples", "16", "--device", "cpu")
    e = json.loads((out / "eval_best.json").read_text())
    assert e["metric"] == "per_bit_error" and set(e["errors"]) == {"4", "8"} and e["body"]["input_scale"] == 1.0
    run_script(monkeypatch, "ablate", "--ckpt", out / "best.pt", "--samples", "16", "--out", tmp_path / "abl.json")
    a = json.loads((tmp_path / "abl.json").read_text())
    assert a["task"] == "toy" and len(a["heads"]) == 4 * 4 and a["higher_is_better"] is False


def test_every_table_entry_offers_the_protocol():
    for name in tasks.TABLE:
        mod = tasks.module(name)
        for attr in ("build", "load_run", "evaluate_run", "summary_line", "ablation_target", "head_extra",
                     "run_values", "PAIRED", "METRIC", "HIGHER_IS_BETTER"):
            assert hasattr(mod, attr), (name, attr)
        assert mod.__name__ == "tasks.tokens" or (hasattr(mod, "main") and hasattr(mod, "get_parser")), name
    with pytest.raises(UserError, match="unknown --task"):
        tasks.module("nope")


SWEEP_SURFACE = ("sweep_check", "sweep_flags", "held_out_flags", "selection_error", "summary_values",
                 "versus_pretrained", "COMPARISON")


def test_a_sweepable_task_offers_the_whole_sweep_surface_and_sweep_names_no_task():
    sweepable = [n for n in tasks.TABLE if hasattr(tasks.module(n), "sweep_flags")]
    assert {"mqar", "images"} <= set(sweepable) and "ogbench" not in sweepable
    for name in sweepable:
        mod = tasks.module(name)
        assert all(hasattr(mod, a) for a in SWEEP_SURFACE), name
    src = (Path(__file__).resolve().parents[1] / "sweep.py").read_text()
    assert 'task == "' not in src and "task != \"" not in src


def test_sweep_refuses_a_task_without_the_sweep_surface(monkeypatch, tmp_path):
    import sweep
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--task", "ogbench", "--out", str(tmp_path / "s")])
    with pytest.raises(UserError, match="own protocol"):
        sweep.main()
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--task", "mqar", "--out", str(tmp_path / "s"), "--train-len", "6",
                                      "--eval-lengths", "8", "--select-len", "8", "--bridge-steps", "5"])
    with pytest.raises(UserError, match="no bridge stage"):
        sweep.main()


def test_summaries_compare_with_pretrained_as_the_task_says():
    import argparse
    args = argparse.Namespace(task="mqar", eval_lengths="4,8", eval_samples_final=4, dataset="mnist5k")
    tok, img = tasks.module("mqar"), tasks.module("images")
    r = tok.versus_pretrained(args, {"4": [0.2, 0.1], "8": [0.3, 0.3]}, {"4": [0.1, 0.0], "8": [0.1, 0.3]})
    assert r["4"]["values"][0] == pytest.approx(2.0) and r["4"]["value_lower_bound"] == [False, True]
    assert r["4"]["geometric_mean_lower_bound"] and not r["8"]["geometric_mean_lower_bound"]
    # a pretrained seed with no error gets the exact 95% upper bound from the sequences it scored (4),
    # not from its bits, which are not independent draws
    assert r["4"]["values"][1] == pytest.approx(0.1 / (1 - 0.05 ** (1 / 4)))
    assert r["8"]["ratio_of_means"] == pytest.approx(0.6 / 0.4) and r["8"]["range"] == pytest.approx([1.0, 3.0])
    d = img.versus_pretrained(args, {"test": [0.80, 0.85], "val": [0, 0]}, {"test": [0.90, 0.80], "val": [0, 0]})
    assert d["test"]["values"] == pytest.approx([0.10, -0.05])
