"""model.py: exact slicing, frozenness, controls, per-head ablation, slice-only loading."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import model as M
import pretrained
from runs import UserError
from conftest import EMBEDDED, save_gemma4_multimodal, tiny_gemma4_text_config

REPO = Path(__file__).resolve().parents[1]


def text_layers(full):
    for name, mod in full.named_modules():
        if (name.endswith("layers") or name.endswith(".h") or name == "h") and "vision" not in name and "audio" not in name:
            return mod
    raise AssertionError("no decoder layers found")


def reference(full, first, last, input_ids):
    """The full model's hidden state entering layer `first` and leaving layer `last`."""
    got = {}
    layers = text_layers(full)
    def grab_in(mod, args, kwargs):
        got["in"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def grab_out(mod, args, out):
        got["out"] = out[0] if isinstance(out, tuple) else out

    h1 = layers[first].register_forward_pre_hook(grab_in, with_kwargs=True)
    h2 = layers[last].register_forward_hook(grab_out)
    with torch.no_grad():
        full(input_ids=input_ids)
    h1.remove(), h2.remove()
    return got["in"], got["out"]


def check_slice(path, full, first, last, T=12, atol=1e-5):
    ckpt = pretrained.Checkpoint(str(path))
    body = M.load_slice(ckpt, first, last)
    ids = torch.randint(0, ckpt.text_config.vocab_size, (2, T), generator=torch.Generator().manual_seed(1))
    h_in, h_out = reference(full, first, last, ids)
    with torch.no_grad():
        got = body(h_in)
    return (got - h_out).abs().max().item(), body, h_in, h_out


# Slices chosen to cross the sliding/full boundary (layer 5 is full attention in both configs) and to
# start after it; sequences (12) are longer than the sliding window (4) so the window matters.
@pytest.mark.parametrize("first,last", [(0, 7), (3, 5), (5, 5), (2, 6), (6, 7)])
def test_slice_matches_full_model_gemma3(gemma3_ckpt, first, last):
    path, full = gemma3_ckpt
    err, *_ = check_slice(path, full, first, last)
    assert err < 1e-5, err


@pytest.mark.parametrize("first,last", [(0, 7), (3, 5), (5, 5), (2, 6), (6, 7)])
def test_slice_matches_full_model_gemma4_multimodal_sharded(gemma4_ckpt, first, last):
    path, full = gemma4_ckpt
    assert len(list(path.glob("*.safetensors"))) > 1  # really sharded
    err, *_ = check_slice(path, full, first, last)
    assert err < 1e-5, err


@pytest.mark.parametrize("which", ["gemma3", "gemma4"])
def test_naive_cut_would_fail(gemma3_ckpt, gemma4_ckpt, which):
    """The deliberately broken variant: the slice's layers at positions 0..n-1 of the decoder loop, as
    a cut ModuleList would put them. The exactness check must catch it."""
    path, full = gemma3_ckpt if which == "gemma3" else gemma4_ckpt
    err, body, h_in, h_out = check_slice(path, full, 3, 5)
    slots = getattr(body.stack, body.layer_list)
    for i in range(len(slots)):     # all sliding: layer 5 loses its full-attention RoPE and mask
        slots[i] = body.layers[i] if i < 3 else M.Skip("sliding_attention")
    try:
        with torch.no_grad():
            bad = (body(h_in) - h_out).abs().max().item()
    except RuntimeError:  # Gemma 4: the global head_dim (32) differs from the sliding RoPE's (16), so it fails loudly
        bad = float("inf")
    assert err < 1e-5 and bad > 1e-3, (err, bad)


def test_multimodal_keys_are_matched_by_pattern(gemma4_ckpt):
    ckpt = pretrained.Checkpoint(str(gemma4_ckpt[0]))
    keys = ckpt.layer_keys(5)
    assert all(k.startswith("model.language_model.layers.5.") for k in keys)
    assert "layer_scalar" in keys.values()  # Gemma 4's per-layer scalar is loaded, not defaulted to 1
    assert not any("vision" in k for k in keys)


@pytest.mark.embedded
def test_slice_matches_full_model_embedded_270m():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    pretrained.embedded_checkpoint()
    full = AutoModelForCausalLM.from_pretrained(EMBEDDED, dtype=torch.float32).eval()
    ckpt = pretrained.Checkpoint()
    body = M.load_slice(ckpt, 6, 11)
    tok = AutoTokenizer.from_pretrained(EMBEDDED)
    ids = tok(["The cat sat on the mat because the mat was warm and the cat was cold."], return_tensors="pt")["input_ids"]
    h_in, h_out = reference(full, 6, 11, ids)
    with torch.no_grad():
        got = body(h_in)
    rel = ((got - h_out).norm() / h_out.norm()).item()
    assert rel < 1e-5, rel
    assert body.layer_types == ["sliding_attention"] * 5 + ["full_attention"]


def tiny_interface(path, substrate="gemma", init="pretrained"):
    body, info = M.build_body(str(path), "2-5", substrate=substrate, init=init, input_scale=1.0)
    return M.InterfaceModel(body, info["d_model"], in_dim=5, out_dim=3), info


def test_substrate_frozen_and_bit_identical_through_training(gemma3_ckpt):
    net, _ = tiny_interface(gemma3_ckpt[0])
    before = {k: v.clone() for k, v in net.body.state_dict().items()}
    assert all(not p.requires_grad for p in net.body.parameters())
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    x = torch.randn(4, 10, 5)
    for _ in range(5):
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = net.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    counts = M.param_counts(net)
    assert counts["trainable_params"] == 5 * 64 + 64 + 64 * 3 + 3
    assert counts["frozen_params"] == sum(p.numel() for p in net.body.parameters())
    assert set(M.trainable_state(net)) == {"w_in.weight", "w_in.bias", "w_out.weight", "w_out.bias"}


def test_all_zero_first_token_keeps_gradients_finite(gemma3_ckpt):
    # an all-zero token at position 0 (a 0 cell in rule90) must not enter the slice as an exact zero
    # vector: it would stay zero through every layer and each RMSNorm would blow its gradient up
    net, _ = tiny_interface(gemma3_ckpt[0])
    x = torch.randn(2, 6, 5)
    x[:, 0] = 0
    assert net.w_in(x[:, :1]).abs().min() > 0
    net(x).pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


def test_random_init_really_changes_every_weight(gemma3_ckpt, gemma4_ckpt):
    for path, _ in (gemma3_ckpt, gemma4_ckpt):
        pre = M.load_slice(pretrained.Checkpoint(str(path)), 2, 5)
        rnd, _ = M.build_body(str(path), "2-5", init="random", input_scale=1.0)
        for (name, p), q in zip(pre.named_parameters(), rnd.parameters()):
            assert not torch.equal(p, q), name
            assert not q.requires_grad
        assert [t for t in rnd.layer_types] == pre.layer_types


def test_controls_counts(gemma3_ckpt):
    path = gemma3_ckpt[0]
    none, _ = tiny_interface(path, "none")
    frozen_gpt2, _ = tiny_interface(path, "gpt2-random")
    scratch, _ = tiny_interface(path, "scratch")
    base = M.param_counts(none)["trainable_params"]
    assert M.param_counts(frozen_gpt2)["trainable_params"] == base
    assert M.param_counts(frozen_gpt2)["frozen_params"] > 0
    assert M.param_counts(scratch)["trainable_params"] == base + M.param_counts(frozen_gpt2)["frozen_params"]
    assert len(scratch.body.blocks) == 4 and scratch.body.d_model == 64


def attn_out_inputs(body, x):
    got = {}
    hooks = [p.register_forward_pre_hook(lambda m, a, i=i: got.__setitem__(i, a[0].clone()))
             for i, p in body.attn_out.items()]
    # registered after the ablation hooks, so these see the ablated input
    with torch.no_grad():
        out = body(x)
    for h in hooks:
        h.remove()
    return got, out


@pytest.mark.parametrize("substrate", ["gemma", "gpt2-random"])
def test_ablating_head_changes_only_that_head(gemma4_ckpt, substrate):
    body, _ = M.build_body(str(gemma4_ckpt[0]), "3-5", substrate=substrate, input_scale=1.0)
    x = torch.randn(2, 9, 64)
    intact, y0 = attn_out_inputs(body, x)
    layer, head = 4, 2
    M.set_ablation(body, {layer: {head}})
    ablated, y1 = attn_out_inputs(body, x)
    hd = body.head_dims[layer]
    cols = torch.zeros(intact[layer].shape[-1], dtype=torch.bool)
    cols[head * hd:(head + 1) * hd] = True
    assert torch.equal(ablated[layer][..., ~cols], intact[layer][..., ~cols])  # other heads untouched
    assert ablated[layer][..., cols].abs().max() == 0 and intact[layer][..., cols].abs().max() > 0
    assert torch.equal(ablated[3], intact[3])  # earlier layer untouched
    assert not torch.allclose(y0, y1)  # a real head matters downstream
    M.set_ablation(body, {})
    assert torch.equal(body(x), y0)  # switched off without reloading


def test_ablating_a_head_with_zero_output_columns_changes_nothing(gemma3_ckpt):
    body, _ = M.build_body(str(gemma3_ckpt[0]), "3-5", input_scale=1.0)
    hd = body.head_dims[4]
    with torch.no_grad():
        body.attn_out[4].weight[:, 1 * hd:2 * hd] = 0  # head L4.1 writes nothing
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        y0 = body(x)
        M.set_ablation(body, {4: {1}})
        y1 = body(x)
        M.set_ablation(body, {4: {2}})
        y2 = body(x)
    assert torch.equal(y0, y1)
    assert not torch.allclose(y0, y2)


def test_attention_capture_shapes_and_rows_sum_to_one(gemma4_ckpt):
    body, _ = M.build_body(str(gemma4_ckpt[0]), "4-5", input_scale=1.0)
    x = torch.randn(2, 7, 64)
    with torch.no_grad():
        y_fast = body(x)
        with M.capture_attention(body) as att:
            y_eager = body(x)
    assert set(att) == {4, 5}
    assert att[5].shape == (2, 4, 7, 7)
    assert torch.allclose(att[5].sum(-1), torch.ones(2, 4, 7), atol=1e-5)
    assert torch.triu(att[5][0, 0], 1).abs().max() == 0  # causal
    assert torch.allclose(y_fast, y_eager, atol=1e-5)
    assert body.config._attn_implementation == "sdpa"  # restored


def test_parse_layers():
    assert M.parse_layers("6-11", 18) == (6, 11)
    assert M.parse_layers("26", 60) == (26, 26)
    for bad in ("11-6", "6-18", "x", "-3", "6-"):
        with pytest.raises(UserError):
            M.parse_layers(bad, 18)


SLICE_MEMORY = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import model as M
import pretrained
def kb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
ckpt = pretrained.Checkpoint(sys.argv[2])
M.decoder_stack(ckpt.text_config)  # import transformers' model code before measuring
base = kb("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
body = M.load_slice(ckpt, 0, int(sys.argv[3]) - 1)
print(json.dumps({"bytes_read": ckpt.bytes_read, "rss_kb": kb("VmHWM:") - base,
                  "params_bytes": sum(p.numel() * 4 for p in body.parameters())}))
"""


def test_slice_only_loading_scales_with_slice(tmp_path):
    """Bytes read and peak memory grow with the number of layers, and the embedding is never read."""
    cfg = tiny_gemma4_text_config(vocab_size=32000, hidden_size=256, intermediate_size=1024, num_hidden_layers=12,
                                  layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 2, sliding_window=8)
    save_gemma4_multimodal(tmp_path, cfg, max_shard_size="5MB")
    shards = list(tmp_path.glob("*.safetensors"))
    total = sum(f.stat().st_size for f in shards)
    res = {}
    for n in (1, 6, 12):
        out = subprocess.run([sys.executable, "-c", SLICE_MEMORY, str(REPO), str(tmp_path), str(n)],
                             capture_output=True, text=True, check=True)
        res[n] = json.loads(out.stdout.strip().splitlines()[-1])
    per_layer = res[12]["bytes_read"] / 12
    embedding_bytes = 32000 * 256 * 4
    assert res[12]["bytes_read"] < total - embedding_bytes  # the embedding was never read
    assert res[1]["bytes_read"] < 1.5 * per_layer  # one layer reads about one layer
    assert res[6]["bytes_read"] < 0.6 * res[12]["bytes_read"]
    assert res[1]["bytes_read"] == res[1]["params_bytes"] + 4  # exactly its own tensors (+ layer_scalar)
    # Peak memory follows the slice, not the checkpoint (slack for allocator noise).
    assert res[1]["rss_kb"] * 1024 < res[1]["bytes_read"] + 30e6
    assert res[12]["rss_kb"] > res[1]["rss_kb"] + 0.5 * (res[12]["bytes_read"] - res[1]["bytes_read"]) / 1024


def test_hub_id_downloads_only_the_slice_shards(gemma4_ckpt, monkeypatch):
    """A Hugging Face id fetches config, index and only the shards that hold the requested layers."""
    import huggingface_hub
    path = gemma4_ckpt[0]
    asked = []

    def fake_download(repo_id, filename, **kw):
        assert repo_id == "someone/tiny-gemma4"
        asked.append(filename)
        return str(path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    ckpt = pretrained.Checkpoint("someone/tiny-gemma4")
    body = M.load_slice(ckpt, 6, 7)
    shards = {f for f in asked if f.endswith(".safetensors")}
    needed = {ckpt.index[k] for i in (6, 7) for k in ckpt.layer_keys(i)}
    assert shards == needed and len(shards) < len(set(ckpt.index.values()))
    assert body.layer_ids == [6, 7]


def test_dry_run_on_the_31b_layout_counts_bytes_and_memory(tmp_path, monkeypatch, capsys):
    """train.py --dry-run on a tiny checkpoint in Gemma 4 31B's key layout behind a mocked hub: no
    shard is downloaded, and the printed bytes and memory match what loading then really takes."""
    import types
    import huggingface_hub
    import train
    from safetensors import safe_open
    cfg = tiny_gemma4_text_config(num_hidden_layers=12, layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 2)
    save_gemma4_multimodal(tmp_path, cfg, max_shard_size="100KB")
    asked = []

    def fake_download(repo_id, filename, **kw):
        asked.append(filename)
        return str(tmp_path / filename)

    def fake_metadata(repo_id):           # what huggingface_hub reads from the shard headers
        files = {}
        for f in tmp_path.glob("*.safetensors"):
            with safe_open(f, "pt") as h:
                files[f.name] = types.SimpleNamespace(tensors={k: types.SimpleNamespace(
                    dtype=h.get_slice(k).get_dtype(), shape=h.get_slice(k).get_shape()) for k in h.keys()})
        return types.SimpleNamespace(files_metadata=files)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", fake_metadata)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo_id, f: None)
    monkeypatch.setattr(pretrained, "CALIBRATION_DIR", tmp_path / "cache")
    monkeypatch.setattr(sys, "argv", ["train.py", "--task", "ar", "--model", "org/tiny-31b-layout", "--layers", "6-11",
                                      "--dtype", "bf16", "--dry-run"])
    train.main()
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not [f for f in asked if f.endswith(".safetensors")]          # nothing big fetched
    ckpt = pretrained.Checkpoint("org/tiny-31b-layout")
    slice_keys = [k for i in range(6, 12) for k in ckpt.layer_keys(i)]
    calib_keys = [k for i in range(6) for k in ckpt.layer_keys(i)] + [k for k in ckpt.index if pretrained.EMBED_KEY.match(k)]
    shards = {ckpt.index[k] for k in slice_keys + calib_keys}
    assert plan["calibration"] and set(plan["shards_to_fetch"]) == shards
    # bytes to fetch: the payload of exactly those shards (their files are that plus a small header)
    sizes = {f: (tmp_path / f).stat().st_size for f in shards}
    assert 0 < sum(sizes.values()) - plan["bytes_to_fetch"] < 20_000 * len(shards)
    body = M.load_slice(ckpt, 6, 11, dtype=torch.bfloat16)
    held = sum(t.numel() * t.element_size() for t in body.layers.state_dict().values())
    assert plan["slice_bytes_in_memory"] == held                           # bf16 slice as loaded
    embed = ckpt.embedding()
    assert plan["calibration_bytes_in_memory"] >= embed.numel() * 2
    assert plan["peak_weight_bytes_in_memory"] == max(held, plan["calibration_bytes_in_memory"])
