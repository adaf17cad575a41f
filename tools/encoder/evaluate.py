"""Full-ranking evaluation of fMRLRec on Amazon Beauty at every Matryoshka width.

Every user (22,363) is scored against the whole catalogue (12,101 items) with the raw dot product
z[:s] . e[:s]; the history is NOT filtered out (as in the paper). Recall@k (one target: hit rate)
and NDCG@k for k in {5, 10, 20, 50}, widths 8..1024. The rank of the target is the number of items
with a strictly higher score.

    python tools/encoder/evaluate.py --params .work/beauty/best_params.npz [--f16] \
        [--split test] [--out datasets/beauty/eval_results.json]

``--onnx-dir datasets/beauty`` evaluates the weights stored in the committed ONNX files (no training
run needed). ``--f16`` rounds every weight matrix to float16 first (what the ONNX export stores); without it the
weights are used in float32. ``--compare-f16`` evaluates both and records both. ``--agreement``
adds the prefix agreement (``prefix_agreement``): the share of the 1024-d top-10 that the 64, 128,
256 and 512-d prefixes rank in their top 10, 100 and 1,000 -- what a cascade starting on a short
prefix can find at best.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import jax
import jax.numpy as jnp

import data as D
import model as M

KS = (5, 10, 20, 50)


@jax.jit
def _ranks(params, E, ids, lengths, targets):
    E_pad = jnp.concatenate([jnp.zeros((1, E.shape[1]), E.dtype), E], axis=0)
    z = M.query_vectors(params, E_pad[ids], lengths)                  # [B, D]
    scores = M.mrl_logits(z, E)                                       # [S, B, N]
    t = jnp.take_along_axis(scores, (targets - 1)[None, :, None], axis=-1)
    return jnp.sum(scores > t, axis=-1)                               # [S, B]


def evaluate(params, feats, seqs, split: str = "test", batch_size: int = 256, max_len: int = 50,
             sizes=M.SIZES, ks=KS):
    """-> {size: {"Recall@k": .., "NDCG@k": ..}} and the per-user rank matrix [S, U]."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    E = M.item_vectors(params, jnp.asarray(feats))
    hist, targets = D.eval_examples(seqs, split, max_len)
    ranks = np.zeros((len(M.SIZES), len(hist)), dtype=np.int64)
    for idx, ids, lengths, tg in D.eval_batches(hist, targets, batch_size, max_len):
        r = np.asarray(_ranks(params, E, jnp.asarray(ids), jnp.asarray(lengths), jnp.asarray(tg)))
        keep = idx >= 0
        ranks[:, idx[keep]] = r[:, keep]
    out = {}
    for si, s in enumerate(M.SIZES):
        if s not in sizes:
            continue
        r = ranks[si]
        m = {}
        for k in ks:
            hit = r < k
            m[f"Recall@{k}"] = float(hit.mean())
            m[f"NDCG@{k}"] = float((hit / np.log2(r + 2.0)).mean())
        out[str(s)] = m
    return out, ranks


@jax.jit
def _prefix_ranks(params, E, ids, lengths):
    """For each query, the rank at every size of each of its full-size top-10 items: [S, B, 10]
    (the number of items a size scores strictly higher)."""
    E_pad = jnp.concatenate([jnp.zeros((1, E.shape[1]), E.dtype), E], axis=0)
    z = M.query_vectors(params, E_pad[ids], lengths)
    return top10_ranks(M.mrl_logits(z, E))


@jax.jit
def top10_ranks(scores):
    """scores [S, B, N] (``mrl_logits``) -> [S, B, 10]: at every size, the number of items scored
    strictly higher than each of the full size's top-10 items."""
    top = jax.lax.top_k(scores[-1], 10)[1]                            # [B, 10]
    t = jnp.take_along_axis(scores, jnp.broadcast_to(top[None], (scores.shape[0],) + top.shape),
                            axis=-1)                                  # [S, B, 10]
    return jnp.sum(scores[:, :, None, :] > t[..., None], axis=-1)


AGREEMENT_WIDTHS = (64, 128, 256, 512)
AGREEMENT_DEPTHS = (10, 100, 1000)


