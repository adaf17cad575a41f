#!/usr/bin/env python3
"""Measure the peers of mrl-index (FAISS, hnswlib, USearch, ScaNN, RaBitQ's SymphonyQG)
on one data set.

    python run_peers.py --items ITEMS.npy --queries Q.npy --ground-truth GT.npy \\
        -k 10 --threads-all 2 --out rows.jsonl [--prefix-dim 64] [--dataset NAME] \\
        [--only faiss,hnswlib,usearch,scann,rabitqlib]

Writes one JSON object per line per configuration (schema in README.md, shared with
`mrl-index bench`). The driver spawns one worker process per build (a system, a family
and its build parameters), so build time, index size and resident memory belong to
that build alone; the worker sweeps the search parameters of its build and hands its
rows back. Rows are appended to --out as each worker finishes.

--only takes system names (faiss, hnswlib, usearch, scann, rabitqlib) and/or family names.
Opt-in families (scann-ah-flat) run only when --only names them. A family whose library
is missing (or lacks what the family needs) is skipped with its reason, not failed.
"""
import argparse
import datetime
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

FAMILIES = [
    # (family, system)
    ("faiss-flat-ip", "faiss"),
    ("faiss-hnsw-full", "faiss"),
    ("faiss-hnsw-prefix-refine", "faiss"),
    ("faiss-pca-hnsw-refine", "faiss"),
    ("faiss-panorama-flat-ip", "faiss"),
    ("faiss-panorama-prefix-refine", "faiss"),
    ("hnswlib-full", "hnswlib"),
    ("hnswlib-prefix-rerank", "hnswlib"),
    ("usearch-full", "usearch"),
    ("scann-ah", "scann"),
    ("scann-ah-flat", "scann"),
    ("symqg", "rabitqlib"),
    ("mrl-index-py", "mrl-index"),
]
SYSTEM_OF = dict(FAMILIES)
# run only when --only names the family itself (not by default, not through its system)
OPT_IN = {"scann-ah-flat"}


class SkipFamily(Exception):
    """The family cannot run here (library missing, feature absent): no rows, not a failure."""


def floats(s):
    return [float(v) for v in str(s).split(",") if v.strip()]


def ints(s):
    return [int(v) for v in str(s).split(",") if v.strip()]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine / process

def machine_string():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if model is None:
        import platform
        model = platform.processor() or platform.machine()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{model}, {cores} cores"


