"""Building a sharded index: one Ray task per shard, one manifest published at the end.

Data flow::

    ITEMS.npy ──(driver: ids, splitmix64(id) mod N)──> row lists
        ──(Ray task i: reads its rows from ITEMS.npy, mrl_index.Index.build)──> shard-000i-B/
        ──(driver, after every task succeeded)──> shards.json (atomic)

Each task reads the input file itself (memory-mapped), so only row numbers travel through
Ray's object store: on a cluster the input must be on storage every node can read (a shared
file system or a mount of the same object store path). A failed task fails the build: the
other tasks are cancelled, every directory of this build is removed, the previous manifest
(if any) stays published, and the error names the shard and what went wrong.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _manifest
from ._manifest import SHARD_DIR, ShardEntry, ShardManifest
from ._npy import load_npy
from ._ray import cause_of, connect, largest_node
from ._sharding import PADDING_ID, shard_of

LOCK = "LOCK"
_TEMP = re.compile(r"^\.shards-.*\.json\.tmp$")


class ShardBuildError(RuntimeError):
    """A sharded build failed; the message names the shard (if one) and the cause. Nothing
    was published."""


@dataclass
class BuildSettings:
    """The settings every shard is built with (those of ``mrl_index.Index.build``)."""

    widths: Optional[List[int]] = None
    coarse_dim: int = 64
    m: int = 16
    ef_construction: int = 200
    seed: int = 42
    #: Search/build threads inside each shard task (default: its CPUs).
    threads: Optional[int] = None
    #: A ``.npy`` of sample user queries each shard tunes its default plan on.
    sample_queries: Optional[str] = None


def _load_matrix(path: str, what: str) -> np.ndarray:
    a = load_npy(path, what, ShardBuildError, mmap=True)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ShardBuildError(f"{what} {path}: expected a non-empty 2-D array, found shape {a.shape}")
    if a.dtype not in (np.float32, np.float16, np.float64):
        raise ShardBuildError(f"{what} {path}: expected float32 (or float16/float64), found {a.dtype}")
    return a


def _load_ids(path: str, n: int) -> np.ndarray:
    ids = load_npy(path, "ids", ShardBuildError)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ShardBuildError(f"ids {path}: expected shape ({n},) (one per item), found {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise ShardBuildError(f"ids {path}: expected integers, found {ids.dtype}")
    if ids.dtype.kind == "i" and n and ids.min() < 0:
        raise ShardBuildError(f"ids {path}: negative id {int(ids.min())}")
    ids = ids.astype(np.uint64)
    if n and ids.max() == PADDING_ID:
        raise ShardBuildError(f"ids {path}: id 2**64-1 is reserved (padding of short answers)")
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.shape[0] != n:
        raise ShardBuildError(f"ids {path}: id {int(uniq[counts > 1][0])} appears more than once")
    return ids


def _prepare_dir(out: Path, force: bool) -> Optional[ShardManifest]:
    """Checks that ``out`` is a sharded index's own directory, removes what a crashed build
    left there, and returns the published manifest (None if none)."""
    published = None
    if (out / _manifest.FILE).exists():
        published = _manifest.read(out)
        if not force:
            raise ShardBuildError(
                f"{out} already holds a sharded index ({len(published.shards)} shards, "
                f"{published.items} items); pass force=True (--force) to replace it"
            )
    keep = {s.dir for s in published.shards} if published else set()
    foreign = []
    for entry in sorted(os.listdir(out)):
        if entry in (_manifest.FILE, LOCK) or entry in keep:
            continue
        if SHARD_DIR.match(entry) or _TEMP.match(entry):
            # a crashed or failed build's leftovers: never published, nobody reads them
            p = out / entry
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        else:
            foreign.append(entry)
    if foreign:
        raise ShardBuildError(
            f"{out} holds files that are not a sharded index's ({', '.join(foreign[:5])}); "
            "a sharded index needs a directory of its own"
        )
    return published


def _build_shard(
    items_path: str,
    rows: np.ndarray,
    ids: np.ndarray,
    shard_dir: str,
    settings: Dict[str, Any],
) -> Dict[str, Any]:
    """The body of one shard's Ray task (runs on a worker)."""
    import mrl_index

    t0 = time.perf_counter()
    items = np.load(items_path, mmap_mode="r")
    if rows.shape[0] == items.shape[0] and items.dtype == np.float32:
        vectors = items  # every row (rows are sorted and unique): the mapped file, no copy
    else:
        vectors = np.ascontiguousarray(items[rows], dtype=np.float32)
    sample = settings.get("sample_queries")
    queries = np.load(sample) if sample else None
    index = mrl_index.Index.build(
        shard_dir,
        vectors,
        ids,
        widths=settings.get("widths"),
        coarse_dim=settings["coarse_dim"],
        m=settings["m"],
        ef_construction=settings["ef_construction"],
        seed=settings["seed"],
        threads=settings.get("threads"),
        sample_queries=queries,
    )
    info = index.info()
    size = sum(f.stat().st_size for f in Path(shard_dir).iterdir() if f.is_file())
    return {
        "items": len(index),
        "dim": index.dim,
        "widths": index.widths,
        "bytes": size,
        "manifest_sha256": _manifest.manifest_sha256(Path(shard_dir)),
        "build_seconds": time.perf_counter() - t0,
        "default_plan": info.get("default_plan"),
    }


