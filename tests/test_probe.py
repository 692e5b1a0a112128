"""probe.py: primitives on hand-made patterns, and the real top heads checked independently."""
import pytest
import torch

import pretrained
from probe import head_scores, probe


def test_primitives_on_hand_made_attention():
    ids = torch.tensor([2, 10, 11, 12, 10, 11])  # BOS a b c a b
    T = len(ids)
    att = torch.zeros(3, T, T)
    att[:, 0, 0] = 1
    for t in range(1, T):
        att[0, t, t - 1] = 1  # head 0: previous token
        att[1, t, 0] = 1      # head 1: BOS sink
    att[2, 1:4, 0] = 1        # head 2: BOS, then at t=4 (a) the earlier a, at t=5 (b) half the earlier b
    att[2, 4, 1] = 1
    att[2, 5, 2] = att[2, 5, 5] = 0.5
    s = head_scores(att, ids)
    assert s["prev_token"][1] == 5 and torch.allclose(s["prev_token"][0], torch.tensor([5.0, 1, 1]))
    assert torch.allclose(s["bos_sink"][0], torch.tensor([1.0, 5, 3]))
    # copy targets: t=4 -> s=1, t=5 -> s=2
    assert s["copying"][1] == 2 and torch.allclose(s["copying"][0], torch.tensor([0.0, 0, 1.5]))
    # induction targets: t=4 -> s=2 (after the earlier a), t=5 -> s=3; nobody attends there
    assert s["induction"][1] == 2 and torch.allclose(s["induction"][0], torch.tensor([0.0, 0, 0]))
    att[0, 4] = 0
    att[0, 4, 2] = 1  # now head 0 does induction at t=4
    assert torch.allclose(head_scores(att, ids)["induction"][0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(s["mean_distance"][0][0], torch.tensor(5.0))
    assert torch.allclose(s["entropy"][0][2], torch.log(torch.tensor(2.0)))


def independent_scores(full, ids):
    """Copy and induction score of every head, straight from transformers' output_attentions."""
    with torch.no_grad():
        att = full(input_ids=ids.unsqueeze(0), output_attentions=True).attentions
    T = len(ids)
    scores = {}
    for layer, a in enumerate(att):
        for h in range(a.shape[1]):
            copy_mass, ind_mass, nc, ni = 0.0, 0.0, 0, 0
            for t in range(1, T):
                cs = [s for s in range(t) if ids[s] == ids[t]]
                ins = [s for s in range(1, t) if ids[s - 1] == ids[t]]
                if cs:
                    copy_mass += float(sum(a[0, h, t, s] for s in cs)); nc += 1
                if ins:
                    ind_mass += float(sum(a[0, h, t, s] for s in ins)); ni += 1
            scores[f"L{layer}.{h}"] = (copy_mass / nc, ind_mass / ni)
    return scores


@pytest.mark.embedded
def test_top_copy_and_induction_heads_are_real():
    from transformers import AutoModelForCausalLM
    ckpt = pretrained.Checkpoint()
    sentences = pretrained.PROBE_TEXT.read_text().splitlines()[:30]
    heads, _, _ = probe(ckpt, 0, ckpt.num_layers - 1, sentences)
    top_copy = max(heads, key=lambda h: heads[h]["scores"]["copying"])
    top_ind = max(heads, key=lambda h: heads[h]["scores"]["induction"])
    full = AutoModelForCausalLM.from_pretrained(ckpt.dir, dtype=torch.float32, attn_implementation="eager").eval()
    # Other text: random tokens repeated twice (every second-half token has a copy and an induction target)
    g = torch.Generator().manual_seed(0)
    rand = torch.randint(1000, 20000, (40,), generator=g)
    ids = torch.cat([torch.tensor([2]), rand, rand])
    indep = independent_scores(full, ids)
    by_copy = sorted(indep, key=lambda h: -indep[h][0])
    by_ind = sorted(indep, key=lambda h: -indep[h][1])
    mean_copy = sum(v[0] for v in indep.values()) / len(indep)
    mean_ind = sum(v[1] for v in indep.values()) / len(indep)
    assert by_copy.index(top_copy) < 8 and indep[top_copy][0] > 2 * mean_copy, (top_copy, by_copy[:8])
    assert by_ind.index(top_ind) < 8 and indep[top_ind][1] > 2 * mean_ind, (top_ind, by_ind[:8])


@pytest.mark.parametrize("args,message", [
    (["--text", "EMPTY"], "no sentences"),
    (["--text", "/no/such/file.txt"], "no such file"),
    (["--layers", "3-1"], "reversed"),
])
def test_probe_bad_input_one_line_exit_2(gemma3_ckpt, tmp_path, args, message):
    import subprocess
    import sys
    from pathlib import Path
    (tmp_path / "empty.txt").write_text("\n  \n")
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in args]
    out = subprocess.run([sys.executable, "probe.py", "--model", str(gemma3_ckpt[0]), "--out", str(tmp_path / "p.json"), *args],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "p.json").exists()


@pytest.mark.embedded
def test_probe_a_control_is_seeded_and_changes_the_probed_heads():
    # (that layers below the probed ones stay pretrained: tests/test_controls.py)
    ckpt = pretrained.Checkpoint()
    sentences = pretrained.PROBE_TEXT.read_text().splitlines()[:4]
    pre, _, _ = probe(ckpt, 6, 7, sentences)
    shuf, _, _ = probe(ckpt, 6, 7, sentences, init="shuffled", seed=0)
    again, _, _ = probe(ckpt, 6, 7, sentences, init="shuffled", seed=0)
    assert shuf == again                                                   # seeded
    assert all(pre[h]["scores"]["copying"] != shuf[h]["scores"]["copying"] for h in pre)
