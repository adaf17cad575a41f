"""Amazon Beauty sequences, the leave-one-out split and length-bucketed batches.

``sequential_data.txt``: one line per user, ``user_id item item ...`` in time order, ids from 1.
Split (fMRLRec / LRURec): train = seq[:-2], validation target seq[-2], test target seq[-1];
at most the last ``max_len`` (50) items are the input.

All arrays are LEFT-aligned: row b holds its items at positions 0..n_b-1, zeros (pad) after.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
N_ITEMS = 12101
BUCKETS = (8, 16, 32, 50)


def resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (REPO / p).resolve()


def load_sequences(data_dir: str | Path = "../shared/datasets", file: str = "amazon-beauty/sequential_data.txt"):
    """-> list of item-id lists, one per user (in file order)."""
    path = resolve(data_dir) / file
    seqs = []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            seqs.append([int(x) for x in parts[1:]])
    return seqs


def load_features(path: str | Path = "datasets/beauty/item_features.npy") -> np.ndarray:
    f = np.load(resolve(path)).astype(np.float32)
    assert f.shape == (N_ITEMS, 384), f.shape
    return f


def title_words(titles, min_df: int = 2, max_df: float = 0.1):
    """Title words as item side information: -> (item [nnz], word [nnz], weight [nnz], vocab).

    An item's words are its title's lowercase alphanumeric tokens, plus ``brand:<first token>``
    and ``brand:<first two tokens>`` (the brand usually leads an Amazon title). A word is kept
    when between ``min_df`` items and a ``max_df`` share of them have it (a word of one item says
    nothing another item's identity does not; ``ounce`` or ``for`` say nothing at all). Pair k says
    item ``item[k]`` (row, 0-based) has word ``word[k]``; an item's weights are 1/sqrt(its number
    of kept words), so a long title does not outweigh a short one. Rows follow ``titles``."""
    docs = []
    for t in titles:
        toks = re.findall(r"[a-z0-9]+", (t or "").lower())
        words = set(toks)
        if toks:
            words.add("brand:" + toks[0])
            words.add("brand:" + " ".join(toks[:2]))
        docs.append(words)
    df = Counter(w for d in docs for w in d)
    cap = max_df * len(titles)
    vocab = sorted(w for w, c in df.items() if min_df <= c <= cap)
    index = {w: i for i, w in enumerate(vocab)}
    item, word, weight = [], [], []
    for r, d in enumerate(docs):
        kept = sorted(index[w] for w in d if w in index)
        for i in kept:
            item.append(r)
            word.append(i)
            weight.append(1.0 / np.sqrt(len(kept)))
    return (np.asarray(item, np.int32), np.asarray(word, np.int32), np.asarray(weight, np.float32), vocab)


def bucket_len(n: int, max_len: int = 50, buckets=BUCKETS) -> int:
    """The smallest bucket length >= n (capped at max_len)."""
    for b in buckets:
        if n <= b:
            return min(b, max_len)
    return max_len


@dataclass
class TrainSet:
    inputs: list   # per user: input item ids (<= max_len)
    labels: list   # per user: next-item targets, same length


def train_examples(seqs, max_len: int = 50) -> TrainSet:
    """Every position of seq[:-2] predicts the next item (history <= max_len)."""
    ins, labs = [], []
    for s in seqs:
        tr = s[:-2]
        if len(tr) < 2:
            continue
        ins.append(tr[:-1][-max_len:])
        labs.append(tr[1:][-max_len:])
    return TrainSet(ins, labs)


def eval_examples(seqs, split: str, max_len: int = 50):
    """-> (histories, targets). val: history seq[:-2], target seq[-2]; test: seq[:-1] -> seq[-1]."""
    hist, tgt = [], []
    for s in seqs:
        if split == "val":
            h, t = s[:-2], s[-2]
        elif split == "test":
            h, t = s[:-1], s[-1]
        else:
            raise ValueError(split)
        hist.append(h[-max_len:])
        tgt.append(t)
    return hist, np.asarray(tgt, dtype=np.int32)


def pad_left_aligned(rows, L: int) -> np.ndarray:
    out = np.zeros((len(rows), L), dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _bucketed(ts: TrainSet, rng: np.random.RandomState, buckets, rows_of, max_len: int):
    """Users shuffled, grouped by the smallest bucket length holding them, each group cut into
    batches of ``rows_of(L)`` users (the last filled with zero-weight rows, so a bucket has one
    shape), batch order shuffled. Yields (ids [B, L], labels [B, L], weights [B, L])."""
    order = rng.permutation(len(ts.inputs))
    groups: dict[int, list[int]] = {}
    for u in order:
        groups.setdefault(bucket_len(len(ts.inputs[u]), max_len, buckets), []).append(u)
    batches = []
    for L, users in groups.items():
        rows = rows_of(L)
        for s in range(0, len(users), rows):
            batches.append((L, rows, users[s:s + rows]))
    for j in rng.permutation(len(batches)):
        L, rows, users = batches[j]
        ids = np.zeros((rows, L), dtype=np.int32)
        labels = np.zeros((rows, L), dtype=np.int32)
        for i, u in enumerate(users):
            n = len(ts.inputs[u])
            ids[i, :n] = ts.inputs[u]
            labels[i, :n] = ts.labels[u]
        yield ids, labels, (labels > 0).astype(np.float32)


def train_batches(ts: TrainSet, batch_size: int, rng: np.random.RandomState, max_len: int = 50):
    """Length-bucketed batches of ``batch_size`` users in the 4 buckets 8/16/32/50 (the GPU
    recipe). Yields (ids [B, L], labels [B, L], weights [B, L]), left-aligned."""
    return _bucketed(ts, rng, BUCKETS, lambda L: batch_size, max_len)


FINE_BUCKETS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50)


def token_batches(ts: TrainSet, tokens: int, rng: np.random.RandomState, max_len: int = 50):
    """Batches of about ``tokens`` positions each, for CPU training: the 14 fine length buckets
    ``FINE_BUCKETS`` (a row is at most ~25% padding), ``max(1, tokens // L)`` users per batch of
    length L. Every real position of every user is scored exactly once per epoch, whatever its
    length. Yields like ``train_batches``.
    """
    return _bucketed(ts, rng, FINE_BUCKETS, lambda L: max(1, tokens // L), max_len)


def eval_batches(hist, targets, batch_size: int, max_len: int = 50):
    """Users grouped by bucket length; yields (user_index [B], ids [B, L], lengths [B], targets [B]);
    the last batch of a bucket is padded with copies of its first row (user index -1)."""
    groups: dict[int, list[int]] = {}
    for u, h in enumerate(hist):
        groups.setdefault(bucket_len(len(h), max_len), []).append(u)
    for L in sorted(groups):
        users = groups[L]
        for s in range(0, len(users), batch_size):
            us = users[s:s + batch_size]
            idx = np.full((batch_size,), -1, dtype=np.int64)
            idx[:len(us)] = us
            fill = [us[i] if i < len(us) else us[0] for i in range(batch_size)]
            ids = pad_left_aligned([hist[u] for u in fill], L)
            lengths = np.array([len(hist[u]) for u in fill], dtype=np.int32)
            yield idx, ids, lengths, targets[fill]
