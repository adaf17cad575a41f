"""A Ray Serve deployment of a sharded index: ``POST /v1/search`` with the JSON of
``mrl-index serve``.

Request (the fields of ``mrl-index serve``'s ``/v1/search``; unknown fields are refused)::

    {"vector": [...]}  or  {"vectors": [[...], ...]},
    "k": 10, "width": null, "plan": null, "ef": null, "exclude": [], "allow": null

Answer: ``{"ids": [...], "scores": [...]}`` for ``vector``, ``{"results": [{"ids", "scores"},
...]}`` for ``vectors``; an error is ``{"error": "..."}`` with status 400 (the request), 503
(a shard cannot answer: never a partial answer) or 404 (another path). ``GET /health``
answers ``{"status": "ok", "shards": N, "items": n}``.

Run it with ``python -m mrl_index.distributed serve --index DIR [--port 8000]``, or from a
Ray Serve config / ``serve run mrl_index.distributed.serve:app index=DIR``. The replica opens
the shard actors itself (one per shard, as ``ShardedIndex.open`` does), so scaling the HTTP
side (more replicas) and the shards are separate decisions.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._ray import connect
from ._search import ShardedIndex, ShardUnavailable
from ._sharding import PADDING_ID

FIELDS = {"vector", "vectors", "k", "width", "plan", "ef", "exclude", "allow"}


class RequestError(ValueError):
    """A request the service refuses (status 400)."""


def _ints(value: Any, name: str) -> List[int]:
    if not isinstance(value, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value
    ):
        raise RequestError(f"{name}: expected a list of non-negative integer ids")
    return value


def parse_search(body: Any, dim: int, max_k: int) -> Tuple[np.ndarray, bool, Dict[str, Any]]:
    """Checks a ``/v1/search`` body; returns ``(queries [n, dim], batch, search kwargs)``."""
    if not isinstance(body, dict):
        raise RequestError("body: expected a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise RequestError(f"unknown field `{unknown[0]}`, expected one of {sorted(FIELDS)}")
    if ("vector" in body) == ("vectors" in body):
        raise RequestError("give exactly one of `vector` and `vectors`")
    batch = "vectors" in body
    rows = body["vectors"] if batch else [body["vector"]]
    if not isinstance(rows, list) or not rows:
        raise RequestError("vectors: expected a non-empty list of vectors")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != dim or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in row
        ):
            where = f"vectors[{i}]" if batch else "vector"
            raise RequestError(f"{where}: expected {dim} numbers (the index's dimension)")
    queries = np.asarray(rows, dtype=np.float32)
    if not np.all(np.isfinite(queries)):
        raise RequestError("vector: holds a non-finite number")
    k = body.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max_k:
        raise RequestError(f"k: must be an integer in 1..={max_k}")
    kwargs: Dict[str, Any] = {"k": k}
    for name in ("width", "ef"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise RequestError(f"{name}: expected a positive integer or null")
        kwargs[name] = v
    plan = body.get("plan")
    if plan is not None and not isinstance(plan, str):
        raise RequestError("plan: expected a string or null")
    kwargs["plan"] = plan
    kwargs["exclude"] = _ints(body.get("exclude", []), "exclude")
    allow = body.get("allow")
    kwargs["allow"] = None if allow is None else _ints(allow, "allow")
    return queries, batch, kwargs


def answers(ids: np.ndarray, scores: np.ndarray) -> List[Dict[str, Any]]:
    """One ``{"ids", "scores"}`` per query, padding dropped."""
    out: List[Dict[str, Any]] = []
    for row_ids, row_scores in zip(ids, scores):
        keep = row_ids != PADDING_ID
        out.append(
            {
                "ids": [int(x) for x in row_ids[keep]],
                "scores": [float(x) for x in row_scores[keep]],
            }
        )
    return out


class ShardedSearch:
    """The deployment's body: one sharded index, opened once per replica."""

    def __init__(self, index: str, max_k: int = 1000, cpus_per_shard: Optional[float] = None):
        self.index = ShardedIndex.open(index, cpus_per_shard=cpus_per_shard)
        self.max_k = max_k

    def handle(self, method: str, path: str, body: Optional[bytes]) -> Tuple[int, Dict[str, Any]]:
        """Answers one request: ``(status, JSON body)``."""
        import json

        if path == "/health" and method == "GET":
            return 200, {"status": "ok", "shards": self.index.shards, "items": len(self.index)}
        if path != "/v1/search":
            return 404, {"error": f"no route {method} {path}"}
        if method != "POST":
            return 405, {"error": f"{path} takes POST, not {method}"}
        try:
            parsed = json.loads(body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return 400, {"error": f"body: not JSON: {e}"}
        try:
            queries, batch, kwargs = parse_search(parsed, self.index.dim, self.max_k)
            ids, scores = self.index.search(queries, **kwargs)
        except ShardUnavailable as e:
            return 503, {"error": str(e)}
        except (ValueError, TypeError) as e:
            return 400, {"error": str(e)}
        results = answers(ids, scores)
        return 200, ({"results": results} if batch else results[0])

    async def __call__(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        body = await request.body()
        status, payload = await run_in_threadpool(
            self.handle, request.method, request.url.path, body
        )
        return JSONResponse(payload, status_code=status)


def deployment(index: str, max_k: int = 1000, cpus_per_shard: Optional[float] = None) -> Any:
    """The Ray Serve application of ``index`` (bind it with ``serve.run``)."""
    from ray import serve

    # The replica only waits on the shard actors: it asks for no CPU of its own, which
    # would otherwise be taken from the shards (on one machine, all of them).
    return serve.deployment(name="mrl-index-sharded", ray_actor_options={"num_cpus": 0})(
        ShardedSearch
    ).bind(
        index, max_k, cpus_per_shard
    )


def app(args: Dict[str, str]) -> Any:
    """Application builder for ``serve run mrl_index.distributed.serve:app index=DIR
    [max_k=1000]``."""
    return deployment(args["index"], int(args.get("max_k", 1000)))


def run(
    index: str,
    *,
    address: Optional[str] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_k: int = 1000,
) -> None:
    """Serves ``index`` on ``host:port`` until interrupted."""
    from ._manifest import read

    read(index)  # a bad directory fails here, before any cluster starts
    ray, started = connect(address)
    from ray import serve

    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment(index, max_k), route_prefix="/", name="mrl-index")
        print(f"serving {index} on http://{host}:{port}/v1/search", flush=True)
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
