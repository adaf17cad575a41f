"""Type stubs of the compiled module (checked against it by mypy.stubtest in CI)."""

import os
import pathlib
from typing import Any, Optional, Sequence, Tuple, Union, final

import numpy as np
import numpy.typing as npt

__all__ = ["Index", "IndexCorrupt", "ItemEncoder", "QueryEncoder", "recall_at_k"]

_Ids = Union[npt.ArrayLike, Sequence[int], Sequence[Sequence[int]], None]
_Histories = Union[npt.ArrayLike, Sequence[int], Sequence[Sequence[int]]]
_Path = Union[str, os.PathLike[str]]
_Answers = Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]

class IndexCorrupt(Exception):
    """An index file failed a checksum or structure check (the message names the file)."""

@final
class Index:
    """An mrl-index index directory, opened (memory-mapped)."""

    @staticmethod
    def open(path: _Path) -> Index: ...
    @staticmethod
    def build(
        path: _Path,
        vectors: npt.ArrayLike,
        ids: _Ids = None,
        *,
        widths: Optional[Sequence[int]] = None,
        coarse_dim: int = 64,
        m: int = 16,
        ef_construction: int = 200,
        seed: int = 42,
        threads: Optional[int] = None,
        sample_queries: Optional[npt.ArrayLike] = None,
        force: bool = False,
    ) -> Index: ...
    def __len__(self) -> int: ...
    def refresh(self) -> bool: ...
    def add(
        self,
        vectors: npt.ArrayLike,
        ids: _Ids = None,
        *,
        replace: bool = False,
        threads: Optional[int] = None,
    ) -> dict[str, Any]: ...
    def delete(self, ids: _Ids, *, missing_ok: bool = False) -> int: ...
    def compact(
        self,
        *,
        sample_queries: Optional[npt.ArrayLike] = None,
        force: bool = False,
        threads: Optional[int] = None,
    ) -> dict[str, Any]: ...
    @property
    def dim(self) -> int: ...
    @property
    def widths(self) -> list[int]: ...
    @property
    def path(self) -> pathlib.Path: ...
    def info(self) -> dict[str, Any]: ...
    def search(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        *,
        width: Optional[int] = None,
        plan: Optional[str] = None,
        ef: Optional[int] = None,
        exclude: _Ids = None,
        allow: _Ids = None,
        threads: Optional[int] = None,
    ) -> _Answers: ...
    def exact_search(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        width: Optional[int] = None,
        *,
        threads: Optional[int] = None,
    ) -> _Answers: ...
    def recommend(
        self,
        histories: _Histories,
        k: int = 10,
        *,
        encoder: QueryEncoder,
        keep_history: bool = False,
        width: Optional[int] = None,
        plan: Optional[str] = None,
        ef: Optional[int] = None,
        exclude: _Ids = None,
        allow: _Ids = None,
        threads: Optional[int] = None,
    ) -> _Answers: ...
    def verify(self) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class ItemEncoder:
    """The fMRLRec item encoder (item_encoder.onnx): item features -> item vectors."""

    def __new__(cls, path: _Path, *, runtime: Optional[_Path] = None) -> ItemEncoder: ...
    @property
    def in_dim(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def has_identity(self) -> bool: ...
    def encode(
        self, features: npt.ArrayLike, *, batch: int = 1024, rows: Optional[Sequence[int]] = None
    ) -> npt.NDArray[np.float32]: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class QueryEncoder:
    """The fMRLRec query encoder (query_encoder.onnx): histories of item vectors -> queries."""

    def __new__(cls, path: _Path, *, runtime: Optional[_Path] = None) -> QueryEncoder: ...
    @property
    def dim(self) -> int: ...
    @property
    def path(self) -> pathlib.Path: ...
    @staticmethod
    def runtime() -> Optional[pathlib.Path]: ...
    def encode(
        self, histories: Union[npt.ArrayLike, Sequence[npt.ArrayLike]]
    ) -> npt.NDArray[np.float32]: ...
    def encode_ids(self, index: Index, histories: _Histories) -> npt.NDArray[np.float32]: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def recall_at_k(found: npt.ArrayLike, truth: npt.ArrayLike) -> float: ...
