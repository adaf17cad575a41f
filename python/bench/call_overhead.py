"""What one query per Python call costs over the library's own loop, and batch q/s.

    python python/bench/call_overhead.py INDEX_DIR QUERIES.npy [--passes 7]

Interleaved passes over all queries, best of N each: one batch call on one thread (the
library loops over the queries in Rust), one Python call per query (a 1-d float32 row), one
batch call on two threads. The difference of the first two, per query, is Python's cost per
call.
"""
import argparse
import time

import numpy as np

import mrl_index


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("queries")
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("-k", type=int, default=10)
    a = ap.parse_args()
    idx = mrl_index.Index.open(a.index)
    q = np.ascontiguousarray(np.load(a.queries), dtype=np.float32)
    n, k = len(q), a.k
    idx.search(q, k=k, threads=1)  # warm: the mapped index in memory
    best = {"batch1": float("inf"), "single": float("inf"), "batch2": float("inf")}
    pc = time.perf_counter
    for _ in range(a.passes):
        t = pc()
        idx.search(q, k=k, threads=1)
        best["batch1"] = min(best["batch1"], pc() - t)
        t = pc()
        for row in q:
            idx.search(row, k=k)
        best["single"] = min(best["single"], pc() - t)
        t = pc()
        idx.search(q, k=k, threads=2)
        best["batch2"] = min(best["batch2"], pc() - t)
    b1, s1, b2 = (best[x] / n for x in ("batch1", "single", "batch2"))
    print(f"{n} queries, k={k}, best of {a.passes} interleaved passes")
    print(f"batch, 1 thread:          {1 / b1:8.0f} q/s  {b1 * 1e6:7.1f} us/query")
    print(f"one query per call:       {1 / s1:8.0f} q/s  {s1 * 1e6:7.1f} us/query")
    print(f"Python's cost per call:   {(s1 - b1) * 1e6:7.1f} us ({(s1 / b1 - 1) * 100:+.1f}%)")
    print(f"batch, 2 threads:         {1 / b2:8.0f} q/s")


if __name__ == "__main__":
    main()
