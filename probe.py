"""
Score every attention head of a frozen model on attention-pattern primitives, on English text.

    python probe.py                                   # embedded Gemma 3 270M, all 18 layers x 4 heads
    python probe.py --layers 6-11 --text my.txt --out probe.json
    python probe.py --layers 6-11 --init shuffled      # the same heads with their weights shuffled (a control)

Primitives (per head, averaged over query positions t >= 1 of every sentence, pooled):
  copying        attention mass onto earlier positions holding the same token id as t ("TxtCopy"),
                 over positions that have such an earlier occurrence
  induction      mass onto positions s whose previous token equals token t (s-1 an earlier
                 occurrence of t, s < t), over positions that have one
  prev_token     mass on t-1
  bos_sink       mass on position 0 (the BOS token)
  entropy        entropy of the attention row (nats)
  mean_distance  expected distance t - s under the attention row
Each score is also given as a ratio to its mean over the probed heads.
"""
import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

import model as M
import pretrained
from runs import UserError, environment, pick_device, portable, refuse_existing, resolve_dtype, run_main, save_atomic
from runs import read_lines, refuse_overwrite, seed_arg

PRIMITIVES = ("copying", "induction", "prev_token", "bos_sink", "entropy", "mean_distance")


def load_tokenizer(ckpt):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(ckpt.dir if ckpt.dir is not None else ckpt.repo_id)
    except Exception as e:
        raise UserError(f"{ckpt.name}: could not load its tokenizer ({type(e).__name__})")


def head_scores(att, ids):
    """Sums (not yet averaged) of every primitive for one sentence.

    att: [heads, T, T] attention weights, ids: [T] token ids. Returns {primitive: (sum [heads], count)}."""
    T = ids.shape[0]
    t_idx = torch.arange(T)
    earlier = t_idx.unsqueeze(1) > t_idx.unsqueeze(0)                  # [t, s]: s < t
    same = (ids.unsqueeze(1) == ids.unsqueeze(0)) & earlier             # s holds token t
    prev_ids = torch.cat([ids.new_full((1,), -1), ids[:-1]])
    induct = (ids.unsqueeze(1) == prev_ids.unsqueeze(0)) & earlier      # token before s is token t
    rows = t_idx >= 1
    out = {}
    for name, m in (("copying", same), ("induction", induct)):
        has = m.any(1) & rows
        out[name] = ((att * m).sum(-1)[:, has].sum(-1), int(has.sum()))
    n = int(rows.sum())
    a = att[:, rows]                                                    # [heads, n, T]
    out["prev_token"] = (a[:, torch.arange(n), t_idx[rows] - 1].sum(-1), n)
    out["bos_sink"] = (a[..., 0].sum(-1), n)
    out["entropy"] = (-(a * a.clamp_min(1e-12).log()).sum(-1).sum(-1), n)
    dist = (t_idx[rows].unsqueeze(1) - t_idx.unsqueeze(0)).clamp_min(0).float()
    out["mean_distance"] = ((a * dist).sum(-1).sum(-1), n)
    return out


@torch.no_grad()
def probe(ckpt, first, last, sentences, device="cpu", dtype=torch.float32, init="pretrained", seed=0):
    tok = load_tokenizer(ckpt)
    body = M.load_slice(ckpt, 0, last, device, dtype)  # layers before `first` are needed to reach it
    # a control replaces the probed layers only: they still read the real text stream of the layers below
    M.apply_init(body, init, seed, layers=body.layers[first:])
    H = body.num_heads
    sums = {p: torch.zeros(last - first + 1, H, dtype=torch.float64) for p in PRIMITIVES}
    counts = {p: 0 for p in PRIMITIVES}
    for s in tqdm(sentences, desc="probe"):
        ids = pretrained.with_start_token(tok, tok(s, return_tensors="pt")["input_ids"][0], ckpt.name)
        with M.capture_attention(body) as att:
            body(ckpt.stream_in(ids, device, dtype).unsqueeze(0))
        for j, layer in enumerate(range(first, last + 1)):
            for p, (total, n) in head_scores(att[layer][0].float().cpu(), ids).items():
                sums[p][j] += total.double()
                if j == 0:  # every layer scores the same positions
                    counts[p] += n
    heads = {}
    for p in PRIMITIVES:
        vals = (sums[p] / max(counts[p], 1)).tolist()
        mean = sum(map(sum, vals)) / (len(vals) * H)
        for j, layer in enumerate(range(first, last + 1)):
            for h in range(H):
                d = heads.setdefault(f"L{layer}.{h}", {"layer": layer, "head": h, "scores": {}, "ratio": {}})
                d["scores"][p] = vals[j][h]
                d["ratio"][p] = vals[j][h] / mean if mean else float("nan")
    means = {p: sum(h["scores"][p] for h in heads.values()) / len(heads) for p in PRIMITIVES}
    return heads, means, counts


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=pretrained.DEFAULT_MODEL, help="model id or path (default: embedded gemma3-270m)")
    p.add_argument("--layers", default="all", help="layers to score, 'a-b' or 'a' (default: all)")
    p.add_argument("--text", default=str(pretrained.PROBE_TEXT), help="one sentence per line (default: data/probe_sentences.txt)")
    p.add_argument("--out", default=None, help="JSON path (default runs/probe/probe_<model>[_<init><seed>].json; the "
                   "committed results/probe/ is written only when named here)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--init", default="pretrained", choices=M.INITS,
                   help="weights of the probed layers (the layers below them stay pretrained, so they still see "
                        "real text): " + M.INIT_HELP)
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of a control's weights (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                   help="precision of the model: auto = bf16 on CUDA, fp32 on CPU; scores are summed in fp64 (default auto)")
    args = p.parse_args()
    device = pick_device(args.device)
    ckpt = pretrained.Checkpoint(args.model)
    spec = f"0-{ckpt.num_layers - 1}" if args.layers == "all" else args.layers
    first, last = M.parse_layers(spec, ckpt.num_layers)
    if not Path(args.text).is_file():
        raise UserError(f"--text {args.text}: no such file")
    sentences = read_lines(args.text)
    if not sentences:
        raise UserError(f"--text {args.text}: no sentences in it (one per line)")
    tag = "" if args.init == "pretrained" else f"_{args.init}{args.seed}"
    out = Path(args.out or f"runs/probe/probe_{Path(args.model).name}{tag}.json")
    refuse_overwrite(out, [args.text])
    refuse_existing(out, args.force)          # before the model is loaded, not after minutes of work
    t0 = time.time()
    heads, means, counts = probe(ckpt, first, last, sentences, device, resolve_dtype(args.dtype, device),
                                 args.init, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    ranking = {p: sorted(heads, key=lambda h: -heads[h]["scores"][p])[:5] for p in PRIMITIVES}
    save_atomic({"model": args.model, "layers": f"{first}-{last}", "init": args.init, "seed": args.seed,
                 "text": portable(args.text), "sentences": len(sentences),
                 "primitives": list(PRIMITIVES), "means": means, "positions_counted": counts, "top5": ranking,
                 "heads": heads, "dtype": args.dtype, **environment(device), "wall_time_s": time.time() - t0}, out)
    for prim in ("copying", "induction", "prev_token"):
        print(f"{prim:>10}: " + ", ".join(f"{h} {heads[h]['ratio'][prim]:.2f}x" for h in ranking[prim][:3]))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(main)
