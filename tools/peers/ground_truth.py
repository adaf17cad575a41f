#!/usr/bin/env python3
"""Exact maximum-inner-product ground truth for any data set.

    python ground_truth.py --items ITEMS.npy --queries Q.npy --k 100 --out gt.npy

ITEMS.npy: float32 [n, d] (memory-mapped, read in blocks, so n can exceed RAM);
Q.npy: float32 [nq, d]. --dim D scores only the first D dims of both (a Matryoshka prefix).
Writes uint64 [nq, k]: row numbers of ITEMS, best (largest raw inner product) first.
Ties are broken by the smaller row number.

Scores are computed in float64 by default (--dtype float64), blocked matmul with numpy,
which uses every core through its BLAS. --dtype float32 is about twice as fast.
"""
import argparse
import os
import sys
import time

import numpy as np


def exact_topk(items, queries, k, block=16384, dtype=np.float64, dim=None, progress=False):
    """Top-k ids (int64 [nq, k]) and scores (float64 [nq, k]) by raw inner product.

    items: array-like [n, d] (np.memmap is fine); queries: [nq, d]. Blocks of `block`
    items are scored against all queries at once; a running top-k is merged per block.
    """
    n, d = items.shape
    if dim is None:
        dim = d
    if dim > d or dim > queries.shape[1]:
        raise ValueError(f"dim {dim} exceeds items ({d}) or queries ({queries.shape[1]})")
    nq = queries.shape[0]
    # keep one block of scores (nq x block, float64) near 256 MiB whatever nq is
    block = max(256, min(block, (1 << 25) // max(1, nq)))
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    q = np.ascontiguousarray(queries[:, :dim], dtype=dtype)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float64)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    t0 = time.time()
    for start in range(0, n, block):
        stop = min(n, start + block)
        x = np.asarray(items[start:stop, :dim], dtype=dtype)
        s = (q @ x.T).astype(np.float64, copy=False)  # [nq, b]
        ids = np.arange(start, stop, dtype=np.int64)
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        kk = min(k, cand_s.shape[1])
        if cand_s.shape[1] > kk:
            part = np.argpartition(-cand_s, kk - 1, axis=1)[:, :kk]
            cand_s = np.take_along_axis(cand_s, part, axis=1)
            cand_i = np.take_along_axis(cand_i, part, axis=1)
        best_s, best_i = cand_s, cand_i
        if progress and (start // block) % 16 == 15:
            print(f"  ground truth: {stop}/{n} items, {time.time() - t0:.1f}s", file=sys.stderr)
    # order: score descending, then id ascending
    order = np.lexsort((best_i, -best_s), axis=1)
    return np.take_along_axis(best_i, order, axis=1), np.take_along_axis(best_s, order, axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=None, help="score only the first DIM dims (default: all)")
    ap.add_argument("--block", type=int, default=16384, help="items per block (default 16384)")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    a = ap.parse_args(argv)
    items = np.load(a.items, mmap_mode="r")
    queries = np.load(a.queries)
    if items.ndim != 2 or queries.ndim != 2 or items.shape[1] != queries.shape[1]:
        sys.exit(f"shape mismatch: items {items.shape}, queries {queries.shape}")
    t0 = time.time()
    ids, _ = exact_topk(items, queries, a.k, a.block, np.dtype(a.dtype), a.dim, progress=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    np.save(a.out, ids.astype(np.uint64))
    print(f"wrote {a.out}: uint64 {ids.shape} in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
