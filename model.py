"""
The frozen body (a Gemma slice or a control) and the thin trainable interface around it.

    x --Linear--> residual stream --[frozen Gemma layers a..b]--> RMSNorm --Linear--> y

Contents, top to bottom:
  1. the flags that choose a body (shared by every training parser)
  2. FrozenSlice: layers a..b run exactly as inside the full model
  3. controls: random re-initialisation, shuffled, matched, a GPT-2-style body (frozen random or
     trainable), none; the regime diagnostic
  4. per-head ablation and attention capture
  5. the linear interface (InterfaceModel) and build_body()
Where the weights come from and the input-scale calibration: pretrained.py.
"""
import math
import re
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

import pretrained
from runs import UserError, dtype_name, resolve_dtype


# ----------------------------------------------------------------------------- 1. flags

def parse_layers(spec, num_layers):
    """'6-11' -> (6, 11); '26' -> (26, 26). 0-based, inclusive."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(spec))
    if not m:
        raise UserError(f"--layers must look like 'a-b' or 'a' (0-based, inclusive), got {spec!r}")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if a > b:
        raise UserError(f"--layers {spec}: reversed range (first layer {a} > last layer {b})")
    if b >= num_layers:
        raise UserError(f"--layers {spec}: this model has layers 0-{num_layers - 1}")
    return a, b


def add_body_args(p, layers="6-11", substrates=None, learn=True):
    """The flags that say which body a run uses, the same in every training parser: --model,
    --layers, --substrate, --init, --input-scale, --device, --dtype."""
    substrates = substrates or SUBSTRATES
    p.add_argument("--model", default=pretrained.DEFAULT_MODEL,
                   help="'gemma3-270m' (embedded, default), a local checkpoint directory, or a Hugging Face id")
    p.add_argument("--layers", default=layers, help=f"slice of decoder layers, 0-based inclusive: 'a-b' or 'a' (default {layers})")
    p.add_argument("--substrate", default="gemma", choices=substrates,
                   help="gemma: the frozen slice; gpt2-random: a frozen random GPT-2-style stack of the same shape; "
                        "scratch: that stack fully trainable; none: the interface alone"
                        + ("; mlp: the task's plain MLP baseline" if "mlp" in substrates else "")
                        + ("; dt: the reference Decision Transformer (3 layers, width 128, 1 head), trained" if "dt" in substrates else "")
                        + " (default gemma)")
    p.add_argument("--init", default="pretrained", choices=INITS, help=INIT_HELP)
    p.add_argument("--input-scale", default="auto",
                   help="multiplier on the input map's output. 'auto': Gemma: the RMS of an ordinary dimension of the "
                        "residual stream entering the slice (English text; BOS and the few massive outlier dimensions "
                        "left out); GPT-2 controls: 1. "
                        + ("'learn': the same start times a trainable scalar (1 more trainable parameter). " if learn else "")
                        + "A number: that value (default auto)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                   help="precision the frozen body holds and computes in: auto = bf16 on CUDA, fp32 on CPU (on some "
                        "CPUs bf16 is faster: bench.py --compare-dtypes). The trainable interface keeps fp32 weights; "
                        "losses and metrics are fp32 (default auto)")
    p.add_argument("--compile", action="store_true",
                   help="run the body through torch.compile (inductor; needs a C compiler): faster steps after a "
                        "compilation of a minute or more at the start (a few graphs per run, not one per length); "
                        "recorded in the config, --resume keeps it (docs/scripts.md: settings for long CPU runs)")


def layer_types(cfg):
    """Each layer's attention type as the config states it (sliding/full/chunked); configs without
    the list: sliding where a window is set and used, else full."""
    if getattr(cfg, "layer_types", None):
        return list(cfg.layer_types)
    sliding = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True)
    return ["sliding_attention" if sliding else "full_attention"] * cfg.num_hidden_layers


def attention_window(cfg):
    """The sliding window if any layer uses one, else None (no length limit from attention)."""
    return getattr(cfg, "sliding_window", None) if "sliding_attention" in layer_types(cfg) else None


class Skip(nn.Module):
    """Stands in for a decoder layer outside the slice: passes the stream through unchanged."""

    def __init__(self, attention_type):
        super().__init__()
        self.attention_type = attention_type     # some decoder loops pick the layer's mask by it

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class ZeroPositions(nn.Module):
    """Stands in for a learned position table (GPT-2's wpe): positions were added below the slice,
    in the stream the slice receives, so the stack must not add them again."""

    def __init__(self, d_model):
        super().__init__()
        self.d_model, self.dtype = d_model, torch.float32   # FrozenSlice sets the stream's dtype

    def forward(self, position_ids):
        return torch.zeros(*position_ids.shape, self.d_model, device=position_ids.device, dtype=self.dtype)


FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
POSITION_TABLES = ("wpe", "embed_positions")
TOKEN_TABLES = ("embed_tokens", "wte")


def decoder_stack(text_config):
    """The model's own decoder stack built on the meta device (no memory), and the name of its layer list."""
    from transformers import AutoModel
    try:
        with torch.device("meta"):
            stack = AutoModel.from_config(text_config)
    except Exception as e:
        raise UserError(f"model_type {text_config.model_type!r}: transformers cannot build its decoder "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
    lists = [n for n, m in stack.named_children() if isinstance(m, nn.ModuleList) and len(m) == text_config.num_hidden_layers]
    if len(lists) != 1:
        raise UserError(f"model_type {text_config.model_type!r}: no single list of {text_config.num_hidden_layers} decoder layers")
    return stack, lists[0]


# ----------------------------------------------------------------------------- 2. the exact slice

class FrozenSlice(nn.Module):
    """Decoder layers first..last of a decoder-only model, run exactly as in the full model.

    The slice runs inside the model's own decoder stack (transformers' class for the checkpoint's
    architecture): its forward picks each layer's mask and rotary embedding by the layer's own index
    and type, as in the full model, and every layer outside the slice is a pass-through (Skip). The
    token and position tables are gone (the interface gives the stream; positions a model adds before
    its first layer are already in that stream), and so is the final norm. Only the slice's layers
    and the rotary tables hold tensors. No KV cache: the layers keep their original layer_idx."""

    def __init__(self, text_config, first, last, layers, stack=None, layer_list=None):
        super().__init__()
        self.config = text_config
        self.first, self.last = first, last
        self.layers = nn.ModuleList(layers)
        self.layer_ids = list(range(first, last + 1))
        self.layer_types = [layer_types(text_config)[i] for i in self.layer_ids]
        self.model_type = text_config.model_type
        self.is_gemma4 = self.model_type == "gemma4_text"
        self.d_model = text_config.hidden_size
        if stack is None:
            stack, layer_list = decoder_stack(text_config)
        all_types = layer_types(text_config)
        self.layer_list = layer_list
        slots = getattr(stack, layer_list)
        for i in range(text_config.num_hidden_layers):
            slots[i] = self.layers[i - first] if first <= i <= last else Skip(all_types[i])
        rotary = {}
        for name, mod in list(stack.named_children()):
            if name == layer_list:
                continue
            if "rotary" in type(mod).__name__.lower():
                rotary[name] = type(mod)(config=text_config)     # its tables are computed, not stored
                setattr(stack, name, rotary[name])
            elif name in FINAL_NORMS:
                setattr(stack, name, nn.Identity())
            elif name in POSITION_TABLES:
                self.zero_positions = ZeroPositions(self.d_model)
                setattr(stack, name, self.zero_positions)
            elif name in TOKEN_TABLES:
                setattr(stack, name, None)
        left = sorted({n.split(".")[0] for n, t in list(stack.named_parameters()) + list(stack.named_buffers())
                       if t.is_meta})
        if left:
            raise UserError(f"model_type {self.model_type!r}: its decoder stack needs {', '.join(left)} beside the layers "
                            "(state shared across layers or computed from token ids); slices of it are not supported")
        self.rotary = nn.ModuleDict(rotary)
        object.__setattr__(self, "stack", stack)      # not a submodule: its tensors are the slice's and rotary's
        stack.eval()
        attn = [attention_of(layer) for layer in layers]
        self.attn_out = {i: out_projection(a) for i, a in zip(self.layer_ids, attn)}   # heads are separate at its input
        self.head_dims = {i: a.head_dim for i, a in zip(self.layer_ids, attn)}
        self.num_heads = text_config.num_attention_heads
        install_head_hooks(self)

    def train(self, mode=True):
        super().train(False)       # frozen: never dropout, whatever the trainable net around it does
        return self

    def forward(self, h, position_ids=None):
        B, T, _ = h.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=h.device).unsqueeze(0).expand(B, -1)
        if getattr(self, "zero_positions", None) is not None:
            self.zero_positions.dtype = h.dtype     # zeros of another dtype would promote the stream
        return self.stack(inputs_embeds=h, position_ids=position_ids, use_cache=False).last_hidden_state

    @property
    def rotary_emb(self):
        return next(iter(self.rotary.values()))

    def forward_cached(self, h, position_ids, cache):
        """The slice on new tokens h (all rows at the same positions, continuing the cache's), their
        keys and values appended to `cache` (a WindowCache). Each new token sees every cached token and
        the new ones up to itself. Equal to the uncached pass over a window only for a ONE-layer slice:
        there a cached token's key depends on that token alone; deeper, it depends on what the token
        saw when it was computed, which a sliding window would have cut."""
        if len(self.layers) != 1 or not self.model_type.startswith("gemma"):
            raise ValueError("forward_cached is exact for a one-layer slice only, and written for Gemma's layers")
        B, T, _ = h.shape
        past = cache.length()
        q, k = past + torch.arange(T, device=h.device)[:, None], torch.arange(past + T, device=h.device)[None, :]
        t = self.layer_types[0]
        allowed = (k <= q) & ((q - k < self.config.sliding_window) if t == "sliding_attention" else True)
        mask = allowed[None, None].expand(B, 1, T, past + T)
        rope = self.rotary_emb(h, position_ids, t)
        extra = {"shared_kv_states": {}} if self.is_gemma4 else {}
        if self.is_gemma4:
            return self.layers[0](h, None, position_embeddings=rope, attention_mask=mask, position_ids=position_ids,
                                  past_key_values=cache, **extra)
        return self.layers[0](h, position_embeddings=rope, attention_mask=mask, position_ids=position_ids, past_key_values=cache)


class WindowCache:
    """Keys and values a frozen slice computed for earlier tokens, per layer, batch-first. The caller
    trims it to the window the model should see (keep_last) and follows the rows that are still
    running (select). Duck-types the one method transformers' attention calls on a cache."""

    def __init__(self):
        self.kv = {}

    def update(self, key, value, layer_idx, *args, **kwargs):
        if layer_idx in self.kv:
            k, v = self.kv[layer_idx]
            key, value = torch.cat([k, key], -2), torch.cat([v, value], -2)
        self.kv[layer_idx] = (key, value)
        return key, value

    def length(self):
        return next(iter(self.kv.values()))[0].shape[-2] if self.kv else 0

    def keep_last(self, n):
        self.kv = {i: (k[..., max(k.shape[-2] - n, 0):, :], v[..., max(v.shape[-2] - n, 0):, :]) for i, (k, v) in self.kv.items()}

    def select(self, rows):
        self.kv = {i: (k[rows], v[rows]) for i, (k, v) in self.kv.items()}


def attention_of(layer):
    """A decoder layer's self-attention module (self_attn in most families, attn in GPT-2)."""
    for name in ("self_attn", "attn", "attention"):
        if hasattr(layer, name):
            return getattr(layer, name)
    raise UserError(f"{type(layer).__name__}: no self-attention module found")


def out_projection(attn):
    """The attention's output projection, where heads are still separate at the input."""
    for name in ("o_proj", "c_proj", "dense", "out_proj"):
        if hasattr(attn, name):
            return getattr(attn, name)
    raise UserError(f"{type(attn).__name__}: no output projection found")


def load_slice(ckpt, first, last, device="cpu", dtype=torch.float32):
    """Build layers first..last and fill them from the checkpoint, reading nothing else."""
    cfg = ckpt.text_config
    if getattr(cfg, "hidden_size_per_layer_input", 0):
        raise UserError(f"{ckpt.name}: per-layer token inputs (Gemma 4 E2B/E4B) depend on token ids; "
                        "slices of such models are not supported")
    if any(m == "reuse" for m in getattr(cfg, "kv_sharing_modes", [])[first:last + 1]):
        raise UserError(f"{ckpt.name}: layers {first}-{last} reuse another layer's keys/values; not supported")
    cfg._attn_implementation = "sdpa"
    stack, layer_list = decoder_stack(cfg)      # on meta: the layers come from the model's own classes
    layers = []
    for i in range(first, last + 1):
        # .to(dtype) on meta: to_empty and load_state_dict keep the dtype a module was built in,
        # so a slice built in fp32 would stay fp32 with bf16-rounded values
        layer = getattr(stack, layer_list)[i].to(dtype)
        names = ckpt.layer_keys(i)
        tensors = ckpt.read(list(names))
        state = {names[k]: v.to(dtype) for k, v in tensors.items()}
        layer.to_empty(device=device)
        layer.load_state_dict(state, strict=True)  # strict: a missed tensor would stay uninitialised
        layers.append(layer)
    body = FrozenSlice(cfg, first, last, layers, stack, layer_list).to(device)
    body.compute_dtype = dtype
    freeze(body)
    check_dtype(body, dtype)
    return body


def check_dtype(body, dtype):
    """Every frozen weight really is in `dtype` (a cast that only rounds values would pass silently)."""
    wrong = sorted({str(p.dtype) for p in body.parameters() if not p.requires_grad and p.dtype != dtype})
    if wrong:
        raise RuntimeError(f"frozen body asked for {dtype} holds {', '.join(wrong)} weights")


def run_body(body, h):
    """The body on fp32 activations h, computed in its compute_dtype; fp32 out.

    Frozen bodies hold their weights in that dtype and get h cast to it. The trainable scratch
    body keeps fp32 master weights (Adam on bf16 weights loses small updates) and computes under
    autocast, so every condition runs its matmuls in the same precision."""
    dtype = body.compute_dtype
    # a permuted input (an einsum's output) keeps its strides through every elementwise op, and
    # matmul then runs each linear as a bmm over a materialised copy of the weight per sample:
    # 6x slower per IQL step in bf16 on CPU (measured); one copy of h here avoids it
    h = h.contiguous()
    if dtype == torch.float32:
        return body(h)
    if any(p.requires_grad for p in body.parameters()):
        with torch.autocast(h.device.type, dtype=dtype):
            return body(h).float()
    return body(h.to(dtype)).float()


COMPILE_OVERRIDE = None   # None: each run's own --compile; evaluate.py --compile/--no-compile and ablate.py set it


def compile_body(body, cfg):
    """--compile: the body compiled in place (module.compile), so its weights, state-dict keys and
    head hooks stay those of the eager module. dynamic=None: the first call compiles for its shapes;
    the first call with another length or batch compiles once more with those sizes symbolic, and
    no later size recompiles; no_grad (evaluation) is a graph of its own. A token run makes 3."""
    on = cfg.get("compile", False) if COMPILE_OVERRIDE is None else COMPILE_OVERRIDE
    if body is not None and on:
        body.compile(dynamic=None)
    return body


def freeze(module):
    for p in module.parameters():
        p.requires_grad_(False)
    return module


# ----------------------------------------------------------------------------- 3. controls

@torch.no_grad()
def reinit_slice(body, seed=0, layers=None):
    """Re-initialise every weight of the slice in place (same shapes, still frozen).

    Written out rather than via transformers' _init_weights, which skips modules it already
    marked as initialised and would leave the pretrained weights in place."""
    g = torch.Generator().manual_seed(seed)
    std = body.config.initializer_range
    # Gemma 3 norms scale by (1 + w), every other family's (Gemma 4 too) by w: the neutral value differs.
    norm_value = 0.0 if body.model_type == "gemma3_text" else 1.0
    layers = body.layers if layers is None else layers
    norms = {n for n, m in layers.named_modules() if "norm" in type(m).__name__.lower()}
    for name, p in layers.named_parameters():
        module, _, kind = name.rpartition(".")
        if p.ndim >= 2:
            p.copy_(torch.randn(p.shape, generator=g) * std)
        elif module in norms and kind == "weight":
            p.fill_(norm_value)
        else:  # biases, the norms' included
            p.zero_()
    for name, b in layers.named_buffers():
        if name.endswith("layer_scalar"):
            b.fill_(1.0)
    return body


def slice_tensors(layers):
    """Every tensor of the slice's layers that holds learned values: parameters (matrices, norm
    vectors, biases) and Gemma 4's per-layer scalar buffer. Rotary tables are computed, not learned."""
    out = [(n, p) for n, p in layers.named_parameters()]
    return out + [(n, b) for n, b in layers.named_buffers() if n.endswith("layer_scalar")]


@torch.no_grad()
def shuffle_slice(body, seed=0, layers=None):
    """Control that keeps every tensor's values and removes its structure: the entries of each
    tensor (matrix, norm vector, scalar) are permuted at random within that tensor.

    The value distribution of every tensor, so the scale each norm and branch runs at, is the
    pretrained one; which entry sits where (the learned structure) is gone. `layers`: restrict to
    these modules (probe.py keeps the layers below the probed ones intact)."""
    g = torch.Generator().manual_seed(seed)
    for _, t in slice_tensors(body.layers if layers is None else layers):
        perm = torch.randperm(t.numel(), generator=g).to(t.device)
        t.copy_(t.flatten()[perm].view_as(t))
    return body


@torch.no_grad()
def match_slice(body, seed=0, layers=None):
    """Control that keeps every tensor's first two moments: each tensor redrawn i.i.d. Gaussian with
    its own pretrained mean and standard deviation (norm vectors included; a one-element tensor keeps
    its value). Unlike `shuffled`, heavy tails and outlier entries are not kept."""
    g = torch.Generator().manual_seed(seed)
    for _, t in slice_tensors(body.layers if layers is None else layers):
        if t.numel() < 2:
            continue
        v = t.double()
        t.copy_((torch.randn(t.shape, generator=g, dtype=torch.float64) * v.std().cpu() + v.mean().cpu()).to(t.dtype))
    return body


def apply_init(body, init, seed=0, layers=None):
    """Turn a loaded pretrained slice into the control `init` names (in place, still frozen)."""
    if init == "random":
        return reinit_slice(body, seed, layers)
    if init == "shuffled":
        return shuffle_slice(body, seed, layers)
    if init == "matched":
        return match_slice(body, seed, layers)
    return body


REGIME_BATCH, REGIME_LEN = 8, 24


@torch.no_grad()
def regime(body, scale, seed=0):
    """Which regime a body runs in at input scale `scale`, measured on random tokens.

    The tokens are random unit directions times `scale` (RMS = scale per token), batch 8 x 24, the
    same tokens for every body (fixed seed). Two numbers:
      stream_change  |body(x) - x| / |x|: ~0 means the body is close to the identity at this scale
      token0_effect  replace token 0 by another random token: the change this makes to the outputs of
                     positions 1.., over the size of those outputs; ~0 means the positions barely mix
      token0_share_of_update  the same change over the body's own update at those positions,
                     |body(x) - x|: how much of what the body adds depends on another position
    A control can differ from the pretrained body through its operating point alone; these numbers
    put that regime next to every result."""
    if body is None:
        return None
    g = torch.Generator().manual_seed(seed)
    d = body.d_model
    x = torch.randn(REGIME_BATCH, REGIME_LEN + 1, d, generator=g)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt() * float(scale)
    x0, spare = x[:, :REGIME_LEN], x[:, REGIME_LEN]
    x1 = x0.clone()
    x1[:, 0] = spare
    dev = next(body.parameters()).device
    was_training = body.training
    body.eval()
    y0 = run_body(body, x0.to(dev)).float().cpu()
    y1 = run_body(body, x1.to(dev)).float().cpu()
    body.train(was_training)
    moved, update = (y1 - y0)[:, 1:].norm(), (y0 - x0)[:, 1:].norm()
    return {"input_scale": float(scale), "stream_change": float((y0 - x0).norm() / x0.norm()),
            "token0_effect": float(moved / y0[:, 1:].norm()),
            "token0_share_of_update": float(moved / update) if update > 0 else float("nan"),
            "tokens": f"{REGIME_BATCH}x{REGIME_LEN} random unit directions at RMS input_scale, seed {seed}"}


def end_regime(net):
    """The input scale a run ends at (a learnt gain moves it) and the body's regime at that scale."""
    scale = net.input_scale()
    return {"input_scale_end": scale, "regime_end": regime(net.body, scale)}


class Block(nn.Module):
    """Pre-LayerNorm GPT-2-style block with the standard 1/sqrt(d_k) attention scaling."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.drop = nn.Dropout(dropout)     # GPT-2's residual dropout (0: the frozen and scratch controls)
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.o_proj = nn.Linear(d_model, d_model)
        self.fc, self.proj = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.attn_weights = None  # filled when attention capture is on

    def forward(self, x, capture=False):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if capture:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            self.attn_weights = s.softmax(-1)
            a = self.attn_weights @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True,   # scale defaults to 1/sqrt(d_k)
                                               dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.o_proj(a.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.proj(F.gelu(self.fc(self.ln2(x)))))


class GPT2Body(nn.Module):
    """GPT-2-style stack matched to a Gemma slice in width, depth, heads and MLP size.

    Positions come from a fixed sinusoidal table added at the input (no trainable parameters),
    so the frozen-random and from-scratch controls get position information without adding
    to the trainable budget."""

    def __init__(self, d_model, n_layers, n_heads, d_ff, first=0, generator=None, max_len=4096,
                 positions=True, dropout=0.0, final_ln=False):
        """positions=False, dropout and final_ln make it the Decision Transformer's own GPT-2 (no
        position table, the timestep embedding stands in; dropout; a LayerNorm at the end)."""
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        # Built on the meta device and initialised from `g` alone: building the body leaves torch's
        # global random state untouched, so the interface built after it starts the same for every body.
        with torch.device("meta"):
            blocks = nn.ModuleList([Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)])
        self.blocks = blocks.to_empty(device="cpu")
        with torch.no_grad():
            for name, p in self.blocks.named_parameters():  # GPT-2 init
                if p.ndim >= 2:
                    std = 0.02 / (math.sqrt(2 * n_layers) if name.endswith(("o_proj.weight", "proj.weight")) else 1)
                    p.copy_(torch.randn(p.shape, generator=g) * std)
                elif name.endswith("weight"):   # LayerNorm gains
                    p.fill_(1.0)
                else:                           # biases
                    p.zero_()
        pos = torch.arange(max_len).unsqueeze(1) * torch.exp(torch.arange(0, d_model, 2) * (-math.log(1e4) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(pos), torch.cos(pos)
        self.register_buffer("pos", table if positions else torch.zeros(0, d_model), persistent=False)
        self.ln_f = nn.LayerNorm(d_model) if final_ln else None
        self.d_model, self.num_heads, self.capture = d_model, n_heads, False
        self.compute_dtype = torch.float32
        self.layer_ids = list(range(first, first + n_layers))
        self.attn_out = {i: b.o_proj for i, b in zip(self.layer_ids, self.blocks)}
        self.head_dims = {i: d_model // n_heads for i in self.layer_ids}
        install_head_hooks(self)

    def forward(self, h, position_ids=None):
        if len(self.pos):
            h = h + self.pos[: h.shape[1]].to(h.dtype)
        for b in self.blocks:
            h = b(h, capture=self.capture)
        return h if self.ln_f is None else self.ln_f(h)


# ----------------------------------------------------------------------------- 4. heads

def install_head_hooks(body):
    """Zero-ablation of single heads at the input of each layer's attention output projection.

    That input is [..., num_heads * head_dim] with head h at columns h*hd:(h+1)*hd: the last
    place where heads are separate (after o_proj they are mixed into the residual stream)."""
    body.ablated = {}  # layer id -> set of heads; empty = intact

    def make_hook(layer_id):
        def hook(module, args):
            heads = body.ablated.get(layer_id)
            if not heads:
                return None
            x = args[0]
            hd = body.head_dims[layer_id]
            keep = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
            for h in heads:
                keep[h * hd:(h + 1) * hd] = 0
            return (x * keep,) + tuple(args[1:])
        return hook

    for layer_id, proj in body.attn_out.items():
        proj.register_forward_pre_hook(make_hook(layer_id))


def head_labels(body):
    return [f"L{i}.{h}" for i in body.layer_ids for h in range(body.num_heads)]


def parse_heads(spec, body):
    """'L7.2,L9.0' -> {7: {2}, 9: {0}}, checked against the body's layers and heads."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        m = re.fullmatch(r"L(\d+)\.(\d+)", item)
        if not m or int(m.group(1)) not in body.attn_out or int(m.group(2)) >= body.num_heads:
            raise UserError(f"head {item!r} is not in this slice (heads are L<layer>.<head>, "
                            f"layers {body.layer_ids[0]}-{body.layer_ids[-1]}, heads 0-{body.num_heads - 1})")
        out.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return out