def prefix_agreement(params, feats, seqs, split: str = "test", batch_size: int = 64,
                     max_len: int = 50, widths=AGREEMENT_WIDTHS, depths=AGREEMENT_DEPTHS):
    """How much of the full size's exact top-10 each prefix ranks near its top: for every width w
    and depth d, the share of the 1024-d top-10 items (over all users of the split) that the
    w-d sub-model ranks within its top d. -> {str(w): {str(d): share}}. What a cascade whose
    coarse stage scores the w-d prefix and keeps d candidates can find at best."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    E = M.item_vectors(params, jnp.asarray(feats))
    hist, targets = D.eval_examples(seqs, split, max_len)
    hits = np.zeros((len(M.SIZES), len(depths)), dtype=np.int64)
    n = 0
    for idx, ids, lengths, _ in D.eval_batches(hist, targets, batch_size, max_len):
        r = np.asarray(_prefix_ranks(params, E, jnp.asarray(ids), jnp.asarray(lengths)))
        r = r[:, idx >= 0]                                            # [S, b, 10]
        n += r.shape[1] * r.shape[2]
        for j, d in enumerate(depths):
            hits[:, j] += (r < d).sum(axis=(1, 2))
    return {str(w): {str(d): float(hits[M.SIZES.index(w), j] / max(n, 1))
                     for j, d in enumerate(depths)} for w in widths}


def agreement_table(agr) -> str:
    depths = list(next(iter(agr.values())).keys())
    lines = ["| prefix | " + " | ".join(f"in its top-{d}" for d in depths) + " |",
             "|---" * (len(depths) + 1) + "|"]
    for w, row in agr.items():
        lines.append(f"| {w} | " + " | ".join(f"{row[d]:.3f}" for d in depths) + " |")
    return "\n".join(lines)


def table(res, ks=(5, 10, 20)) -> str:
    cols = [f"{m}@{k}" for k in ks for m in ("Recall", "NDCG")]
    lines = ["| width | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for s, m in res.items():
        lines.append(f"| {s} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=".work/beauty/best_params.npz")
    ap.add_argument("--onnx-dir", default="",
                    help="take the weights from <dir>/{query,item}_encoder.onnx instead of --params "
                         "(e.g. datasets/beauty: the committed float16 weights)")
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--features", default="datasets/beauty/item_features.npy")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--f16", action="store_true", help="round weight matrices to float16 first")
    ap.add_argument("--compare-f16", action="store_true", help="evaluate float32 and float16 weights")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="", help="write results JSON here (e.g. datasets/beauty/eval_results.json)")
    ap.add_argument("--meta", default="", help="JSON file whose contents go under 'training' in the output")
    ap.add_argument("--agreement", action="store_true",
                    help="also measure the prefix agreement: the share of the 1024-d top-10 each of the "
                         "64/128/256/512-d prefixes ranks in its top 10/100/1000")
    args = ap.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")

    if args.onnx_dir:
        import export_onnx as X

        od = D.resolve(args.onnx_dir)
        params = X.params_from_onnx(od / "query_encoder.onnx", od / "item_encoder.onnx")
    else:
        params = M.load_params(D.resolve(args.params))
    feats = D.load_features(args.features)
    seqs = D.load_sequences(args.data_dir)
    result = {
        "dataset": "amazon-beauty (P5 sequential_data.txt, 5-core)",
        "split": args.split,
        "users": len(seqs),
        "items": int(feats.shape[0]),
        "protocol": "leave-one-out; full ranking over all items; history not filtered; "
                    "rank = #items with a strictly higher score; widths score z[:s].e[:s]",
        "features": "text only: all-MiniLM-L6-v2 of item titles (no images)",
        "n_blocks": len(params["blocks"]),
        "backend": jax.default_backend(),
    }
    variants = [("float16", True), ("float32", False)] if args.compare_f16 else \
        [("float16" if args.f16 else "float32", args.f16)]
    if args.onnx_dir:  # the ONNX files hold float16 matrices already
        variants = [("onnx_float16", False)]
    for name, f16 in variants:
        p = M.round_f16(params) if f16 else params
        t0 = time.time()
        res, _ = evaluate(p, feats, seqs, args.split, args.batch_size)
        dt = time.time() - t0
        result[f"metrics_{name}_weights"] = res
        result[f"eval_seconds_{name}"] = round(dt, 2)
        print(f"## {args.split}, {name} weights ({dt:.1f}s)\n" + table(res), flush=True)
    if args.agreement:
        p = M.round_f16(params) if (args.f16 and not args.onnx_dir) else params
        t0 = time.time()
        agr = prefix_agreement(p, feats, seqs, args.split)
        result["prefix_agreement"] = agr
        print(f"## prefix agreement ({args.split}, {time.time() - t0:.1f}s): share of the 1024-d "
              f"top-10 in each prefix's top-d\n" + agreement_table(agr), flush=True)
    if args.compare_f16:
        a = result["metrics_float16_weights"]["1024"]["NDCG@10"]
        b = result["metrics_float32_weights"]["1024"]["NDCG@10"]
        result["f16_minus_f32_NDCG@10_at_1024"] = a - b
    if args.meta:
        result["training"] = json.loads(Path(D.resolve(args.meta)).read_text())
    if args.out:
        out = D.resolve(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
