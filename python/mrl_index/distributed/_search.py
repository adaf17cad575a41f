"""Searching a sharded index: one long-lived Ray actor per shard, scatter and merge.

Data flow::

    queries ──ray.put──> every shard actor (mrl_index.Index, memory-mapped, opened once)
        ──each: its top-k (cascade, or exact)──> driver ──merge by score──> global top-k

The final scores of mrl-index are exact full-width inner products, so merging per-shard
top-k lists by score loses nothing: with ``exact=True`` the merged answer is exact search
over all items. An actor that dies is restarted by Ray (``max_restarts``) and the calls it
had not answered are retried (``max_task_retries``); a shard that still cannot answer makes
``search`` raise ShardUnavailable naming it. Only ``search_partial`` answers without some
shards, and it says which.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import numpy.typing as npt

from . import _manifest
from ._manifest import ShardManifest
from ._ray import cause_of, connect, largest_node
from ._sharding import merge_top_k


class ShardUnavailable(RuntimeError):
    """Some shards could not answer (after Ray's restarts and retries). ``missing`` maps
    each such shard's number to the reason."""

    def __init__(self, missing: Dict[int, str]):
        self.missing = dict(missing)
        listed = "; ".join(f"shard {s}: {r}" for s, r in sorted(self.missing.items()))
        super().__init__(
            f"{len(self.missing)} shard(s) unavailable, no answer given ({listed}); "
            "search_partial (--allow-partial) answers from the others"
        )


class PartialAnswer(NamedTuple):
    """``search_partial``'s answer: ids and scores from the shards that answered, and the
    shards that did not (number -> reason; empty when every shard answered)."""

    ids: npt.NDArray[np.uint64]
    scores: npt.NDArray[np.float32]
    missing: Dict[int, str]


class ShardActor:
    """One shard, opened once and kept: the body of a Ray actor (created by ShardedIndex)."""

    def __init__(self, shard_dir: str, manifest_sha256: str, threads: int):
        import mrl_index

        path = Path(shard_dir)
        try:
            actual = _manifest.manifest_sha256(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}/MANIFEST: no such file (shard missing)") from None
        if actual != manifest_sha256:
            raise ValueError(
                f"{path}/MANIFEST: SHA-256 {actual[:16]}..., shards.json records "
                f"{manifest_sha256[:16]}... (the shard was replaced or damaged)"
            )
        self.index = mrl_index.Index.open(path)
        self.threads = threads

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exact: bool,
        params: Dict[str, Any],
    ) -> tuple:
        """This shard's top-k of every query."""
        if exact:
            return self.index.exact_search(
                queries, k, params.get("width"), threads=self.threads
            )
        return self.index.search(queries, k, threads=self.threads, **params)


_DEAD = (
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "NodeDiedError",
    "GetTimeoutError",
    "TaskCancelledError",
)


