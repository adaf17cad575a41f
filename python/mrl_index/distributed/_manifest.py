"""The shard manifest: ``DIR/shards.json``, the one file that publishes a sharded index.

A sharded index directory holds ``shards.json`` and one ordinary mrl-index directory per
shard, ``shard-NNNN-BUILDID``. The manifest names each shard's directory, its item count and
the SHA-256 of the shard's own ``MANIFEST`` file. That file in turn carries the checksums of
every data file of the shard (``index-formats/``), so the chain manifest -> shard MANIFEST ->
data checks a whole sharded index while opening one stays O(1) per shard (``verify`` walks
the data). The manifest is written to a temporary file, fsynced, renamed over ``shards.json``
and the directory fsynced: a reader sees the old manifest or the new one, never a mix.

Layout (``"format": "mrl-index-shards"``, ``"version": 1``)::

    {
      "format": "mrl-index-shards", "version": 1,
      "build_id": "5f0c2a9e",               # 8 hex digits, part of every shard's directory
      "sharding": {"scheme": "splitmix64", "shards": 4},
      "items": 1000000, "dim": 1024, "widths": [64, 128, 256, 512, 1024],
      "ids": "given" | "rows",              # rows: the ids are the input's row numbers
      "build": {...},                       # the build settings every shard used
      "shards": [
        {"shard": 0, "dir": "shard-0000-5f0c2a9e", "items": 250112,
         "manifest_sha256": "9c1e...", "bytes": 1203456789, "build_seconds": 71.2},
        ...
      ]
    }
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

FORMAT = "mrl-index-shards"
VERSION = 1
FILE = "shards.json"
SCHEME = "splitmix64"
# The directory of one shard: its number and the build that made it.
SHARD_DIR = re.compile(r"^shard-(\d{4})-([0-9a-f]{8})$")


class ShardManifestError(ValueError):
    """``shards.json`` is missing, unreadable or inconsistent (the message says which)."""


@dataclass(frozen=True)
class ShardEntry:
    """One shard as the manifest records it."""

    shard: int
    dir: str
    items: int
    manifest_sha256: str
    bytes: int = 0
    build_seconds: float = 0.0


@dataclass(frozen=True)
class ShardManifest:
    """The parsed ``shards.json`` of a sharded index."""

    build_id: str
    shards: List[ShardEntry]
    items: int
    dim: int
    widths: List[int]
    ids: str
    build: Dict[str, Any] = field(default_factory=dict)
    scheme: str = SCHEME

    def to_json(self) -> Dict[str, Any]:
        """The manifest as the JSON object written to ``shards.json``."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "build_id": self.build_id,
            "sharding": {"scheme": self.scheme, "shards": len(self.shards)},
            "items": self.items,
            "dim": self.dim,
            "widths": list(self.widths),
            "ids": self.ids,
            "build": self.build,
            "shards": [
                {
                    "shard": s.shard,
                    "dir": s.dir,
                    "items": s.items,
                    "manifest_sha256": s.manifest_sha256,
                    "bytes": s.bytes,
                    "build_seconds": round(s.build_seconds, 3),
                }
                for s in self.shards
            ],
        }


def manifest_sha256(shard_dir: Path) -> str:
    """SHA-256 (hex) of a shard directory's ``MANIFEST`` file."""
    with open(shard_dir / "MANIFEST", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _need(obj: Dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise ShardManifestError(f"{where}: missing field {key!r}")
    value = obj[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ShardManifestError(
            f"{where}: field {key!r} must be {kind.__name__}, not {type(value).__name__}"
        )
    return value


def read(directory: Union[str, "os.PathLike[str]"]) -> ShardManifest:
    """Reads and checks ``directory/shards.json`` (structure only; not the shards' files)."""
    path = Path(directory) / FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ShardManifestError(
            f"{path}: no shard manifest (not a sharded index, or its build never published)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ShardManifestError(f"{path}: cannot read: {e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ShardManifestError(f"{path}: not JSON: {e}") from None
    where = str(path)
    if not isinstance(obj, dict):
        raise ShardManifestError(f"{where}: not a JSON object")
    if obj.get("format") != FORMAT:
        raise ShardManifestError(f"{where}: format is {obj.get('format')!r}, not {FORMAT!r}")
    version = _need(obj, "version", int, where)
    if version != VERSION:
        raise ShardManifestError(
            f"{where}: version {version}; this package reads version {VERSION}"
        )
    build_id = _need(obj, "build_id", str, where)
    sharding = _need(obj, "sharding", dict, where)
    scheme = _need(sharding, "scheme", str, where + ": sharding")
    if scheme != SCHEME:
        raise ShardManifestError(f"{where}: unknown sharding scheme {scheme!r}")
    raw = _need(obj, "shards", list, where)
    if _need(sharding, "shards", int, where + ": sharding") != len(raw) or not raw:
        raise ShardManifestError(
            f"{where}: sharding.shards is {sharding.get('shards')}, the list holds {len(raw)}"
        )
    shards = []
    for i, s in enumerate(raw):
        w = f"{where}: shards[{i}]"
        if not isinstance(s, dict):
            raise ShardManifestError(f"{w}: not an object")
        entry = ShardEntry(
            shard=_need(s, "shard", int, w),
            dir=_need(s, "dir", str, w),
            items=_need(s, "items", int, w),
            manifest_sha256=_need(s, "manifest_sha256", str, w),
            bytes=int(s.get("bytes", 0)),
            build_seconds=float(s.get("build_seconds", 0.0)),
        )
        m = SHARD_DIR.match(entry.dir)
        if entry.shard != i or not m or int(m.group(1)) != i or m.group(2) != build_id:
            raise ShardManifestError(
                f"{w}: shard {entry.shard} in directory {entry.dir!r}; expected shard {i} in "
                f"shard-{i:04d}-{build_id}"
            )
        if entry.items < 0 or not re.fullmatch(r"[0-9a-f]{64}", entry.manifest_sha256):
            raise ShardManifestError(f"{w}: bad item count or checksum")
        shards.append(entry)
    items = _need(obj, "items", int, where)
    if items != sum(s.items for s in shards):
        raise ShardManifestError(
            f"{where}: items is {items}, the shards hold {sum(s.items for s in shards)}"
        )
    ids = _need(obj, "ids", str, where)
    if ids not in ("given", "rows"):
        raise ShardManifestError(f"{where}: ids is {ids!r}, not 'given' or 'rows'")
    return ShardManifest(
        build_id=build_id,
        shards=shards,
        items=items,
        dim=_need(obj, "dim", int, where),
        widths=[int(w) for w in _need(obj, "widths", list, where)],
        ids=ids,
        build=_need(obj, "build", dict, where),
        scheme=scheme,
    )


def write(directory: Union[str, "os.PathLike[str]"], manifest: ShardManifest) -> None:
    """Publishes ``manifest`` as ``directory/shards.json``, atomically (temp, fsync, rename,
    directory fsync). On any error the previous ``shards.json`` (if any) is untouched."""
    directory = Path(directory)
    data = (json.dumps(manifest.to_json(), indent=1) + "\n").encode()
    fd, tmp = tempfile.mkstemp(prefix=".shards-", suffix=".json.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / FILE)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