def cpu_flags():
    """The CPU's feature flags (x86 Linux), or None when they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def malloc_trim():
    """Give freed heap memory back to the OS (glibc), so VmRSS reflects live memory rather
    than allocator slack left by the build's temporary buffers."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def proc_status(field):
    """A /proc/self/status field in bytes (VmRSS, VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    parts = line.split()
                    return int(parts[1]) * 1024  # kB
    except OSError:
        pass
    return None


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------- recall

def recall(ret, gt, at):
    """Mean |ret[:, :at] ∩ gt[:, :at]| / at; ret may hold -1 for missing results."""
    ret = np.asarray(ret, dtype=np.int64)[:, :at]
    gt = np.asarray(gt, dtype=np.int64)[:, :at]
    hits = 0
    for s in range(0, ret.shape[0], 512):
        r = ret[s:s + 512]
        g = gt[s:s + 512]
        hits += int((r[:, :, None] == g[:, None, :]).any(axis=2).sum())
    return hits / (ret.shape[0] * at)


# --------------------------------------------------------------------------- families
# Each runner: build(items_mmap, threads); save(dir) -> bytes; configs() -> list of
# (config dict, label); set_config(cfg); set_threads(t); search(Q, k) -> int64 ids [nq, k]
# (batch, current threads); search1(q [1, d], k) -> int64 ids [1, k] (one query);
# counters_reset(); counters(nq_done, k) -> (candidates_per_query, mult_adds_per_query).

CHUNK_ROWS = 65536


def chunks(n, rows=CHUNK_ROWS):
    for s in range(0, n, rows):
        yield s, min(n, s + rows)


class Runner:
    system = None
    family = None
    # The library's batch search runs on one thread after set_threads(1): the row gets
    # qps_1_thread_batch and call_overhead_us (one query per call against a batch).
    batch_one_thread = True
    # Rows report the time around build() (False: the index was built elsewhere).
    built_here = True

    def __init__(self, spec, args, d):
        self.spec = spec
        self.args = args
        self.d = d
        self.p = args.prefix_dim

    def counters_reset(self):
        pass

    def counters(self, nq, k):
        return None, None


class FaissRunner(Runner):
    system = "faiss"

    def __init__(self, spec, args, d):
        super().__init__(spec, args, d)
        import faiss
        self.faiss = faiss

    def set_threads(self, t):
        self.faiss.omp_set_num_threads(t)

    def search(self, Q, k):
        _, ids = self.index.search(Q, k)
        return ids

    def search1(self, q, k):
        _, ids = self.index.search(q, k)
        return ids

    def save(self, directory):
        path = os.path.join(directory, "index.faiss")
        self.faiss.write_index(self.index, path)
        return os.path.getsize(path)

    def add_all(self, items):
        n = items.shape[0]
        for s, e in chunks(n):
            self.index.add(np.ascontiguousarray(items[s:e], dtype=np.float32))


class FaissFlat(FaissRunner):
    family = "faiss-flat-ip"

    def build(self, items, threads):
        self.n = items.shape[0]
        self.index = self.faiss.IndexFlatIP(self.d)
        self.add_all(items)

    def configs(self):
        return [({}, "exact")]

    def set_config(self, cfg):
        pass

    def counters(self, nq, k):
        return float(self.n), float(self.n) * self.d


class FaissHNSW(FaissRunner):
    family = "faiss-hnsw-full"

    def build(self, items, threads):
        f = self.faiss
        self.M = self.spec["M"]
        self.efc = self.spec["efConstruction"]
        self.index = f.IndexHNSWFlat(self.d, self.M, f.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.efc
        self.hnsw = self.index.hnsw
        self.add_all(items)

    def configs(self):
        return [({"M": self.M, "efConstruction": self.efc, "efSearch": ef},
                 f"M={self.M} efC={self.efc} ef={ef}") for ef in self.args.ef_search]

    def set_config(self, cfg):
        self.hnsw.efSearch = cfg["efSearch"]

    def counters_reset(self):
        self.faiss.cvar.hnsw_stats.reset()

    def counters(self, nq, k):
        ndis = self.faiss.cvar.hnsw_stats.ndis / nq
        return ndis, ndis * self.d


def prefix_refine_configs(args, k, M, efc, extra=None, ef_floor=False):
    """The k_factor x efSearch grid. FAISS's HNSW keeps a beam of efSearch whatever k is
    (it returns the best k*k_factor of the nodes it scored), so its whole grid is distinct.
    hnswlib searches with max(ef, k*k_factor) (ef_floor=True): every ef below k*k_factor is
    the same search, run once and reported with efSearch = k*k_factor."""
    out = []
    for kf in args.k_factors:
        efs = sorted({max(ef, k * kf) for ef in args.ef_search}) if ef_floor else list(args.ef_search)
        for ef in efs:
            cfg = {"M": M, "efConstruction": efc, "efSearch": ef, "k_factor": kf,
                   "prefix_dim": args.prefix_dim}
            if extra:
                cfg.update(extra)
            out.append((cfg, f"p={args.prefix_dim} M={M} efC={efc} ef={ef} kf={kf}"))
    return out


class FaissHNSWPrefixRefine(FaissRunner):
    """IndexRefineFlat(IndexPreTransform(RemapDimensionsTransform(d -> p, prefix),
    IndexHNSWFlat(p, M, IP))): the base takes d-dim input and keeps its first p dims,
    so base and refine share the input dim and IndexRefineFlat scores the k*k_factor
    base candidates exactly at full width (IndexFlat(d, IP) holding the full vectors)."""
    family = "faiss-hnsw-prefix-refine"

    def make_refine(self, base):
        return self.faiss.IndexRefineFlat(base)

    def build(self, items, threads):
        f = self.faiss
        self.M = self.spec["M"]
        self.efc = self.spec["efConstruction"]
        h = f.IndexHNSWFlat(self.p, self.M, f.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = self.efc
        remap = f.RemapDimensionsTransform(self.d, self.p, False)  # map[i] = i for i < p
        base = f.IndexPreTransform(remap, h)
        self.index = self.make_refine(base)
        # keep Python references alive (the C++ objects do not own them here)
        self._keep = (h, remap, base)
        self.hnsw = h.hnsw
        self.add_all(items)

    def extra_cfg(self):
        return None

    def configs(self):
        return prefix_refine_configs(self.args, self.args.k, self.M, self.efc, self.extra_cfg())

    def set_config(self, cfg):
        self.hnsw.efSearch = cfg["efSearch"]
        self.index.k_factor = float(cfg["k_factor"])
        self.kf = cfg["k_factor"]

    def counters_reset(self):
        self.faiss.cvar.hnsw_stats.reset()

    def counters(self, nq, k):
        ndis = self.faiss.cvar.hnsw_stats.ndis / nq
        rerank = k * self.kf
        return ndis + rerank, ndis * self.p + rerank * self.d


class FaissPanoramaFlat(FaissRunner):
    """IndexFlatIPPanorama: exact search, dims stored in n_levels contiguous levels; after
    each level a Cauchy-Schwarz bound drops items that cannot reach the current top-k."""
    family = "faiss-panorama-flat-ip"

    def build(self, items, threads):
        f = self.faiss
        self.levels = self.spec["n_levels"]
        self.batch = self.spec["batch_size"]
        self.index = f.IndexFlatIPPanorama(self.d, self.levels, self.batch)
        self.n = items.shape[0]
        self.add_all(items)

    def configs(self):
        return [({"n_levels": self.levels, "batch_size": self.batch},
                 f"exact levels={self.levels} batch={self.batch}")]

    def set_config(self, cfg):
        pass

    def counters_reset(self):
        self.faiss.cvar.indexPanorama_stats.reset()

    def counters(self, nq, k):
        st = self.faiss.cvar.indexPanorama_stats
        # total_dims_scanned counts (vector, level) pairs that were scored
        return float(self.n), st.total_dims_scanned / nq * (self.d / self.levels)


class FaissPanoramaPrefixRefine(FaissHNSWPrefixRefine):
    """As faiss-hnsw-prefix-refine, but the full-width rerank is Panorama's
    (IndexRefinePanorama with an IndexFlatIPPanorama(d, n_levels, batch_size=1),
    which FAISS requires): candidates are scored level by level and pruned."""
    family = "faiss-panorama-prefix-refine"

    def make_refine(self, base):
        f = self.faiss
        self.levels = self.spec["n_levels"]
        refine = f.IndexFlatIPPanorama(self.d, self.levels, 1)
        idx = f.IndexRefinePanorama(base, refine)
        self._keep_refine = refine
        return idx

    def extra_cfg(self):
        return {"n_levels": self.levels}

    def counters(self, nq, k):
        # graph work is known (hnsw_stats); how much of the rerank Panorama pruned is not
        # reliably reported for search_subset, so the multiply-adds stay unknown.
        ndis = self.faiss.cvar.hnsw_stats.ndis / nq
        return ndis + k * self.kf, None


class FaissPCAHNSWRefine(FaissHNSWPrefixRefine):
    """The query-agnostic control: IndexRefineFlat(IndexPreTransform(PCAMatrix(D, d),
    IndexHNSWFlat(d, M, IP))). The PCA basis is trained on the items (a sample of
    --pca-train rows); the graph over the d-dim projections proposes k*k_factor candidates,
    rescored exactly at full width by IndexRefineFlat.

    Centring: PCAMatrix maps y = A(v - mean) for items and queries alike, so the graph would
    score (q - mean).(x - mean) = q.x - mean.x + (terms constant per query): the -mean.x term
    differs per item, which is not the inner-product ranking. By default the mean is zeroed
    after training (the basis stays that of the centred covariance): the graph then scores
    q.P x with P the projection onto the top-d components, and since q.P x = q.P mean +
    q.P(x - mean), it ranks items exactly as the projected centred inner product does (q.mean
    terms are per-query constants). --pca-keep-mean keeps FAISS's centring for comparison.
    The refine step is exact either way."""
    family = "faiss-pca-hnsw-refine"

    def build(self, items, threads):
        f = self.faiss
        self.M = self.spec["M"]
        self.efc = self.spec["efConstruction"]
        self.pd = self.spec["pca_dim"]
        self.keep_mean = bool(self.spec.get("pca_keep_mean", False))
        n = items.shape[0]
        if self.pd >= self.d:
            raise SkipFamily(f"--pca-dims {self.pd} must be < d={self.d}")
        ntrain = min(n, self.spec["pca_train"])
        if ntrain < n:
            rows = np.sort(np.random.default_rng(1234).choice(n, ntrain, replace=False))
            sample = np.ascontiguousarray(items[rows], dtype=np.float32)
        else:
            sample = np.ascontiguousarray(items, dtype=np.float32)
        t0 = time.perf_counter()
        pca = f.PCAMatrix(self.d, self.pd)
        # trained on one thread: on the shared 2-core machine the OpenMP-threaded covariance
        # and eigensolver stalled 10-20x (spin-waiting on a descheduled thread); one thread
        # takes ~1.5 s for 10k x 1024
        f.omp_set_num_threads(1)
        pca.train(sample)
        f.omp_set_num_threads(threads)
        del sample
        if not self.keep_mean:
            f.copy_array_to_vector(np.zeros(self.d, dtype=np.float32), pca.mean)
            pca.prepare_Ab()  # A = top-d eigenvectors, b = -A mean = 0
        log(f"[{self.family}] PCA {self.d}->{self.pd} trained on {ntrain} rows in "
            f"{time.perf_counter() - t0:.2f}s; mean {'kept' if self.keep_mean else 'zeroed'}")
        h = f.IndexHNSWFlat(self.pd, self.M, f.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = self.efc
        base = f.IndexPreTransform(pca, h)
        self.index = f.IndexRefineFlat(base)
        self._keep = (h, pca, base)
        self.hnsw = h.hnsw
        self.add_all(items)

    def configs(self):
        out = []
        for kf in self.args.k_factors:
            for ef in self.args.ef_search:
                cfg = {"M": self.M, "efConstruction": self.efc, "efSearch": ef, "k_factor": kf,
                       "pca_dim": self.pd, "pca_centred": self.keep_mean}
                out.append((cfg, f"pca={self.pd}{' centred' if self.keep_mean else ''} M={self.M} "
                                 f"efC={self.efc} ef={ef} kf={kf}"))
        return out

    def counters(self, nq, k):
        # the projection (D*d per query), the graph at d dims, the exact rerank at D dims
        ndis = self.faiss.cvar.hnsw_stats.ndis / nq
        rerank = k * self.kf
        return ndis + rerank, self.d * self.pd + ndis * self.pd + rerank * self.d


class HnswlibRunner(Runner):
    system = "hnswlib"

    def __init__(self, spec, args, d):
        super().__init__(spec, args, d)
        import hnswlib
        self.hnswlib = hnswlib
        self.threads = 1

    def set_threads(self, t):
        self.threads = t
        self.index.set_num_threads(t)

    def build_graph(self, items, dim, threads):
        n = items.shape[0]
        self.M = self.spec["M"]
        self.efc = self.spec["efConstruction"]
        idx = self.hnswlib.Index(space="ip", dim=dim)
        idx.init_index(max_elements=n, M=self.M, ef_construction=self.efc, random_seed=100)
        idx.set_num_threads(threads)
        for s, e in chunks(n):
            idx.add_items(np.ascontiguousarray(items[s:e, :dim], dtype=np.float32),
                          np.arange(s, e), num_threads=threads)
        return idx


class HnswlibFull(HnswlibRunner):
    family = "hnswlib-full"

    def build(self, items, threads):
        self.index = self.build_graph(items, self.d, threads)

    def save(self, directory):
        path = os.path.join(directory, "index.hnswlib")
        self.index.save_index(path)
        return os.path.getsize(path)

    def configs(self):
        return [({"M": self.M, "efConstruction": self.efc, "efSearch": ef},
                 f"M={self.M} efC={self.efc} ef={ef}") for ef in self.args.ef_search]

    def set_config(self, cfg):
        self.index.set_ef(cfg["efSearch"])

    def _q(self, Q, k):
        try:
            labels, _ = self.index.knn_query(Q, k=k, num_threads=self.threads)
        except RuntimeError:  # hnswlib raises when it cannot return k results
            return np.full((Q.shape[0], k), -1, dtype=np.int64)
        return labels.astype(np.int64)

    def search(self, Q, k):
        return self._q(Q, k)

    def search1(self, q, k):
        return self._q(q, k)


class HnswlibPrefixRerank(HnswlibRunner):
    """hnswlib graph (space 'ip') over the first p dims proposes k*k_factor candidates;
    they are rescored exactly at full width with faiss.knn_inner_products_by_idx (a C++
    loop over the candidate rows, no copy; OpenMP over queries in batch calls)."""
    family = "hnswlib-prefix-rerank"

    def build(self, items, threads):
        import faiss
        self.faiss = faiss
        self.index = self.build_graph(items, self.p, threads)
        self.full = np.ascontiguousarray(items, dtype=np.float32)  # copied into RAM
        self.n = self.full.shape[0]

    def save(self, directory):
        path = os.path.join(directory, "index.hnswlib")
        self.index.save_index(path)
        vec = os.path.join(directory, "full.f32")
        self.full.tofile(vec)
        return os.path.getsize(path) + os.path.getsize(vec)

    def set_threads(self, t):
        super().set_threads(t)
        self.faiss.omp_set_num_threads(t)

    def configs(self):
        return prefix_refine_configs(self.args, self.args.k, self.M, self.efc, ef_floor=True)

    def set_config(self, cfg):
        self.index.set_ef(cfg["efSearch"])
        self.kf = cfg["k_factor"]

    def _q(self, Q, k):
        nq = Q.shape[0]
        kk = min(k * self.kf, self.n)
        try:
            cand, _ = self.index.knn_query(np.ascontiguousarray(Q[:, :self.p]), k=kk,
                                           num_threads=self.threads)
        except RuntimeError:
            return np.full((nq, k), -1, dtype=np.int64)
        cand = cand.view(np.int64)  # uint64 -> int64, same bits (ids < 2^63)
        vals = np.empty((nq, k), dtype=np.float32)
        ids = np.empty((nq, k), dtype=np.int64)
        sp = self.faiss.swig_ptr
        self.faiss.knn_inner_products_by_idx(sp(Q), sp(self.full), sp(cand), self.d, nq, self.n,
                                             kk, k, sp(vals), sp(ids), kk)
        return ids

    def search(self, Q, k):
        return self._q(Q, k)

    def search1(self, q, k):
        return self._q(q, k)


class UsearchFull(Runner):
    system = "usearch"
    family = "usearch-full"

    def __init__(self, spec, args, d):
        super().__init__(spec, args, d)
        from usearch.index import Index
        self.Index = Index
        self.threads = 1
        self.computed = 0

    def build(self, items, threads):
        n = items.shape[0]
        self.M = self.spec["M"]
        self.efc = self.spec["efConstruction"]
        self.index = self.Index(ndim=self.d, metric="ip", dtype="f32", connectivity=self.M,
                                expansion_add=self.efc, expansion_search=64)
        for s, e in chunks(n):
            self.index.add(np.arange(s, e, dtype=np.uint64),
                           np.ascontiguousarray(items[s:e], dtype=np.float32), threads=threads)

    def save(self, directory):
        path = os.path.join(directory, "index.usearch")
        self.index.save(path)
        return os.path.getsize(path)

    def set_threads(self, t):
        self.threads = t

    def configs(self):
        return [({"M": self.M, "efConstruction": self.efc, "efSearch": ef},
                 f"connectivity={self.M} expansion_add={self.efc} expansion_search={ef}")
                for ef in self.args.ef_search]

    def set_config(self, cfg):
        self.index.expansion_search = cfg["efSearch"]

    def search(self, Q, k):
        m = self.index.search(Q, k, threads=self.threads)
        keys = np.asarray(m.keys).astype(np.int64)
        counts = np.asarray(m.counts)
        mask = np.arange(k)[None, :] >= counts[:, None]
        keys[mask] = -1
        return keys

    def search1(self, q, k):
        m = self.index.search(q[0], k, threads=1)
        self.computed += m.computed_distances
        keys = np.full((1, k), -1, dtype=np.int64)
        got = np.asarray(m.keys).astype(np.int64)
        keys[0, :got.shape[0]] = got
        return keys

    def counters_reset(self):
        self.computed = 0

    def counters(self, nq, k):
        c = self.computed / nq
        return c, c * self.d


class ScannAH(Runner):
    """ScaNN (PyPI scann), maximum inner product ("dot_product"): k-means tree with
    num_leaves leaves (default round(sqrt(n))), anisotropic asymmetric hashing
    score_ah(2, anisotropic_quantization_threshold=0.2) over the searched leaves, then exact
    float32 reorder of the best `reorder` AH candidates. Sweeps leaves_to_search x reorder.
    One query at a time: searcher.search; batch with one thread: search_batched (reported
    as qps_1_thread_batch); batch with N threads: search_batched_parallel."""
    system = "scann"
    family = "scann-ah"
    tree = True

    def __init__(self, spec, args, d):
        super().__init__(spec, args, d)
        try:
            import scann
            from scann.scann_ops.py import scann_ops_pybind
        except Exception as e:  # noqa: BLE001  (ImportError, or a broken native module)
            raise SkipFamily(f"scann is not importable here: {type(e).__name__}: {e}")
        self.scann_ops_pybind = scann_ops_pybind
        self.version = getattr(scann, "__version__", None)
        self.threads = 1
        self.cur_threads = None

    def build(self, items, threads):
        X = np.ascontiguousarray(items, dtype=np.float32)  # ScaNN copies it into its dataset
        n = X.shape[0]
        self.n = n
        sample = min(n, self.spec["train_sample"])
        self.R_max = max(self.args.scann_reorder)
        b = self.scann_ops_pybind.builder(X, self.args.k, "dot_product")
        if self.tree:
            self.L = self.spec["num_leaves"] or max(1, int(round(math.sqrt(n))))
            b = b.tree(num_leaves=self.L, num_leaves_to_search=max(1, self.L // 10),
                       training_sample_size=sample)
        else:
            self.L = None
        b = b.score_ah(2, anisotropic_quantization_threshold=0.2, training_sample_size=sample)
        b = b.reorder(self.R_max)
        b.set_n_training_threads(threads)
        self.searcher = b.build()
        del X

    def save(self, directory):
        self.searcher.serialize(directory)
        return sum(os.path.getsize(os.path.join(directory, fn)) for fn in os.listdir(directory))

    def configs(self):
        out = []
        if self.tree:
            leaves = sorted({min(self.L, max(1, int(round(fr * self.L))))
                             for fr in self.args.scann_leaf_fractions})
        else:
            leaves = [None]
        for lv in leaves:
            for R in self.args.scann_reorder:
                cfg = {"num_leaves": self.L, "leaves_to_search": lv, "reorder": R,
                       "dims_per_block": 2, "aq_threshold": 0.2}
                if self.tree:
                    label = f"leaves={self.L} search={lv} AH2 reorder={R}"
                else:
                    label = f"no tree, AH2 reorder={R}"
                out.append((cfg, label))
        return out

    def set_config(self, cfg):
        self.lv = -1 if cfg["leaves_to_search"] is None else cfg["leaves_to_search"]
        self.R = cfg["reorder"]

    def set_threads(self, t):
        self.threads = t
        if t > 1 and t != self.cur_threads:
            self.searcher.set_num_threads(t)
            self.cur_threads = t

    @staticmethod
    def _ids(idx, k):
        idx = np.asarray(idx)
        out = np.full((idx.shape[0], k), -1, dtype=np.int64)
        m = min(k, idx.shape[1])
        out[:, :m] = idx[:, :m]
        return out

    def search(self, Q, k):
        pre = max(self.R, k)
        if self.threads <= 1:
            idx, _ = self.searcher.search_batched(Q, k, pre, self.lv)
        else:
            # queries are split into batches of batch_size, one batch per pool thread
            bs = max(1, min(256, math.ceil(Q.shape[0] / (4 * self.threads))))
            idx, _ = self.searcher.search_batched_parallel(Q, k, pre, self.lv, batch_size=bs)
        return self._ids(idx, k)

    def search1(self, q, k):
        idx, _ = self.searcher.search(q[0], final_num_neighbors=k,
                                      pre_reorder_num_neighbors=max(self.R, k),
                                      leaves_to_search=self.lv)
        out = np.full((1, k), -1, dtype=np.int64)
        idx = np.asarray(idx)[:k]
        out[0, :idx.shape[0]] = idx
        return out

    def counters(self, nq, k):
        if self.tree:
            return None, None  # which leaves (how many points) a query scored is not exposed
        # no tree: every item gets an AH score (table lookups, not multiply-adds), then
        # `reorder` exact full-width scores
        return float(self.n + max(self.R, k)), None


class ScannAHFlat(ScannAH):
    """ScaNN without partitioning: AH scores for every item, exact reorder (what ScaNN's
    docs recommend between 20k and 100k items). Opt-in (name it in --only)."""
    family = "scann-ah-flat"
    tree = False


class Symqg(Runner):
    """RaBitQ-Library's SymphonyQG (PyPI rabitqlib, SymqgIndex) with metric 'ip':
    max_degree = --symqg-degree (a multiple of 32), ef_construction = --efc, PiPNN
    initialisation, raw float vectors (quantization_bits 0) unless --symqg-bits says 4/8.
    Sweeps ef (searched with max(ef, k), as the library requires ef >= k). One query at a
    time: search() of a [1, d] array with num_threads=1; batch with one thread: search_batch
    (num_threads=1) reported as qps_1_thread_batch; N threads: search_batch(num_threads=N)."""
    system = "rabitqlib"
    family = "symqg"

    def __init__(self, spec, args, d):
        super().__init__(spec, args, d)
        flags = cpu_flags()
        if flags is not None and "avx2" not in flags:
            raise SkipFamily("rabitqlib's x86-64 wheels need AVX2/FMA; this CPU has no avx2")
        try:
            import rabitqlib
        except Exception as e:  # noqa: BLE001
            raise SkipFamily(f"rabitqlib is not importable here: {type(e).__name__}: {e}")
        if not hasattr(rabitqlib, "SymqgIndex"):
            raise SkipFamily(f"rabitqlib {getattr(rabitqlib, '__version__', '?')} has no SymqgIndex")
        self.rabitqlib = rabitqlib
        self.threads = 1

    def build(self, items, threads):
        self.degree = self.spec["M"]
        self.efc = self.spec["efConstruction"]
        self.bits = self.spec["quantization_bits"]
        X = np.ascontiguousarray(items, dtype=np.float32)  # held by Python during build
        n = X.shape[0]
        if self.degree % 32 or self.degree >= n:
            raise SkipFamily(f"SymqgIndex needs max_degree a multiple of 32 and < n "
                             f"(got {self.degree}, n={n})")
        try:
            self.index = self.rabitqlib.SymqgIndex(self.d, self.degree, metric="ip",
                                                   quantization_bits=self.bits)
        except Exception as e:  # noqa: BLE001
            raise SkipFamily(f"SymqgIndex(metric='ip', quantization_bits={self.bits}) "
                             f"refused: {type(e).__name__}: {e}")
        self.index.build(X, ef_construction=self.efc, num_threads=threads, init="pipnn")
        del X

    def save(self, directory):
        path = os.path.join(directory, "index.symqg")
        self.index.save(path)
        return os.path.getsize(path)

    def configs(self):
        k = self.args.k
        out = []
        for ef in sorted({max(ef, k) for ef in self.args.ef_search}):
            cfg = {"M": self.degree, "efConstruction": self.efc, "efSearch": ef,
                   "quantization_bits": self.bits}
            out.append((cfg, f"degree={self.degree} efC={self.efc} ef={ef} bits={self.bits}"))
        return out

    def set_config(self, cfg):
        self.ef = cfg["efSearch"]

    def set_threads(self, t):
        self.threads = t

    def search(self, Q, k):
        ids, _ = self.index.search_batch(Q, k, max(self.ef, k), num_threads=self.threads)
        return np.asarray(ids).astype(np.int64)

    def search1(self, q, k):
        ids, _ = self.index.search(q, k, max(self.ef, k), num_threads=1)
        return np.asarray(ids).astype(np.int64)


class MrlIndexPy(Runner):
    """mrl-index through its Python package (`pip install ./python`), measured exactly as the
    peers: one query per Python call, one batch call. With --mrl-index DIR it opens the index
    `mrl-index build` made and `mrl-index bench` measured (no build here: build_seconds is
    null) and runs the plans of that bench's rows (--mrl-configs mrl.json), each row then
    carrying the bench's own one-thread q/s (`rust_qps_1_thread`, measured in Rust without
    Python) and `python_overhead_us`; without --mrl-index it builds an index here with the
    package's defaults and runs its default plan."""
    system = "mrl-index"
    family = "mrl-index-py"

    def __init__(self, spec, args, d):
        super().__init__(spec, args, d)
        try:
            import mrl_index
        except ImportError as e:
            raise SkipFamily(f"the mrl_index package is not installed here ({e}); "
                             "tools/peers/setup.sh installs it")
        self.mrl = mrl_index
        self.threads = 1
        self.plan = self.ef = None
        self.built_here = spec.get("index") is None

    def build(self, items, threads):
        if self.spec.get("index"):
            self.index = self.mrl.Index.open(self.spec["index"])
            if len(self.index) != items.shape[0] or self.index.dim != self.d:
                raise SystemExit(f"--mrl-index {self.spec['index']}: {len(self.index)} x "
                                 f"{self.index.dim}, the items are {items.shape}")
        else:
            self.tmp = tempfile.TemporaryDirectory(prefix="mrl-py-", dir=self.args.tmpdir)
            self.index = self.mrl.Index.build(os.path.join(self.tmp.name, "index"),
                                              np.asarray(items), threads=threads)

    def save(self, directory):
        path = self.index.path
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))

    def configs(self):
        out = []
        for c in self.spec.get("configs") or [{}]:
            cfg = {"plan": c.get("plan") or self.index.info()["default_plan"],
                   "ef": c.get("ef") or self.index.info()["default_ef"]}
            if c.get("rust_qps_1_thread"):
                cfg["rust_qps_1_thread"] = c["rust_qps_1_thread"]
            out.append((cfg, f"python: {cfg['plan']} ef={cfg['ef']}"))
        return out

    def set_config(self, cfg):
        self.plan, self.ef = cfg["plan"], cfg["ef"]

    def set_threads(self, t):
        self.threads = t

    @staticmethod
    def _ids(ids):
        out = ids.astype(np.int64)
        out[ids == np.iinfo(np.uint64).max] = -1
        return out

    def search(self, Q, k):
        ids, _ = self.index.search(Q, k, plan=self.plan, ef=self.ef, threads=self.threads)
        return self._ids(ids)

    def search1(self, q, k):
        ids, _ = self.index.search(q, k, plan=self.plan, ef=self.ef, threads=1)
        return self._ids(ids)


