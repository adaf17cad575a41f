"""Scale-out on one machine: the same items built and searched as 1, 2, 4, ... shards on a
local Ray cluster (``mrl_index.distributed``).

    python python/bench/scale_out.py --items ITEMS.npy --queries Q.npy --truth GT.npy \
        --sample-queries S.npy --work DIR --shards 1,2,4 > results.jsonl

For each shard count: the build's wall time (and each shard task's), the time to open the
shard actors, batch throughput (best of ``--rounds``), one-query-at-a-time latency (p50,
p99), recall@k against ``--truth`` (ids = row numbers), and exact search on a few queries
checked against the truth. One JSON object per shard count on stdout; a Markdown table on
stderr. Each index is deleted after its measurement unless ``--keep``.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import mrl_index
from mrl_index import distributed as dist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--truth", required=True, help="ground-truth ids [n, >=k] (row numbers)")
    p.add_argument("--sample-queries")
    p.add_argument("--work", required=True)
    p.add_argument("--shards", default="1,2,4")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--exact-queries", type=int, default=20)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()

    import ray

    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    queries = np.load(a.queries)
    truth = np.load(a.truth)[:, : a.k].astype(np.uint64)
    rows = []
    for shards in [int(s) for s in a.shards.split(",")]:
        out = Path(a.work) / f"shards-{shards}"
        if out.exists():
            shutil.rmtree(out)
        settings = dist.BuildSettings(sample_queries=a.sample_queries)
        t0 = time.perf_counter()
        manifest = dist.build(a.items, str(out), shards, settings=settings)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = dist.ShardedIndex.open(out)
        open_s = time.perf_counter() - t0
        index.search(queries[:64], a.k)  # warm the page cache and the actors
        best = float("inf")
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            found, _ = index.search(queries, a.k)
            best = min(best, time.perf_counter() - t0)
        recall = mrl_index.recall_at_k(found, truth)
        lat = []
        for q in queries[: a.latency_queries]:
            t0 = time.perf_counter()
            index.search(q[None, :], a.k)
            lat.append(time.perf_counter() - t0)
        n_exact = a.exact_queries
        t0 = time.perf_counter()
        exact, _ = index.search(queries[:n_exact], a.k, exact=True)
        exact_s = time.perf_counter() - t0
        exact_recall = mrl_index.recall_at_k(exact, truth[:n_exact])
        index.close()
        local = {}
        if shards == 1:
            # the same shard searched in this process, without Ray: Ray's share of the cost
            one = mrl_index.Index.open(out / manifest.shards[0].dir)
            one.search(queries[:64], a.k)
            t_best = float("inf")
            for _ in range(a.rounds):
                t0 = time.perf_counter()
                one.search(queries, a.k)
                t_best = min(t_best, time.perf_counter() - t0)
            one_lat = []
            for q in queries[: a.latency_queries]:
                t0 = time.perf_counter()
                one.search(q[None, :], a.k, threads=1)
                one_lat.append(time.perf_counter() - t0)
            local = {
                "in_process_qps": round(queries.shape[0] / t_best, 1),
                "in_process_p50_ms": round(1e3 * float(np.percentile(one_lat, 50)), 2),
                "in_process_p99_ms": round(1e3 * float(np.percentile(one_lat, 99)), 2),
            }
            del one
        merge_in = (
            np.random.default_rng(0).integers(0, 2**40, (1000, 100 * a.k)).astype(np.uint64),
            np.random.default_rng(1).standard_normal((1000, 100 * a.k)).astype(np.float32),
        )
        t0 = time.perf_counter()
        dist.merge_top_k(*merge_in, a.k)
        merge_100_shards_us = 1e6 * (time.perf_counter() - t0) / 1000
        row = {
            "shards": shards,
            "items": manifest.items,
            "shard_items": [s.items for s in manifest.shards],
            "build_wall_s": round(build_s, 1),
            "shard_build_s": [round(s.build_seconds, 1) for s in manifest.shards],
            "cpus_per_shard_build": manifest.build["cpus_per_shard"],
            "default_plans": None,
            "open_s": round(open_s, 2),
            "queries": int(queries.shape[0]),
            "qps": round(queries.shape[0] / best, 1),
            "recall": round(recall, 4),
            "latency_p50_ms": round(1e3 * float(np.percentile(lat, 50)), 2),
            "latency_p99_ms": round(1e3 * float(np.percentile(lat, 99)), 2),
            "exact_queries": n_exact,
            "exact_s_per_query": round(exact_s / n_exact, 3),
            "exact_recall": round(exact_recall, 4),
            "bytes": sum(s.bytes for s in manifest.shards),
            "merge_us_per_query_100_shards": round(merge_100_shards_us, 1),
            **local,
        }
        row["default_plans"] = [
            mrl_index.Index.open(out / s.dir).info()["default_plan"] for s in manifest.shards
        ]
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not a.keep:
            shutil.rmtree(out)
    ray.shutdown()
    print("| shards | build wall (s) | shard builds (s) | q/s (batch) | recall@10 | "
          "p50 / p99 one query (ms) | exact s/query |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(f"| {r['shards']} | {r['build_wall_s']} | {r['shard_build_s']} | {r['qps']} | "
              f"{r['recall']} | {r['latency_p50_ms']} / {r['latency_p99_ms']} | "
              f"{r['exact_s_per_query']} |", file=sys.stderr)


if __name__ == "__main__":
    main()