def _is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the shard could not answer (as opposed to a bad request)."""
    return any(c.__name__ in _DEAD for c in type(error).__mro__)


def _reason(error: BaseException) -> str:
    text = str(cause_of(error)).strip()
    # Ray's messages carry tracebacks; the last line is the cause
    lines = [line for line in text.splitlines() if line.strip()]
    tail = [line for line in lines if "Error" in line or "error" in line]
    return (tail[-1] if tail else lines[-1] if lines else type(error).__name__).strip()[:400]


class ShardedIndex:
    """A sharded index directory served by one Ray actor per shard.

    ``ShardedIndex.open(dir)`` reads ``shards.json`` and starts the actors; ``search``
    scatters queries to every shard and merges the answers. Use it as a context manager, or
    call ``close()``, to stop the actors."""

    def __init__(
        self,
        path: Path,
        manifest: ShardManifest,
        ray: Any,
        actors: List[Any],
        started: bool,
        timeout: Optional[float],
        batch: int,
    ):
        self.path = path
        self.manifest = manifest
        self._ray = ray
        self._actors = actors
        self._started = started
        self.timeout = timeout
        self.batch = batch
        self._down: Dict[int, str] = {}

    @classmethod
    def open(
        cls,
        path: Any,
        *,
        address: Optional[str] = None,
        cpus_per_shard: Optional[float] = None,
        threads: Optional[int] = None,
        max_restarts: int = 3,
        timeout: Optional[float] = None,
        batch: int = 1024,
        allow_partial: bool = False,
        start_timeout: float = 300.0,
    ) -> "ShardedIndex":
        """Opens the sharded index at ``path`` on the Ray cluster at ``address`` (None: a local
        one, started here and stopped by ``close``).

        Each shard's actor declares ``cpus_per_shard`` CPUs (default: the largest node's CPUs
        divided by the shards; a fraction is fine) and searches with
        ``threads`` threads (default: its CPUs, at least 1). A shard that cannot open, or
        whose actor is not running within ``start_timeout`` seconds (a cluster without the
        CPUs asked for), raises ShardUnavailable unless ``allow_partial``. ``timeout``:
        seconds a shard may take per search call before it counts as unavailable."""
        path = Path(path)
        manifest = _manifest.read(path)
        ray, started = connect(address)
        actors: List[Any] = []
        try:
            shards = len(manifest.shards)
            node_cpus = largest_node(ray, "CPU")
            cpus = cpus_per_shard if cpus_per_shard is not None else node_cpus / shards
            cpus = min(cpus, node_cpus) if node_cpus else cpus
            cpus = math.floor(cpus * 10_000) / 10_000  # Ray's resource precision
            n_threads = threads or max(1, int(cpus))
            remote = ray.remote(ShardActor).options(
                num_cpus=cpus,
                max_restarts=max_restarts,
                max_task_retries=max_restarts,
            )
            for s in manifest.shards:
                actors.append(remote.remote(str(path / s.dir), s.manifest_sha256, n_threads))
            index = cls(path, manifest, ray, actors, started, timeout, batch)
            index._down = index._ping(start_timeout)
            if index._down and not allow_partial:
                raise ShardUnavailable(index._down)
            return index
        except BaseException:
            for a in actors:  # the shards that did open: nobody will search them
                ray.kill(a)
            if started:
                ray.shutdown()
            raise

    def _ping(self, start_timeout: float) -> Dict[int, str]:
        refs = [a.pid.remote() for a in self._actors]
        deadline = time.monotonic() + start_timeout
        down = {}
        for s, ref in enumerate(refs):
            try:
                self._ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except Exception as e:  # noqa: BLE001 - classified below
                if not _is_unreachable(e):
                    raise
                if type(e).__name__ == "GetTimeoutError":
                    down[s] = (
                        f"actor not running after {start_timeout:g} s (does the cluster "
                        "have the CPUs it asks for?)"
                    )
                    self._ray.kill(self._actors[s])
                else:
                    down[s] = _reason(e)
        return down

    def __len__(self) -> int:
        return self.manifest.items

    @property
    def shards(self) -> int:
        """Number of shards."""
        return len(self.manifest.shards)

    @property
    def dim(self) -> int:
        """The items' full dimension."""
        return self.manifest.dim

    def actor(self, shard: int) -> Any:
        """The Ray actor handle of one shard (for monitoring and tests)."""
        return self._actors[shard]

    def search(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        *,
        exact: bool = False,
        width: Optional[int] = None,
        plan: Optional[str] = None,
        ef: Optional[int] = None,
        exclude: Optional[Sequence[int]] = None,
        allow: Optional[Sequence[int]] = None,
    ) -> tuple:
        """The global top-``k`` of every query: ``(ids uint64 [n, k], scores float32 [n,
        k])``, padded with id 2**64-1 and score -inf like ``Index.search``. Raises
        ShardUnavailable if any shard cannot answer."""
        answer = self.search_partial(
            queries, k, exact=exact, width=width, plan=plan, ef=ef, exclude=exclude,
            allow=allow,
        )
        if answer.missing:
            raise ShardUnavailable(answer.missing)
        return answer.ids, answer.scores

    def search_partial(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        *,
        exact: bool = False,
        width: Optional[int] = None,
        plan: Optional[str] = None,
        ef: Optional[int] = None,
        exclude: Optional[Sequence[int]] = None,
        allow: Optional[Sequence[int]] = None,
    ) -> PartialAnswer:
        """Like ``search``, but answers from the shards that can and lists the others in
        ``missing``. An error of the request itself (a bad width, plan or k) still raises."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"queries: expected shape [n, {self.dim}], found {list(np.shape(queries))}"
            )
        if k < 1:
            raise ValueError(f"k: must be at least 1, not {k}")
        if exact and (plan is not None or ef is not None or exclude or allow is not None):
            raise ValueError("exact search takes no plan, ef or filters")
        params: Dict[str, Any] = {"width": width}
        if not exact:
            params.update(plan=plan, ef=ef, exclude=exclude, allow=allow)
        live = [s for s in range(self.shards) if s not in self._down]
        missing = dict(self._down)
        n = q.shape[0]
        parts_ids: Dict[int, List[np.ndarray]] = {s: [] for s in live}
        parts_scores: Dict[int, List[np.ndarray]] = {s: [] for s in live}
        refs: Dict[int, List[Any]] = {s: [] for s in live}
        for start in range(0, n, self.batch):
            chunk = q[start : start + self.batch]
            if chunk.nbytes > 64 * 1024:
                # stored once, read by every shard (zero-copy on the same node); a small
                # batch goes inline with each call instead, saving a round trip
                chunk = self._ray.put(chunk)
            for s in live:
                refs[s].append(self._actors[s].search.remote(chunk, k, exact, params))
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        request_error: Optional[BaseException] = None
        for s in live:
            for ref in refs[s]:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ids, scores = self._ray.get(ref, timeout=remaining)
                except Exception as e:  # noqa: BLE001 - classified below
                    if _is_unreachable(e):
                        missing[s] = _reason(e)
                        for r in refs[s]:
                            self._ray.cancel(r)
                        break
                    request_error = request_error or cause_of(e)
                    break
                parts_ids[s].append(ids)
                parts_scores[s].append(scores)
        if request_error is not None:
            raise request_error
        answered = [s for s in live if s not in missing]
        if not answered:
            raise ShardUnavailable(missing)
        ids = np.hstack([np.vstack(parts_ids[s]) for s in answered])
        scores = np.hstack([np.vstack(parts_scores[s]) for s in answered])
        top_ids, top_scores = merge_top_k(ids, scores, k)
        return PartialAnswer(top_ids, top_scores, missing)

    def close(self) -> None:
        """Stops the shard actors (and the local Ray cluster, if ``open`` started one)."""
        for a in self._actors:
            try:
                self._ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