def mrl_bench_configs(path, n_items):
    """The plans of `mrl-index bench` rows (cascade and coarse-graph families, beams below the
    catalogue size: the rows with an exact coarse scan are a bench-only mode), with their
    one-thread q/s."""
    with open(path) as f:
        text = f.read()
    rows = json.loads(text) if text.lstrip().startswith("[") else [
        json.loads(ln) for ln in text.splitlines() if ln.strip()]
    out = []
    for r in rows:
        c = r.get("config") or {}
        if r.get("family") in ("cascade", "coarse-graph") and c.get("plan") and \
                c.get("ef") and c["ef"] < n_items and "exact_coarse_queries" not in c:
            out.append({"plan": c["plan"], "ef": c["ef"],
                        "rust_qps_1_thread": r.get("qps_1_thread")})
    return out


RUNNERS = {cls.family: cls for cls in [FaissFlat, FaissHNSW, FaissHNSWPrefixRefine, FaissPanoramaFlat,
                                       FaissPanoramaPrefixRefine, FaissPCAHNSWRefine, HnswlibFull,
                                       HnswlibPrefixRerank, UsearchFull, ScannAH, ScannAHFlat, Symqg,
                                       MrlIndexPy]}


# --------------------------------------------------------------------------- worker

EXACT_FAMILIES = ("faiss-flat-ip", "faiss-panorama-flat-ip")


