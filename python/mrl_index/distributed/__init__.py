"""A sharded mrl-index, built and served on Ray.

Items are split across shards by ``splitmix64(id) mod shards``; each shard is an ordinary
mrl-index directory; ``shards.json`` (written last, atomically) names them with a checksum
each. A query goes to every shard and the per-shard top-k lists are merged by score: the
scores are exact full-width inner products, so the merge loses nothing, and sharded exact
search equals exact search over all items.

Data flow::

    build:  ITEMS.npy ─ids─> shard of each id ─Ray task per shard─> DIR/shard-000i-B/
                                                     └─ all done ─> DIR/shards.json
    search: queries ─> ShardActor 0..N-1 (Index.open, memory-mapped, long-lived)
                          └─ top-k each ─> merge by score ─> global top-k

Library::

    from mrl_index import distributed
    distributed.build("items.npy", "sharded", shards=4)
    with distributed.ShardedIndex.open("sharded") as index:
        ids, scores = index.search(queries, k=10)

Command line: ``python -m mrl_index.distributed {build,search,info,verify,serve} --help``.
Needs Ray (``pip install 'ray>=2.9'``; ``ray[serve]`` for the HTTP deployment).
"""

from ._build import BuildSettings, ShardBuildError, build
from ._manifest import ShardEntry, ShardManifest, ShardManifestError
from ._manifest import read as read_manifest
from ._search import PartialAnswer, ShardActor, ShardedIndex, ShardUnavailable
from ._sharding import merge_top_k, shard_of
from ._verify import verify

__all__ = [
    "BuildSettings",
    "PartialAnswer",
    "ShardActor",
    "ShardBuildError",
    "ShardEntry",
    "ShardManifest",
    "ShardManifestError",
    "ShardUnavailable",
    "ShardedIndex",
    "build",
    "merge_top_k",
    "read_manifest",
    "shard_of",
    "verify",
]
