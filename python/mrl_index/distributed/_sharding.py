"""Which shard holds an item: ``splitmix64(id) mod shards``.

By id hash, not by range: any id distribution (dense row numbers, sparse product ids, ids
that grow over time) spreads evenly, a new item's shard is known from its id alone, and the
hash is fixed (SplitMix64's finaliser, not Python's salted ``hash``), so the same id lands on
the same shard on every machine and in every release.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

# Reserved by the package: padding of an answer with fewer than k hits.
PADDING_ID = np.iinfo(np.uint64).max


def splitmix64(ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's output function of each id (wrapping 64-bit arithmetic)."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def shard_of(ids: npt.NDArray[np.uint64], shards: int) -> npt.NDArray[np.int64]:
    """The shard (``0..shards``) of each id."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return (splitmix64(ids) % np.uint64(shards)).astype(np.int64)


def merge_top_k(
    ids: npt.NDArray[np.uint64], scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
    """The global top-``k`` of per-shard answers laid side by side (``[n, shards * k']``):
    by score, best first, ties to the smaller id (the rule of the live index's segments);
    padding (id 2**64-1, score -inf) sorts last and pads again where fewer than k exist."""
    n = ids.shape[0]
    if ids.shape[1] == 0:
        return (
            np.full((n, k), PADDING_ID, dtype=np.uint64),
            np.full((n, k), -np.inf, dtype=np.float32),
        )
    # lexsort: the last key is the primary one.
    order = np.lexsort((ids, -scores.astype(np.float64)), axis=-1)[:, :k]
    top_ids = np.take_along_axis(ids, order, axis=1)
    top_scores = np.take_along_axis(scores, order, axis=1)
    if top_ids.shape[1] < k:
        pad = k - top_ids.shape[1]
        top_ids = np.hstack([top_ids, np.full((n, pad), PADDING_ID, dtype=np.uint64)])
        top_scores = np.hstack([top_scores, np.full((n, pad), -np.inf, dtype=np.float32)])
    return top_ids, top_scores
