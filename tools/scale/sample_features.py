#!/usr/bin/env python3
"""Draw item features for the real-geometry scale set from a generator fitted to the real
Amazon Beauty title features (datasets/beauty/item_features.npy, 12,101 x 384, unit norm).

    python sample_features.py --features datasets/beauty/item_features.npy --n 1000000 \\
        --out features.npy [--clusters 128] [--seed 20261122] [--report fit.json]

The generator is a Gaussian mixture fitted by k-means (numpy only, seeded): one component per
cluster, weight = the cluster's share of items, mean = the cluster centroid, covariance =
the cluster's own covariance shrunk toward the pooled within-cluster covariance
(S_c' = (n_c S_c + 50 S_pool) / (n_c + 50), so small clusters borrow strength). Each draw is
L2-normalised, as the real features (MiniLM sentence embeddings) are. The real 12,101 rows
come first, unchanged, so the real items and their real query targets are part of the set;
the remaining n - 12,101 rows are draws. Output: float16 [n, 384] .npy (the encoder widens
to f32), written to a temporary name and renamed.

The fitted mixture is judged by a held-out check written to --report: k-means is fitted on
90% of the real rows, and the nearest-neighbour cosine of the held-out 10% to the fitted
set is compared with that of an equal number of draws (a generator that copies rows would
score ~1.0; one that ignores the clusters would score far lower than real held-out rows).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

SHRINK_ROWS = 50.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def kmeans(x, k, rng, iters=25):
    """Lloyd's k-means with k-means++ seeding; returns (centroids [k, d], labels [n])."""
    n = x.shape[0]
    c = np.empty((k, x.shape[1]), dtype=np.float64)
    c[0] = x[rng.integers(n)]
    d2 = ((x - c[0]) ** 2).sum(1)
    for j in range(1, k):
        p = d2 / d2.sum()
        c[j] = x[rng.choice(n, p=p)]
        d2 = np.minimum(d2, ((x - c[j]) ** 2).sum(1))
    xx = (x * x).sum(1)[:, None]
    for _ in range(iters):
        dist = xx - 2 * x @ c.T + (c * c).sum(1)[None, :]
        labels = dist.argmin(1)
        for j in range(k):
            m = labels == j
            if m.any():
                c[j] = x[m].mean(0)
            else:  # empty cluster: reseed at the worst-fitted point
                c[j] = x[dist.min(1).argmax()]
    return c, labels


def fit(x, k, rng):
    """The mixture: weights [k], means [k, d], Cholesky factors [k, d, d]."""
    c, labels = kmeans(x, k, rng)
    d = x.shape[1]
    resid = x - c[labels]
    pool = resid.T @ resid / max(1, x.shape[0] - k)
    weights = np.bincount(labels, minlength=k).astype(np.float64)
    chol = np.empty((k, d, d))
    for j in range(k):
        r = resid[labels == j]
        nj = r.shape[0]
        s = r.T @ r / max(1, nj - 1) if nj > 1 else np.zeros((d, d))
        cov = (nj * s + SHRINK_ROWS * pool) / (nj + SHRINK_ROWS)
        cov += 1e-8 * np.eye(d)
        chol[j] = np.linalg.cholesky(cov)
    return weights / weights.sum(), c, chol


def sample(mix, n, rng, block=65536):
    weights, means, chol = mix
    d = means.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    comp = rng.choice(len(weights), size=n, p=weights)
    for s in range(0, n, block):
        e = min(n, s + block)
        cj = comp[s:e]
        z = rng.standard_normal((e - s, d))
        y = np.empty((e - s, d))
        for j in np.unique(cj):
            m = cj == j
            y[m] = means[j] + z[m] @ chol[j].T
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        out[s:e] = y
    return out


def nn_cos(a, b):
    """Mean over rows of a of the best cosine to any row of b (rows unit-norm)."""
    best = np.full(a.shape[0], -2.0)
    for s in range(0, b.shape[0], 4096):
        best = np.maximum(best, (a @ b[s:s + 4096].T).max(1))
    return float(best.mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--n", type=int, required=True, help="rows in all (real rows first)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--clusters", type=int, default=128)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--report", default=None, help="write the fit check here (JSON)")
    a = ap.parse_args(argv)

    real = np.load(a.features).astype(np.float64)
    if real.ndim != 2:
        sys.exit(f"{a.features}: expected a 2-d array, got shape {real.shape}")
    nr, d = real.shape
    if a.n < nr:
        sys.exit(f"--n {a.n} is smaller than the {nr} real rows it must contain")
    if not 1 <= a.clusters <= nr:
        sys.exit(f"--clusters {a.clusters} must be in 1..{nr}")
    rng = np.random.default_rng(a.seed)
    t = time.time()

    # Held-out check on a 90/10 split, with its own fit.
    perm = rng.permutation(nr)
    held, train = real[perm[: nr // 10]], real[perm[nr // 10:]]
    mix_tr = fit(train, a.clusters, rng)
    draws = sample(mix_tr, held.shape[0], rng).astype(np.float64)
    report = {
        "clusters": a.clusters,
        "seed": a.seed,
        "real_rows": nr,
        "held_out_rows": int(held.shape[0]),
        "nn_cosine_real_held_out_to_train": nn_cos(held, train),
        "nn_cosine_draws_to_train": nn_cos(draws, train),
        "mean_pairwise_cosine_real": float((held @ held.T).mean()),
        "mean_pairwise_cosine_draws": float((draws @ draws.T).mean()),
    }
    log(f"fit check: {json.dumps(report)}")

    mix = fit(real, a.clusters, rng)
    log(f"fitted {a.clusters} components on {nr} x {d} in {time.time() - t:.1f}s; drawing {a.n - nr}")
    out = np.lib.format.open_memmap(a.out + ".tmp.npy", mode="w+", dtype=np.float16, shape=(a.n, d))
    out[:nr] = real.astype(np.float16)
    step = 262144
    for s in range(nr, a.n, step):
        e = min(a.n, s + step)
        out[s:e] = sample(mix, e - s, rng).astype(np.float16)
    out.flush()
    del out
    os.replace(a.out + ".tmp.npy", a.out)
    log(f"wrote {a.out} ({a.n} x {d} float16) in {time.time() - t:.1f}s")
    if a.report:
        report["n"] = a.n
        with open(a.report, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
