"""Tiny random Gemma 3 / Gemma 4 checkpoints written to disk, as a user's local directory would be."""
import os
import sys
from pathlib import Path

# Tiny models spend their time in thread start-up: one thread is several times faster for them, and
# subprocesses (the scripts under test) inherit it. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _perturb(model, seed):
    # Default init leaves norms neutral and layer_scalar at 1: randomise them so that a slice which
    # dropped a norm, a scalar or the right RoPE could not still match by accident.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model


def tiny_gemma3_config(**kw):
    from transformers import Gemma3TextConfig
    args = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                                 "full_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    args.update(kw)
    return Gemma3TextConfig(**args)


def tiny_gemma4_text_config(**kw):
    from transformers import Gemma4TextConfig
    args = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
                attention_k_eq_v=True, hidden_size_per_layer_input=0, sliding_window=4,
                layer_types=["sliding_attention"] * 5 + ["full_attention"] + ["sliding_attention", "full_attention"])
    args.update(kw)
    return Gemma4TextConfig(**args)


def save_gemma4_multimodal(path, text_config, max_shard_size="200KB", seed=0):
    """A Gemma-4-31B-shaped checkpoint in miniature: decoder under model.language_model., a vision
    tower beside it, config under text_config, saved in several shards."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration
    torch.manual_seed(seed)
    cfg = Gemma4Config(text_config=text_config.to_dict(),
                       vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16},
                       audio_config=None)
    model = _perturb(Gemma4ForConditionalGeneration(cfg).eval(), seed)
    model.save_pretrained(path, max_shard_size=max_shard_size)
    return model


@pytest.fixture(scope="session")
def gemma3_ckpt(tmp_path_factory):
    from transformers import Gemma3ForCausalLM
    path = tmp_path_factory.mktemp("gemma3_tiny")
    torch.manual_seed(0)
    model = _perturb(Gemma3ForCausalLM(tiny_gemma3_config()).eval(), 0)
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope="session")
def gemma3_wide_ckpt(tmp_path_factory):
    """The tiny Gemma 3 with a 40-token sliding window: token-task lengths are limited to the window,
    and 4 (the exactness tests' window) would leave almost no task length."""
    from transformers import Gemma3ForCausalLM
    path = tmp_path_factory.mktemp("gemma3_tiny_wide")
    torch.manual_seed(0)
    model = _perturb(Gemma3ForCausalLM(tiny_gemma3_config(sliding_window=40)).eval(), 0)
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope="session")
def gemma4_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("gemma4_tiny")
    model = save_gemma4_multimodal(path, tiny_gemma4_text_config())
    return path, model


EMBEDDED = Path.home() / ".cache" / "borrowed-geometry" / "gemma3-270m"


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """3 classes x 10 images of different sizes and modes: a bright square top-left, bottom-right, or none."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("a_top", "b_bottom", "c_none")):
        (root / name).mkdir()
        for i in range(10):
            size = 12 + 4 * (i % 3)
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            h = size // 2
            if c == 0:
                img[:h, :h] = 250
            elif c == 1:
                img[h:, h:] = 250
            Image.fromarray(img if i % 2 else img[..., 0]).save(root / name / f"{i}.png")   # some grayscale
    (root / "c_none" / "notes.txt").write_text("not an image")
    return root
