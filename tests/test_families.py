"""Any decoder-only model as the frozen body: for tiny random checkpoints of each admitted family
(written with save_pretrained here), the slice equals the full model between its layers, reads only
its own tensors, and the controls and head ablation work on it."""
import pytest
import torch

import model as M
import pretrained
from conftest import _perturb
from test_model import attn_out_inputs, reference

SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4)


def family_configs():
    import transformers as tf
    return {
        "llama": tf.LlamaConfig(**SMALL, num_key_value_heads=2),
        "qwen2": tf.Qwen2Config(**SMALL, num_key_value_heads=2),
        "qwen3": tf.Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=16),
        # a 4-token window over 12-token sequences: the window changes the result
        "mistral": tf.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=4),
        "phi3": tf.Phi3Config(**SMALL, num_key_value_heads=2, pad_token_id=0),
        "olmo2": tf.Olmo2Config(**SMALL, num_key_value_heads=2),
        "gpt2": tf.GPT2Config(vocab_size=128, n_embd=64, n_layer=4, n_head=4, n_positions=64),
    }


FAMILIES = list(family_configs())


@pytest.fixture(scope="module", params=FAMILIES)
def family_ckpt(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM
    cfg = family_configs()[request.param]
    path = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    model = _perturb(AutoModelForCausalLM.from_config(cfg).eval(), 0)
    model.save_pretrained(path)
    return request.param, path, model


@pytest.mark.parametrize("first,last", [(0, 3), (1, 2), (2, 3), (3, 3)])
def test_slice_equals_the_full_model_between_its_layers(family_ckpt, first, last):
    name, path, full = family_ckpt
    ckpt = pretrained.Checkpoint(str(path))
    body = M.load_slice(ckpt, first, last)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    h_in, h_out = reference(full, first, last, ids)
    with torch.no_grad():
        err = (body(h_in) - h_out).abs().max().item()
    assert err < 1e-5, (name, err)


def test_slice_reads_only_its_own_tensors(family_ckpt):
    name, path, full = family_ckpt
    ckpt = pretrained.Checkpoint(str(path))
    M.load_slice(ckpt, 2, 2)
    own = sum(t.numel() * t.element_size() for k, t in full.state_dict().items()
              if pretrained.LAYER_KEY.match(k) and int(pretrained.LAYER_KEY.match(k).group(1)) == 2)
    assert ckpt.bytes_read == own > 0, name


@pytest.mark.parametrize("init", ["random", "shuffled", "matched"])
def test_controls_change_every_slice_tensor(family_ckpt, init):
    name, path, _ = family_ckpt
    ckpt = pretrained.Checkpoint(str(path))
    body = M.load_slice(ckpt, 1, 2)
    before = {n: t.clone() for n, t in M.slice_tensors(body.layers)}
    M.apply_init(body, init, seed=0)
    after = dict(M.slice_tensors(body.layers))
    for n, t in before.items():
        if init == "matched" and t.numel() < 2:
            continue
        assert not torch.equal(t, after[n]), (name, init, n)
    assert all(not p.requires_grad for p in body.parameters())
    with torch.no_grad():
        assert torch.isfinite(body(torch.randn(2, 6, 64))).all()


def test_random_init_leaves_norms_neutral(family_ckpt):
    name, path, _ = family_ckpt
    body = M.load_slice(pretrained.Checkpoint(str(path)), 1, 1)
    M.apply_init(body, "random", seed=0)
    for mod_name, mod in body.layers.named_modules():
        if "norm" in type(mod).__name__.lower() and getattr(mod, "weight", None) is not None:
            assert torch.all(mod.weight == 1.0), (name, mod_name)
            if getattr(mod, "bias", None) is not None:
                assert torch.all(mod.bias == 0.0), (name, mod_name)


def test_ablating_a_head_changes_only_that_head(family_ckpt):
    name, path, _ = family_ckpt
    body = M.load_slice(pretrained.Checkpoint(str(path)), 1, 2)
    x = torch.randn(2, 9, 64)
    intact, y0 = attn_out_inputs(body, x)
    M.set_ablation(body, {2: {1}})
    ablated, y1 = attn_out_inputs(body, x)
    hd = body.head_dims[2]
    cols = torch.zeros(intact[2].shape[-1], dtype=torch.bool)
    cols[hd:2 * hd] = True
    assert torch.equal(ablated[2][..., ~cols], intact[2][..., ~cols]) and ablated[2][..., cols].abs().max() == 0, name
    assert torch.equal(ablated[1], intact[1]) and not torch.allclose(y0, y1), name


def char_tokenizer(path):
    """A character-level tokenizer that starts every text with <s>: what calibration and probing need,
    made offline, small enough for a 128-token vocabulary."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    chars = [chr(c) for c in range(32, 127)]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>").save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM
    path = tmp_path_factory.mktemp("llama_e2e")
    torch.manual_seed(0)
    _perturb(AutoModelForCausalLM.from_config(family_configs()["llama"]).eval(), 0).save_pretrained(path)
    char_tokenizer(path)
    return path


def test_train_evaluate_ablate_probe_end_to_end_on_llama(tiny_llama, tmp_path):
    import json
    from test_task_table import run_script
    out = tmp_path / "run"
    mp = pytest.MonkeyPatch()
    try:
        run_script(mp, "train", "--task", "mqar", "--model", tiny_llama, "--layers", "1-2", "--steps", "4",
                   "--eval-every", "2", "--train-len", "6", "--eval-lengths", "4,8", "--select-len", "8",
                   "--eval-samples", "16", "--batch-size", "8", "--out", out)
        r = json.loads((out / "results.json").read_text())
        assert r["body"]["model_type"] == "llama" and r["steps_done"] == 4 and r["frozen_params"] > 0
        assert r["body"]["calibration"]["typical_rms"] > 0            # the input scale came from Llama's own text stream
        run_script(mp, "evaluate", "--ckpt", out / "best.pt", "--samples", "16", "--device", "cpu")
        assert json.loads((out / "eval_best.json").read_text())["body"]["input_scale"] == r["body"]["input_scale"]
        run_script(mp, "ablate", "--ckpt", out / "best.pt", "--samples", "16", "--out", tmp_path / "abl.json")
        assert len(json.loads((tmp_path / "abl.json").read_text())["heads"]) == 2 * 4
        run_script(mp, "probe", "--model", tiny_llama, "--layers", "1-2", "--out", tmp_path / "probe.json")
        heads = json.loads((tmp_path / "probe.json").read_text())["heads"]
        assert len(heads) == 2 * 4 and all(0 <= h["scores"]["bos_sink"] <= 1 for h in heads.values())
    finally:
        mp.undo()


def test_dry_run_plan_counts_the_slice(family_ckpt):
    name, path, full = family_ckpt
    ckpt = pretrained.Checkpoint(str(path))
    plan = pretrained.plan_load(ckpt, 1, 2, torch.float32, calibrate=False)
    own = sum(t.numel() for k, t in full.state_dict().items()
              if pretrained.LAYER_KEY.match(k) and int(pretrained.LAYER_KEY.match(k).group(1)) in (1, 2))
    assert plan["slice_params"] == own, name


def test_sentences_start_with_bos_or_end_of_text(tmp_path):
    from transformers import AutoTokenizer
    char_tokenizer(tmp_path / "with_bos")
    tok = AutoTokenizer.from_pretrained(tmp_path / "with_bos")
    ids = tok("ab", return_tensors="pt")["input_ids"][0]
    assert ids[0] == tok.bos_token_id and torch.equal(pretrained.with_start_token(tok, ids, "x"), ids)   # added once
    tok.bos_token = None                     # a tokenizer without BOS (Qwen, GPT-2): end-of-text goes first
    plain = torch.tensor([5, 6])
    assert pretrained.with_start_token(tok, plain, "x").tolist() == [tok.eos_token_id, 5, 6]
    tok.eos_token = None
    with pytest.raises(pretrained.UserError, match="neither a BOS"):
        pretrained.with_start_token(tok, plain, "x")


@pytest.mark.parametrize("family_ckpt", ["gpt2"], indirect=True)     # the one family here with a position table
def test_gpt2_stream_in_adds_the_position_table(family_ckpt):
    name, path, full = family_ckpt
    ids = torch.tensor([3, 7, 9])
    got = pretrained.Checkpoint(str(path)).stream_in(ids)
    want = full.transformer.wte.weight[ids] + full.transformer.wpe.weight[:3]
    assert torch.allclose(got, want.detach())