def set_ablation(body, heads):
    """Ablate exactly `heads` ({layer: {head, ...}}); {} restores the intact model."""
    body.ablated.clear()
    body.ablated.update({k: set(v) for k, v in heads.items()})


@contextmanager
def capture_attention(body):
    """Yield a dict {layer id: attention weights [B, heads, T, T]} filled by each forward pass.

    Gemma layers return weights only under eager attention, so the slice is switched to eager
    while capturing (same numbers, slower)."""
    store, handles = {}, []
    if isinstance(body, FrozenSlice):
        old = body.config._attn_implementation
        body.config._attn_implementation = "eager"
        for i, layer in zip(body.layer_ids, body.layers):
            handles.append(layer.self_attn.register_forward_hook(
                lambda mod, args, out, i=i: store.__setitem__(i, out[1].detach())))
        try:
            yield store
        finally:
            body.config._attn_implementation = old
            for hd in handles:
                hd.remove()
    else:
        body.capture = True
        for i, b in zip(body.layer_ids, body.blocks):
            handles.append(b.register_forward_hook(lambda mod, args, out, i=i: store.__setitem__(i, mod.attn_weights.detach())))
        try:
            yield store
        finally:
            body.capture = False
            for hd in handles:
                hd.remove()


# ----------------------------------------------------------------------------- 5. interface

