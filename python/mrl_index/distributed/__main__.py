"""``python -m mrl_index.distributed``: build, search, check and serve a sharded index.

Errors print one line, ``error: ...``, and exit 1 (usage errors: 2); never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, List, Optional

import numpy as np

from ._build import BuildSettings, ShardBuildError, build
from ._manifest import ShardManifestError
from ._manifest import read as read_manifest
from ._npy import load_npy
from ._search import ShardedIndex, ShardUnavailable
from ._sharding import PADDING_ID
from ._verify import verify


def _widths(text: str) -> List[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}")
    if not widths:
        raise argparse.ArgumentTypeError("no widths given")
    return widths


def _positive(kind: Any) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mrl_index.distributed",
        description="A sharded mrl-index on Ray: items split by splitmix64(id) mod shards, "
        "every query sent to every shard, answers merged by exact score.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a sharded index (one Ray task per shard)")
    b.add_argument("--input", required=True, help="items, float32 .npy [n, dim]")
    b.add_argument("--ids", help="one unique non-negative integer id per item (.npy); "
                   "default: row numbers")
    b.add_argument("--shards", required=True, type=_positive(int))
    b.add_argument("--out", required=True, help="directory of the sharded index")
    b.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    b.add_argument("--sample-queries", help="user queries (.npy) each shard tunes its "
                   "default plan and learned coarse space on")
    b.add_argument("--widths", type=_widths, help="Matryoshka widths, e.g. 64,128,256,1024")
    b.add_argument("--coarse-dim", type=_positive(int), default=64)
    b.add_argument("--m", type=_positive(int), default=16, help="HNSW M")
    b.add_argument("--ef-construction", type=_positive(int), default=200)
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--threads", type=_positive(int), help="build threads per shard task "
                   "(default: its CPUs)")
    b.add_argument("--cpus-per-shard", type=_positive(float), help="CPUs each shard task "
                   "declares (default: the largest node's CPUs / shards, at least 1)")
    b.add_argument("--memory-per-shard", type=_positive(float), help="GiB each shard task "
                   "declares (default: estimated from its rows)")
    b.add_argument("--force", action="store_true", help="replace a sharded index in --out")
    b.add_argument("--json", action="store_true", help="print the manifest as JSON")

    s = sub.add_parser("search", help="search a sharded index (one Ray actor per shard)")
    s.add_argument("--index", required=True)
    s.add_argument("--queries", required=True, help="float32 .npy [n, dim]")
    s.add_argument("-k", type=_positive(int), default=10)
    s.add_argument("--exact", action="store_true", help="exact search on every shard "
                   "(the merged answer is exact search over all items)")
    s.add_argument("--json", action="store_true", help='one line per query: {"query": i, '
                   '"ids": [...], "scores": [...]}')
    s.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    s.add_argument("--width", type=_positive(int), help="answer as this Matryoshka width")
    s.add_argument("--plan", help="cascade plan (default: each shard's tuned default)")
    s.add_argument("--ef", type=_positive(int), help="beam width of the coarse graph search")
    s.add_argument("--allow-partial", action="store_true", help="answer from the shards "
                   "that can, and say which could not (default: fail)")
    s.add_argument("--timeout", type=_positive(float), help="seconds every shard may take "
                   "for the whole query set before it counts as unavailable")
    s.add_argument("--cpus-per-shard", type=_positive(float))
    s.add_argument("--threads", type=_positive(int), help="search threads per shard actor")
    s.add_argument("--batch", type=_positive(int), default=1024, help="queries per call")
    s.add_argument("--truth", help="ground-truth ids .npy [n, >=k]: print recall@k")
    s.add_argument("--max-restarts", type=int, default=3, help="restarts of a shard actor")

    i = sub.add_parser("info", help="print the shard manifest")
    i.add_argument("--index", required=True)
    i.add_argument("--json", action="store_true")

    v = sub.add_parser("verify", help="check every shard's checksums and structure")
    v.add_argument("--index", required=True)

    h = sub.add_parser("serve", help="serve the sharded index over HTTP with Ray Serve "
                       "(POST /v1/search, the JSON of `mrl-index serve`)")
    h.add_argument("--index", required=True)
    h.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=_positive(int), default=8000)
    h.add_argument("--max-k", type=_positive(int), default=1000)
    return p


def _cmd_build(a: argparse.Namespace) -> int:
    settings = BuildSettings(
        widths=a.widths,
        coarse_dim=a.coarse_dim,
        m=a.m,
        ef_construction=a.ef_construction,
        seed=a.seed,
        threads=a.threads,
        sample_queries=a.sample_queries,
    )
    memory = int(a.memory_per_shard * 2**30) if a.memory_per_shard else None
    manifest = build(
        a.input, a.out, a.shards, ids=a.ids, settings=settings, address=a.address,
        cpus_per_shard=a.cpus_per_shard, memory_per_shard=memory, force=a.force,
    )
    if a.json:
        print(json.dumps(manifest.to_json()))
    return 0


def _load_queries(path: str, dim: int) -> np.ndarray:
    q = load_npy(path, "queries", ValueError)
    if q.ndim != 2 or q.shape[1] != dim or q.dtype.kind != "f":
        raise ValueError(
            f"queries {path}: expected float [n, {dim}] (the index's dimension), "
            f"found {q.dtype} {list(q.shape)}"
        )
    return q


def _cmd_search(a: argparse.Namespace) -> int:
    manifest = read_manifest(a.index)
    queries = _load_queries(a.queries, manifest.dim)
    truth = None
    if a.truth:
        truth = load_npy(a.truth, "truth", ValueError)
        if truth.ndim != 2 or truth.shape[0] != queries.shape[0] or truth.shape[1] < a.k:
            raise ValueError(
                f"truth {a.truth}: expected [{queries.shape[0]}, >= {a.k}] ids, "
                f"found {list(truth.shape)}"
            )
    with ShardedIndex.open(
        a.index, address=a.address, cpus_per_shard=a.cpus_per_shard, threads=a.threads,
        max_restarts=a.max_restarts, timeout=a.timeout, batch=a.batch,
        allow_partial=a.allow_partial,
    ) as index:
        t0 = time.perf_counter()
        kwargs = dict(exact=a.exact, width=a.width, plan=a.plan, ef=a.ef)
        if a.allow_partial:
            ids, scores, missing = index.search_partial(queries, a.k, **kwargs)
        else:
            ids, scores = index.search(queries, a.k, **kwargs)
            missing = {}
        secs = time.perf_counter() - t0
    out = sys.stdout
    for qi in range(ids.shape[0]):
        keep = ids[qi] != PADDING_ID
        row_ids = [int(x) for x in ids[qi][keep]]
        row_scores = [float(x) for x in scores[qi][keep]]
        if a.json:
            line: dict = {"query": qi, "ids": row_ids, "scores": row_scores}
            if missing:
                line["missing_shards"] = sorted(missing)
            out.write(json.dumps(line) + "\n")
        else:
            hits = " ".join(f"{i}:{s:.4f}" for i, s in zip(row_ids, row_scores))
            out.write(f"query {qi}: {hits}\n")
    out.flush()
    n = ids.shape[0]
    mode = "exact" if a.exact else "cascade"
    print(
        f"{n} queries in {secs:.3f}s ({n / max(secs, 1e-9):.0f} queries/s) over "
        f"{len(manifest.shards)} shard(s), {mode}",
        file=sys.stderr,
    )
    if truth is not None:
        import mrl_index

        recall = mrl_index.recall_at_k(ids, truth[:, : a.k].astype(np.uint64))
        print(f"recall@{a.k} = {recall:.4f}", file=sys.stderr)
    if missing:
        listed = "; ".join(f"shard {s}: {r}" for s, r in sorted(missing.items()))
        print(f"warning: partial answers, {len(missing)} shard(s) missing ({listed})",
              file=sys.stderr)
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    manifest = read_manifest(a.index)
    if a.json:
        print(json.dumps(manifest.to_json()))
        return 0
    print(f"{a.index}: {manifest.items:,} items, dim {manifest.dim}, widths {manifest.widths}, "
          f"{len(manifest.shards)} shard(s) by {manifest.scheme}(id), ids {manifest.ids}")
    for s in manifest.shards:
        print(f"  shard {s.shard}: {s.dir}, {s.items:,} items, {s.bytes / 2**20:.1f} MiB, "
              f"built in {s.build_seconds:.1f} s")
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    bad = 0
    for r in verify(a.index):
        if r["ok"]:
            print(f"shard {r['shard']} ({r['dir']}): ok")
        else:
            bad += 1
            print(f"shard {r['shard']} ({r['dir']}): {r['error']}")
    if bad:
        print(f"error: {bad} shard(s) failed verification", file=sys.stderr)
        return 1
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from .serve import run

    run(a.index, address=a.address, host=a.host, port=a.port, max_k=a.max_k)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    a = _parser().parse_args(argv)
    commands = {
        "build": _cmd_build,
        "search": _cmd_search,
        "info": _cmd_info,
        "verify": _cmd_verify,
        "serve": _cmd_serve,
    }
    try:
        return commands[a.command](a)
    except (ShardBuildError, ShardManifestError, ShardUnavailable, ValueError, OSError,
            ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