def spec_text(spec):
    """A spec for the log: a list of plans is shown by its length."""
    return {k: (f"{len(v)} plans" if k == "configs" and v else v) for k, v in spec.items()}


def timed_single(runner, Q, k):
    """One query at a time; returns (ids [nq, k], per-query seconds [nq])."""
    nq = Q.shape[0]
    out = np.empty((nq, k), dtype=np.int64)
    lat = np.empty(nq, dtype=np.float64)
    pc = time.perf_counter
    for i in range(nq):
        q = Q[i:i + 1]
        t0 = pc()
        r = runner.search1(q, k)
        t1 = pc()
        lat[i] = t1 - t0
        out[i] = r[0]
    return out, lat


def worker(args, spec, rows_path):
    """Runs one build and its sweep; a SkipFamily writes its reason to rows_path + '.skip'
    (the driver reports it) and no row."""
    try:
        worker_rows(args, spec, rows_path)
    except SkipFamily as e:
        log(f"[{spec['family']}] SKIPPED: {e}")
        with open(rows_path + ".skip", "w") as f:
            f.write(str(e))


def worker_rows(args, spec, rows_path):
    family = spec["family"]
    cls = RUNNERS[family]
    threads = args.threads_all
    rss0 = proc_status("VmRSS")
    t_start = os.times().elapsed
    log(f"[{family}] worker start, load average {loadavg()} on {machine_string()}")

    if family.startswith("faiss-panorama"):
        import faiss
        missing = [c for c in ("IndexFlatIPPanorama", "IndexRefinePanorama") if not hasattr(faiss, c)]
        if missing:
            raise SkipFamily(f"faiss {faiss.__version__} has no {', '.join(missing)}")

    items = np.load(args.items, mmap_mode="r")
    n, d = items.shape
    Q = np.load(args.queries)
    GT = np.load(args.ground_truth).astype(np.int64)
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    exact = family in EXACT_FAMILIES
    if exact:
        # Exact search scans every item per query: its recall and batch timing use the
        # first --exact-queries queries, its one-thread timing the first
        # --exact-timed-queries of those (as mrl-index bench does for its exact rows).
        Q = Q[:args.exact_queries]
        GT = GT[:args.exact_queries]
    Q1 = Q[:args.exact_timed_queries] if exact else Q
    nq = Q.shape[0]
    k = args.k
    runner = cls(spec, args, d)
    runner_rss_base = proc_status("VmRSS")

    runner_threads = runner.set_threads
    # build with all threads
    if hasattr(runner, "faiss"):
        runner.faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    runner.build(items, threads)
    build_s = time.perf_counter() - t0
    del items
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="peers-", dir=args.tmpdir) as td:
        try:
            index_bytes = runner.save(td)
        except Exception as e:  # noqa: BLE001
            log(f"[{family}] saving the index failed ({e}); index_bytes = null")
            index_bytes = None
    log(f"[{family}] {spec_text(spec)} built in {build_s:.2f}s, {index_bytes} bytes on disk")

    gt100 = GT if GT.shape[1] >= 100 else None
    rss = None
    machine = args.machine
    for ci, (cfg, label) in enumerate(runner.configs()):
        runner.set_config(cfg)
        # warm-up: one batch pass with all threads, one single-thread pass over <= 50 queries
        runner_threads(threads)
        runner.search(Q, k)
        runner_threads(1)
        timed_single(runner, Q[:min(nq, 50)], k)
        if rss is None:
            gc.collect()
            malloc_trim()
            rss = proc_status("VmRSS")
            log(f"[{family}] RSS after warm-up {rss / 2**20:.1f} MiB (process with data "
                f"loaded but no index: {runner_rss_base / 2**20:.1f} MiB; interpreter alone "
                f"{(rss0 or 0) / 2**20:.1f} MiB)")
        # 1 thread, one query at a time
        best_lat = None
        ids10 = None
        cand = madds = None
        for rep in range(args.repeats):
            if rep == 0:
                runner.counters_reset()
            ids, lat = timed_single(runner, Q1, k)
            if rep == 0:
                cand, madds = runner.counters(Q1.shape[0], k)
                ids10 = ids
            if best_lat is None or lat.sum() < best_lat.sum():
                best_lat = lat
        qps1 = Q1.shape[0] / best_lat.sum()
        # all threads, one batch call
        runner_threads(threads)
        best_b = None
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            ids_b = runner.search(Q, k)
            dt = time.perf_counter() - t0
            if exact:
                ids10 = ids_b  # every query (the one-thread pass ran a subset)
            best_b = dt if best_b is None else min(best_b, dt)
        qpsN = nq / best_b
        # one batch call on one thread (every family: FAISS with omp 1 thread, hnswlib and
        # USearch with threads=1, ScaNN's search_batched, SymphonyQG's search_batch(1),
        # mrl-index threads=1)
        qps1b = None
        if getattr(runner, "batch_one_thread", False):
            runner_threads(1)
            best_1b = None
            for rep in range(args.repeats):
                t0 = time.perf_counter()
                runner.search(Q, k)
                dt = time.perf_counter() - t0
                best_1b = dt if best_1b is None else min(best_1b, dt)
            qps1b = nq / best_1b
            runner_threads(threads)
        # recall@100: separate, untimed, same parameters
        r100 = None
        if gt100 is not None:
            ids100 = runner.search(Q, 100)
            if ids100.shape[1] >= 100 and (ids100[:, :100] >= 0).all():
                r100 = recall(ids100, gt100, 100)
        row = {
            "system": cls.system,
            "family": family,
            "config": cfg,
            "label": label,
            "dataset": args.dataset,
            "n_items": int(n),
            "dim": int(d),
            "n_queries": int(nq),
            "k": int(k),
            "recall_at_1": recall(ids10, GT, 1),
            "recall_at_10": recall(ids10, GT, 10) if k >= 10 else None,
            "recall_at_100": r100,
            "qps_1_thread": round(qps1, 3),
            "qps_all_threads": round(qpsN, 3),
            "threads_all": int(threads),
            "p50_us": round(float(np.percentile(best_lat, 50)) * 1e6, 2),
            "p95_us": round(float(np.percentile(best_lat, 95)) * 1e6, 2),
            "p99_us": round(float(np.percentile(best_lat, 99)) * 1e6, 2),
            "candidates_per_query": None if cand is None else round(float(cand), 2),
            "mult_adds_per_query": None if madds is None else round(float(madds), 1),
            "build_seconds": round(build_s, 4) if runner.built_here else None,
            "index_bytes": index_bytes,
            "rss_bytes": rss,
            "machine": machine,
            "timestamp": args.timestamp,
        }
        if qps1b is not None:
            row["qps_1_thread_batch"] = round(qps1b, 3)
            # what one query per call costs over one query of a batch, on one thread: the
            # Python call and per-call setup, plus whatever the library's batch path saves
            row["call_overhead_us"] = round((1 / qps1 - 1 / qps1b) * 1e6, 2)
        if cfg.get("rust_qps_1_thread"):
            # the same plan through Python against `mrl-index bench`'s Rust loop
            row["python_overhead_us"] = round((1 / qps1 - 1 / cfg["rust_qps_1_thread"]) * 1e6, 2)
        log(f"[{family}] {label}: R@1 {row['recall_at_1']:.4f} R@10 {row['recall_at_10']} "
            f"R@100 {r100} qps1 {qps1:.1f}"
            + ("" if qps1b is None else f" qps1-batch {qps1b:.1f}")
            + f" qps{threads} {qpsN:.1f} p50 {row['p50_us']}us")
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
    t = os.times()
    log(f"[{family}] peak RSS (VmHWM) {proc_status('VmHWM')} bytes; CPU {t.user + t.system:.1f}s "
        f"over {t.elapsed - t_start:.1f}s wall; load average {loadavg()}")