def rms_norm(x, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class InterfaceModel(nn.Module):
    """y = W_out RMSNorm(body(s * W_in x)): the only trainable parts are W_in and W_out (and, with
    learn_scale, one scalar gain g in s = in_scale * g).

    in_scale puts the injected vectors at the size of an ordinary residual dimension entering the
    slice (pretrained.stream_stats: typical_rms), the regime the frozen layers were trained on. The slice's
    first RMSNorm makes the attention/MLP branch blind to it, but the residual path is not: too large
    and the input swamps what each frozen layer writes, too small and it is swamped.
    The RMSNorm before the readout has no weights."""

    def __init__(self, body, d_model, in_dim, out_dim, in_scale=1.0, learn_scale=False):
        super().__init__()
        self.body = body
        self.w_in = nn.Linear(in_dim, d_model)
        nn.init.normal_(self.w_in.weight, std=1 / math.sqrt(in_dim))  # unit-RMS output for unit-RMS input
        # the bias starts like one more input channel, never at zero: an all-zero first token (a 0 cell
        # of rule90) would otherwise stay an exact zero vector through every layer, and each frozen
        # RMSNorm multiplies the gradient of a zero vector by 1/sqrt(eps) = 1e3 -> inf, then NaN
        nn.init.normal_(self.w_in.bias, std=1 / math.sqrt(in_dim))
        self.register_buffer("in_scale", torch.tensor(float(in_scale)))
        self.in_gain = nn.Parameter(torch.ones(())) if learn_scale else None
        self.w_out = nn.Linear(d_model, out_dim)

    def input_scale(self):
        """The number the input map's output is multiplied by right now."""
        return float(self.in_scale * (self.in_gain.detach() if self.in_gain is not None else 1.0))

    def forward(self, x):
        h = self.w_in(x) * self.in_scale
        if self.in_gain is not None:
            h = h * self.in_gain
        if self.body is not None:
            h = run_body(self.body, h)
        return self.w_out(rms_norm(h))



def trainable_state(net, also=()):
    """What training changes, all a checkpoint stores besides the config: the parameters with
    requires_grad, and those whose names start with a prefix in `also` (IQL's Polyak-averaged target
    critic, which follows training without a gradient)."""
    names = {n for n, p in net.named_parameters() if p.requires_grad or n.startswith(tuple(also))}
    return {k: v for k, v in net.state_dict().items() if k in names}


def param_counts(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {"trainable_params": trainable, "frozen_params": frozen}


def parse_input_scale(spec):
    """'auto', 'learn' or a positive number (as float). Anything else is a user error."""
    if spec in ("auto", "learn"):
        return spec
    try:
        value = float(spec)
    except (TypeError, ValueError):
        raise UserError(f"--input-scale must be 'auto', 'learn' or a positive number, got {spec!r}")
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"--input-scale must be a positive finite number, got {spec!r}")
    return value


# ----------------------------------------------------------------------------- build

def body_from_config(cfg, device, known_scale=None):
    """build_body() for a run config (the flags add_body_args defines, and --seed). known_scale: the
    input scale a checkpoint was trained with, used as it is: every loader passes it, so evaluating,
    ablating or resuming never recalibrates."""
    return build_body(cfg["model"], cfg["layers"], cfg["substrate"], cfg["init"], device,
                      resolve_dtype(cfg.get("dtype"), device), cfg["seed"], cfg["input_scale"], known_scale)


SUBSTRATES = ("gemma", "gpt2-random", "scratch", "none")
INITS = ("pretrained", "random", "shuffled", "matched")
INIT_HELP = ("pretrained weights, or a control of the same slice, frozen and seeded by --seed: random (re-initialised "
             "by the model's initializer), shuffled (each tensor's entries permuted within it: pretrained value "
             "statistics, no structure), matched (each tensor redrawn Gaussian with its own mean and std) "
             "(default pretrained)")


def build_body(model=pretrained.DEFAULT_MODEL, layers="6-11", substrate="gemma", init="pretrained",
               device="cpu", dtype=torch.float32, seed=0, input_scale="auto", known_scale=None):
    """The body between the interface maps, and a dict describing it for results.json.

    substrate: gemma (the frozen slice), gpt2-random (frozen random GPT-2-style stack of the same
    width/depth/heads/MLP size), scratch (the same stack, fully trainable), none (no layers).
    init: pretrained, or a control of the same slice (Gemma only, still frozen, seeded): random
    (re-initialised), shuffled (entries permuted within each tensor), matched (Gaussian, each tensor's
    own mean and std).
    input_scale: 'auto' (Gemma: typical_rms of the residual stream entering the slice, see
    pretrained.stream_stats; GPT-2 controls: 1), 'learn' (the same start, times a trainable scalar), or a number.
    known_scale: use this number and skip calibration (rebuilding a trained checkpoint)."""
    if substrate not in SUBSTRATES:
        raise UserError(f"unknown --substrate {substrate!r}; choose from {', '.join(SUBSTRATES)}")
    if init not in INITS:
        raise UserError(f"unknown --init {init!r}; choose from {', '.join(INITS)}")
    if init != "pretrained" and substrate != "gemma":
        raise UserError(f"--init {init} applies to --substrate gemma only")
    ckpt = pretrained.Checkpoint(model)
    cfg = ckpt.text_config
    first, last = parse_layers(layers, ckpt.num_layers)
    info = {"model": model, "model_type": cfg.model_type, "layers": f"{first}-{last}",
            "layer_types": layer_types(cfg)[first:last + 1], "substrate": substrate,
            "init": init if substrate == "gemma" else None,    # a control of the Gemma slice only
            "d_model": cfg.hidden_size, "dtype": dtype_name(dtype), "sliding_window": attention_window(cfg)}
    mode = parse_input_scale(input_scale)
    # The scale is measured first, so the calibration's embedding and streamed layers are freed
    # before the slice is loaded: peak memory is the larger of the two, not their sum.
    if known_scale is not None:      # evaluate / ablate: the number the checkpoint was trained with
        scale = float(known_scale)
    elif mode in ("auto", "learn") and substrate == "gemma":
        stats = pretrained.residual_stats(ckpt, first, device, dtype)[first]
        info["calibration"] = stats
        scale = stats["typical_rms"]
    elif mode in ("auto", "learn"):
        scale = 1.0   # the GPT-2 controls' LayerNorm blocks were built around unit-scale inputs
    else:
        scale = mode
    if substrate == "gemma":
        body = load_slice(ckpt, first, last, device, dtype)
        apply_init(body, init, seed)
    elif substrate in ("gpt2-random", "scratch"):
        body = GPT2Body(cfg.hidden_size, last - first + 1, cfg.num_attention_heads, cfg.intermediate_size,
                        first=first, generator=torch.Generator().manual_seed(seed)).to(device)
        body.compute_dtype = dtype
        if substrate == "gpt2-random":   # frozen: held in the compute dtype, as the Gemma slice is
            freeze(body).to(dtype)
            check_dtype(body, dtype)
    else:
        body = None
    # the precision the body really holds (frozen weights) and computes in, read off the body itself
    frozen = [p for p in body.parameters() if not p.requires_grad] if body is not None else []
    info["dtype"] = dtype_name(frozen[0].dtype) if frozen else dtype_name(dtype)
    info["compute_dtype"] = dtype_name(body.compute_dtype) if body is not None else "fp32"
    info["input_scale"] = scale               # the number multiplied in (learn: its starting value)
    info["input_scale_mode"] = mode if mode in ("auto", "learn") else "fixed"
    info["slice_bytes_read"] = ckpt.bytes_read
    info["regime"] = regime(body, scale)      # at the starting scale; runs record it again at their end
    return body, info