def build(
    items: str,
    out: str,
    shards: int,
    *,
    ids: Optional[str] = None,
    settings: Optional[BuildSettings] = None,
    address: Optional[str] = None,
    cpus_per_shard: Optional[float] = None,
    memory_per_shard: Optional[int] = None,
    force: bool = False,
    log: Any = sys.stderr,
) -> ShardManifest:
    """Builds a sharded index of the ``.npy`` matrix ``items`` into directory ``out``.

    Items go to shard ``splitmix64(id) mod shards``; ``ids`` is a ``.npy`` of one unique
    non-negative integer per row (default: the row numbers). Each shard is an ordinary
    mrl-index directory built by one Ray task that declares ``cpus_per_shard`` CPUs (default:
    the largest node's CPUs divided by ``shards``, at least 1) and ``memory_per_shard`` bytes
    (default: an estimate from its rows). ``address``: a running Ray cluster; None starts a
    local one. Returns the published manifest; raises ShardBuildError (nothing published)."""
    settings = settings or BuildSettings()
    if shards < 1:
        raise ShardBuildError(f"shards must be at least 1, not {shards}")
    matrix = _load_matrix(items, "items")
    n, dim = matrix.shape
    if n < shards:
        raise ShardBuildError(f"items {items}: {n} items cannot fill {shards} shards")
    if settings.sample_queries:
        q = _load_matrix(settings.sample_queries, "sample queries")
        if q.shape[1] != dim:
            raise ShardBuildError(
                f"sample queries {settings.sample_queries}: dimension {q.shape[1]}, "
                f"the items have {dim}"
            )
    item_ids = _load_ids(ids, n) if ids else np.arange(n, dtype=np.uint64)
    assignment = shard_of(item_ids, shards)
    rows = [np.flatnonzero(assignment == s) for s in range(shards)]
    empty = [s for s, r in enumerate(rows) if r.shape[0] == 0]
    if empty:
        raise ShardBuildError(f"shard {empty[0]} would get no items ({n} items, {shards} shards)")

    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    lock = open(out_path / LOCK, "a+")
    try:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShardBuildError(f"{out}: another build holds {out_path / LOCK}") from None
        published = _prepare_dir(out_path, force)
        ray, started = connect(address)
        try:
            return _run(
                ray, matrix, items, item_ids, rows, out_path, published, settings,
                ids is not None, cpus_per_shard, memory_per_shard, log,
            )
        finally:
            if started:
                ray.shutdown()
    finally:
        lock.close()