# --------------------------------------------------------------------------- driver

def build_specs(args):
    specs = []
    for fam, system in FAMILIES:
        if fam in OPT_IN:
            if not args.only or fam not in args.only:
                continue
        elif args.only and fam not in args.only and system not in args.only:
            continue
        if fam == "faiss-flat-ip":
            specs.append({"family": fam})
        elif fam == "faiss-hnsw-full":
            for efc in args.faiss_efc:
                specs.append({"family": fam, "M": args.M, "efConstruction": efc})
        elif fam == "faiss-panorama-flat-ip":
            for lv in args.panorama_levels:
                specs.append({"family": fam, "n_levels": lv, "batch_size": args.panorama_batch})
        elif fam == "faiss-panorama-prefix-refine":
            specs.append({"family": fam, "M": args.M, "efConstruction": args.efc,
                          "n_levels": args.panorama_refine_levels})
        elif fam == "faiss-pca-hnsw-refine":
            for pd in args.pca_dims:
                specs.append({"family": fam, "M": args.M, "efConstruction": args.efc,
                              "pca_dim": pd, "pca_train": args.pca_train,
                              "pca_keep_mean": args.pca_keep_mean})
        elif fam == "scann-ah":
            for lv in (args.scann_leaves or [0]):  # 0: round(sqrt(n))
                specs.append({"family": fam, "num_leaves": lv,
                              "train_sample": args.scann_train_sample})
        elif fam == "scann-ah-flat":
            specs.append({"family": fam, "train_sample": args.scann_train_sample})
        elif fam == "mrl-index-py":
            configs = None
            if args.mrl_configs:
                n_items = np.load(args.items, mmap_mode="r").shape[0]
                configs = mrl_bench_configs(args.mrl_configs, n_items)
            specs.append({"family": fam, "index": args.mrl_index, "configs": configs})
        elif fam == "symqg":
            for bits in args.symqg_bits:
                specs.append({"family": fam, "M": args.symqg_degree, "efConstruction": args.efc,
                              "quantization_bits": bits})
        else:
            specs.append({"family": fam, "M": args.M, "efConstruction": args.efc})
    return specs


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", required=True, help="float32 [n, d] .npy, C order")
    ap.add_argument("--queries", required=True, help="float32 [nq, d] .npy")
    ap.add_argument("--ground-truth", required=True, help="uint64 [nq, >=100] exact top ids, best first")
    ap.add_argument("-k", "--k", type=int, default=10)
    ap.add_argument("--threads-all", type=int, default=None, help="threads for builds and batch search "
                    "(default: the cores this process may use)")
    ap.add_argument("--out", required=True, help="rows.jsonl")
    ap.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    ap.add_argument("--prefix-dim", type=int, default=64)
    ap.add_argument("--dataset", default=None, help="data set name (default: the items file's directory name)")
    ap.add_argument("--only", default=None, help="comma list of systems and/or families")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per configuration; the best is kept")
    ap.add_argument("--M", type=int, default=32, help="graph degree for every HNSW build (default 32)")
    ap.add_argument("--faiss-efc", "--faiss-efcs", dest="faiss_efc", type=ints, default=[40, 200],
                    help="efConstruction values for faiss-hnsw-full, one build each, in the same "
                    "run (default 40,200; rows carry config.efConstruction)")
    ap.add_argument("--efc", type=int, default=200,
                    help="efConstruction for the other graph builds (default 200)")
    ap.add_argument("--ef-search", type=ints, default=[16, 32, 64, 128, 256, 512, 1024])
    ap.add_argument("--k-factors", type=ints, default=[10, 20, 50, 100, 200])
    ap.add_argument("--panorama-levels", type=ints, default=[8, 16, 32],
                    help="n_levels values for faiss-panorama-flat-ip (one build each)")
    ap.add_argument("--panorama-batch", type=int, default=128)
    ap.add_argument("--panorama-refine-levels", type=int, default=16)
    ap.add_argument("--pca-dims", type=ints, default=[64],
                    help="PCA output dims for faiss-pca-hnsw-refine, one build each (default 64)")
    ap.add_argument("--pca-train", type=int, default=100000,
                    help="items sampled to train the PCA (default 100000; all when fewer)")
    ap.add_argument("--pca-keep-mean", action="store_true",
                    help="keep FAISS PCAMatrix's mean subtraction (queries centred too; not the "
                    "inner-product ranking in the graph); default: mean zeroed after training")
    ap.add_argument("--scann-leaves", type=ints, default=[],
                    help="k-means tree leaves for scann-ah, one build each (default round(sqrt(n)))")
    ap.add_argument("--scann-leaf-fractions", type=floats, default=[0.05, 0.1, 0.2, 0.4, 0.6],
                    help="leaves_to_search as fractions of the leaves (default 0.05,0.1,0.2,0.4,0.6)")
    ap.add_argument("--scann-reorder", type=ints, default=[100, 200, 400],
                    help="exact reorder depths (pre_reorder_num_neighbors; default 100,200,400)")
    ap.add_argument("--scann-train-sample", type=int, default=100000,
                    help="training sample of the tree and of AH (ScaNN's default 100000)")
    ap.add_argument("--symqg-degree", type=int, default=32,
                    help="SymphonyQG max_degree (a multiple of 32; default 32)")
    ap.add_argument("--symqg-bits", type=ints, default=[0],
                    help="SymphonyQG quantization_bits, one build each: 0 raw float, 4, 8 (default 0)")
    ap.add_argument("--exact-queries", type=int, default=1000,
                    help="queries for the exact families' recall and batch timing (the first N)")
    ap.add_argument("--exact-timed-queries", type=int, default=200,
                    help="queries of the exact families' one-thread timing (the first N)")
    ap.add_argument("--tmpdir", default=None, help="where indexes are saved to be measured")
    ap.add_argument("--mrl-index", default=None,
                    help="mrl-index-py: the index directory to open (built from --items by "
                    "`mrl-index build`); default: build one with the package's defaults")
    ap.add_argument("--mrl-configs", default=None,
                    help="mrl-index-py: `mrl-index bench` rows (mrl.json) whose plans to run")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-rows", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--machine", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--timestamp", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads_all is None:
        a.threads_all = len(os.sched_getaffinity(0))
    if a.only:
        a.only = [s.strip() for s in a.only.split(",") if s.strip()]
        known = set(SYSTEM_OF) | set(SYSTEM_OF.values())
        bad = [s for s in a.only if s not in known]
        if bad:
            ap.error(f"--only: unknown {bad}; known: {sorted(known)}")
    if a.dataset is None:
        a.dataset = os.path.basename(os.path.dirname(os.path.abspath(a.items))) or "dataset"
    return a


