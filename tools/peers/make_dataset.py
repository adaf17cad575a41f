#!/usr/bin/env python3
"""A small generated Matryoshka-like data set for testing the peer scripts.

    python make_dataset.py --out DIR --n 20000 --nq 200 --dim 1024 --seed 42

Writes DIR/items.npy (float32 [n, dim], C order), DIR/queries.npy (float32 [nq, dim]) and
DIR/gt.npy (uint64 [nq, 100], exact full-width inner-product top-100, best first).

Model: C clusters; a vector is (centre + noise) with dimension j scaled by (1 + j/8)^-0.5,
so the energy sits in the leading dims and every prefix carries most of the ranking signal
(as in Matryoshka embeddings), then rescaled to a log-normal norm (raw inner products, no
normalisation: the norm matters for the ranking). Queries come from the same clusters with
their own noise and norms. It is NOT a real embedding set: recall/latency on it say that
the scripts work, not how the systems compare on real data.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ground_truth import exact_topk  # noqa: E402


def gen(rng, centres, count, noise, norm_sigma, scale, block=8192):
    out = np.empty((count, centres.shape[1]), dtype=np.float32)
    for s in range(0, count, block):
        e = min(count, s + block)
        c = rng.integers(0, centres.shape[0], size=e - s)
        v = centres[c] + noise * rng.standard_normal((e - s, centres.shape[1]), dtype=np.float32)
        v *= scale
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        target = np.exp(norm_sigma * rng.standard_normal((e - s, 1))).astype(np.float32)
        out[s:e] = v / np.maximum(norms, 1e-12) * target
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--nq", type=int, default=200)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--clusters", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.8, help="within-cluster noise (centres are unit Gaussian)")
    ap.add_argument("--norm-sigma", type=float, default=0.25, help="sigma of the log-normal item norms")
    ap.add_argument("--gt-k", type=int, default=100)
    a = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    scale = ((1.0 + np.arange(a.dim, dtype=np.float32) / 8.0) ** -0.5).astype(np.float32)
    centres = rng.standard_normal((a.clusters, a.dim), dtype=np.float32)
    items = gen(rng, centres, a.n, a.noise, a.norm_sigma, scale)
    queries = gen(rng, centres, a.nq, a.noise, a.norm_sigma, scale)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "items.npy"), items)
    np.save(os.path.join(a.out, "queries.npy"), queries)
    ids, _ = exact_topk(items, queries, min(a.gt_k, a.n))
    np.save(os.path.join(a.out, "gt.npy"), ids.astype(np.uint64))
    print(f"wrote {a.out}: items {items.shape}, queries {queries.shape}, gt {ids.shape} "
          f"in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
