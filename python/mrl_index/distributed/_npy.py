"""Reading an input ``.npy`` file with an error that names it."""

from __future__ import annotations

from typing import Type

import numpy as np


def load_npy(path: str, what: str, error: Type[Exception], mmap: bool = False) -> np.ndarray:
    """``np.load(path)`` (memory-mapped if ``mmap``); a missing or unreadable file, or one that
    is not a single array, raises ``error("<what> <path>: ...")``."""
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except (ValueError, OSError) as e:
        raise error(f"{what} {path}: not a readable .npy file: {e}") from None
    if not isinstance(a, np.ndarray):
        raise error(f"{what} {path}: not a single .npy array (an .npz archive?)")
    return a