def check_inputs(a):
    items = np.load(a.items, mmap_mode="r")
    q = np.load(a.queries, mmap_mode="r")
    gt = np.load(a.ground_truth, mmap_mode="r")
    problems = []
    if items.dtype != np.float32 or items.ndim != 2 or not items.flags.c_contiguous:
        problems.append(f"items must be float32 [n, d] C order, got {items.dtype} {items.shape}")
    if q.dtype != np.float32 or q.ndim != 2 or q.shape[1] != items.shape[1]:
        problems.append(f"queries must be float32 [nq, {items.shape[1]}], got {q.dtype} {q.shape}")
    if gt.ndim != 2 or gt.shape[0] != q.shape[0] or gt.dtype.kind not in "ui":
        problems.append(f"ground truth must be integer [{q.shape[0]}, >=100], got {gt.dtype} {gt.shape}")
    elif gt.shape[1] < max(a.k, 10):
        problems.append(f"ground truth has {gt.shape[1]} columns, need >= {max(a.k, 10)}")
    elif gt.shape[1] < 100:
        log(f"note: ground truth has {gt.shape[1]} < 100 columns: recall_at_100 will be null")
    if a.prefix_dim >= items.shape[1]:
        problems.append(f"--prefix-dim {a.prefix_dim} must be < d={items.shape[1]}")
    if problems:
        sys.exit("run_peers.py: " + "; ".join(problems))
    return items.shape, q.shape