def _run(
    ray: Any,
    matrix: np.ndarray,
    items: str,
    item_ids: np.ndarray,
    rows: Sequence[np.ndarray],
    out: Path,
    published: Optional[ShardManifest],
    settings: BuildSettings,
    ids_given: bool,
    cpus_per_shard: Optional[float],
    memory_per_shard: Optional[int],
    log: Any,
) -> ShardManifest:
    shards = len(rows)
    n, dim = matrix.shape
    node_cpus = largest_node(ray, "CPU")
    cpus = cpus_per_shard if cpus_per_shard else max(1.0, float(int(node_cpus // shards)))
    if cpus > node_cpus:
        raise ShardBuildError(f"each shard task asks for {cpus} CPUs; the largest node has {node_cpus}")
    threads = settings.threads or max(1, int(cpus))
    largest = max(r.shape[0] for r in rows)
    # the rows as float32, the build's copy of them, the graph and the learned space's fit
    estimate = 2 * largest * dim * 4 + largest * settings.m * 2 * 4 + (256 << 20)
    memory = memory_per_shard or estimate
    node_memory = largest_node(ray, "memory")
    if node_memory and memory > node_memory:
        raise ShardBuildError(
            f"each shard task asks for {memory / 2**30:.1f} GiB; the largest node offers "
            f"{node_memory / 2**30:.1f} GiB (use more shards, or set memory_per_shard)"
        )
    build_id = secrets.token_hex(4)
    dirs = [out / f"shard-{s:04d}-{build_id}" for s in range(shards)]
    spec = asdict(settings)
    spec["threads"] = threads
    if settings.sample_queries:
        spec["sample_queries"] = str(Path(settings.sample_queries).resolve())
    task = ray.remote(_build_shard).options(num_cpus=cpus, memory=memory, max_retries=1)
    t0 = time.perf_counter()
    absolute = str(Path(items).resolve())
    pending = {
        task.remote(absolute, rows[s], item_ids[rows[s]], str(dirs[s]), spec): s
        for s in range(shards)
    }
    print(
        f"building {shards} shard(s) of {n:,} items (build {build_id}): "
        f"{cpus:g} CPUs, {memory / 2**30:.1f} GiB, {threads} thread(s) per task",
        file=log,
    )
    results: Dict[int, Dict[str, Any]] = {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            s = pending.pop(ref)
            try:
                results[s] = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - any task failure fails the build
                raise ShardBuildError(f"shard {s} ({dirs[s].name}) failed: {cause_of(e)}") from None
            r = results[s]
            print(
                f"shard {s}: {r['items']:,} items in {r['build_seconds']:.1f} s "
                f"({len(results)}/{shards} done)",
                file=log,
            )
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=30)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        raise
    wall = time.perf_counter() - t0
    first = results[0]
    build_info = {
        "widths": first["widths"],
        "coarse_dim": settings.coarse_dim,
        "m": settings.m,
        "ef_construction": settings.ef_construction,
        "seed": settings.seed,
        "threads_per_shard": threads,
        "cpus_per_shard": cpus,
        "memory_per_shard": memory,
        "sample_queries": settings.sample_queries,
        "input": absolute,
        "wall_seconds": round(wall, 3),
    }
    manifest = ShardManifest(
        build_id=build_id,
        shards=[
            ShardEntry(
                shard=s,
                dir=dirs[s].name,
                items=results[s]["items"],
                manifest_sha256=results[s]["manifest_sha256"],
                bytes=results[s]["bytes"],
                build_seconds=round(results[s]["build_seconds"], 3),
            )
            for s in range(shards)
        ],
        items=n,
        dim=dim,
        widths=list(first["widths"]),
        ids="given" if ids_given else "rows",
        build=build_info,
    )
    try:
        _manifest.write(out, manifest)
    except BaseException:
        if not (out / _manifest.FILE).exists() or _manifest.read(out).build_id != build_id:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
        raise
    if published:
        # replaced: the old build's shards are no longer named by any manifest
        for old in published.shards:
            shutil.rmtree(out / old.dir, ignore_errors=True)
    print(f"published {out / _manifest.FILE}: {shards} shard(s) in {wall:.1f} s", file=log)
    return manifest
