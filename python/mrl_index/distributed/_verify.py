"""Checking a whole sharded index on this machine: the manifest, each shard's ``MANIFEST``
checksum, then each shard's own ``verify`` (every data file's checksum and structure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from . import _manifest


def verify(path: Any) -> List[Dict[str, Any]]:
    """Verifies the sharded index at ``path``; returns one report per shard
    (``{"shard", "dir", "ok", "error"}``) and raises nothing for a damaged shard: the caller
    decides (the command line exits 1 if any is not ok). A bad ``shards.json`` raises
    ShardManifestError."""
    import mrl_index

    root = Path(path)
    manifest = _manifest.read(root)
    reports = []
    for s in manifest.shards:
        shard_dir = root / s.dir
        error = None
        try:
            actual = _manifest.manifest_sha256(shard_dir)
            if actual != s.manifest_sha256:
                error = (
                    f"MANIFEST SHA-256 {actual[:16]}..., shards.json records "
                    f"{s.manifest_sha256[:16]}..."
                )
            else:
                index = mrl_index.Index.open(shard_dir)
                index.verify()
                if len(index) != s.items:
                    error = f"{len(index)} items, shards.json records {s.items}"
        except FileNotFoundError as e:
            error = f"missing: {e}"
        except Exception as e:  # noqa: BLE001 - reported per shard
            error = str(e)
        reports.append({"shard": s.shard, "dir": s.dir, "ok": error is None, "error": error})
    return reports