def main(argv=None):
    a = parse(argv)
    if a.worker:
        worker(a, json.loads(a.worker), a.worker_rows)
        return
    (n, d), (nq, _) = check_inputs(a)
    a.machine = machine_string()
    a.timestamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    specs = build_specs(a)
    log(f"peers: {a.dataset} n={n} d={d} nq={nq} k={a.k} threads_all={a.threads_all}; "
        f"{len(specs)} builds; machine: {a.machine}")
    if not a.append:
        open(a.out, "w").close()
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(a.threads_all)
    passthrough = ["--items", a.items, "--queries", a.queries, "--ground-truth", a.ground_truth,
                   "-k", str(a.k), "--threads-all", str(a.threads_all), "--out", a.out,
                   "--prefix-dim", str(a.prefix_dim), "--dataset", a.dataset,
                   "--repeats", str(a.repeats), "--M", str(a.M), "--efc", str(a.efc),
                   "--ef-search", ",".join(map(str, a.ef_search)),
                   "--k-factors", ",".join(map(str, a.k_factors)),
                   "--scann-leaf-fractions", ",".join(map(str, a.scann_leaf_fractions)),
                   "--scann-reorder", ",".join(map(str, a.scann_reorder)),
                   "--machine", a.machine, "--timestamp", a.timestamp]
    if a.tmpdir:
        passthrough += ["--tmpdir", a.tmpdir]
    t_all = time.time()
    failed = []
    skipped = []
    total_rows = 0
    for spec in specs:
        with tempfile.NamedTemporaryFile(prefix="peers-rows-", suffix=".jsonl", delete=False) as tf:
            rows_path = tf.name
        cmd = [sys.executable, os.path.abspath(__file__), *passthrough,
               "--worker", json.dumps(spec), "--worker-rows", rows_path]
        t0 = time.time()
        rc = subprocess.call(cmd, env=env)
        with open(rows_path) as f:
            lines = [ln for ln in f if ln.strip()]
        os.unlink(rows_path)
        skip = None
        if os.path.exists(rows_path + ".skip"):
            with open(rows_path + ".skip") as f:
                skip = f.read().strip()
            os.unlink(rows_path + ".skip")
        with open(a.out, "a") as f:
            f.writelines(lines)
        total_rows += len(lines)
        if skip is not None:
            skipped.append((spec["family"], skip))
            log(f"peers: {spec_text(spec)} SKIPPED ({skip}), {time.time() - t0:.1f}s")
        else:
            log(f"peers: {spec_text(spec)} -> {len(lines)} rows, rc={rc}, {time.time() - t0:.1f}s")
        if rc != 0:
            failed.append((spec, rc))
    log(f"peers: {total_rows} rows in {a.out}, {time.time() - t_all:.1f}s total")
    for fam, why in skipped:
        log(f"peers: skipped {fam}: {why}")
    if failed:
        log(f"peers: FAILED builds: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
