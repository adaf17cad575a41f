"""Type stubs of the compiled module (checked against it by mypy.stubtest in CI)."""

import os
from typing import Any, Optional, Sequence, Tuple, Union, final

import numpy as np
import numpy.typing as npt

__all__ = ["Index", "IndexCorrupt", "recall_at_k"]

_Ids = Union[npt.ArrayLike, Sequence[int], None]
_Answers = Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]

class IndexCorrupt(Exception):
    """An index file failed a checksum or structure check (the message names the file)."""

@final
class Index:
    """An mrl-index index directory, opened (memory-mapped)."""

    @staticmethod
    def open(path: Union[str, os.PathLike[str]]) -> Index: ...
    @staticmethod
    def build(
        path: Union[str, os.PathLike[str]],
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
    @property
    def dim(self) -> int: ...
    @property
    def widths(self) -> list[int]: ...
    @property
    def path(self) -> str: ...
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
    def verify(self) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def recall_at_k(found: npt.ArrayLike, truth: npt.ArrayLike) -> float: ...
