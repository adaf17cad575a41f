"""The live index from Python: add, delete, replace and compact through `Index`, another
process's changes seen after `refresh`, and the errors a writer raises."""

import numpy as np
import pytest

import mrl_index

DIM = 64


def matryoshka_like(n, seed):
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(1.0 + np.arange(DIM) / 4.0)
    return (rng.standard_normal((n, DIM)) * scale).astype(np.float32)


@pytest.fixture()
def live(tmp_path):
    items = matryoshka_like(2000, 1)
    ids = np.arange(2000, dtype=np.uint64)
    index = mrl_index.Index.build(
        tmp_path / "index", items, ids, widths=[16, 32, 64], coarse_dim=16, threads=1
    )
    return index, items, tmp_path / "index"


def test_add_delete_replace_and_compact_answer_as_a_fresh_build(live, tmp_path):
    index, items, path = live
    extra = matryoshka_like(600, 2)
    report = index.add(extra, np.arange(5000, 5600, dtype=np.uint64), threads=1)
    assert report["added"] == 600 and report["replaced"] == 0 and not report["graph"]
    assert len(index) == 2600
    assert index.delete([0, 1, 2, 5000]) == 4
    assert len(index) == 2596
    # Replacing item 10 with a query direction makes it that query's best answer.
    q = matryoshka_like(1, 3)[0]
    index.add((q * 40)[None, :], [10], replace=True)
    found, scores = index.search(q, k=5)
    assert found[0, 0] == 10 and np.sum(found == 10) == 1
    assert np.isclose(scores[0, 0], float(q @ (q * 40)), rtol=1e-4)
    info = index.info()
    assert info["live_items"] == 2596 and info["deleted"] == 5
    assert [s[0] for s in info["delta_segments"]] == [600, 1]

    # Exact answers equal a fresh build of the same live items.
    live_ids = np.array(
        [i for i in range(2000) if i not in (0, 1, 2, 10)] + list(range(5001, 5600)) + [10],
        dtype=np.uint64,
    )
    vectors = np.concatenate([items[3:], extra[1:], (q * 40)[None, :]])
    vectors = np.delete(vectors, 10 - 3, axis=0)
    fresh = mrl_index.Index.build(
        tmp_path / "fresh", vectors, live_ids, widths=[16, 32, 64], coarse_dim=16, threads=1
    )
    queries = matryoshka_like(40, 4)
    for width in (16, 64):
        a = index.exact_search(queries, 10, width)
        b = fresh.exact_search(queries, 10, width)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])
    deleted = {0, 1, 2, 5000}
    found, _ = index.search(queries, k=20, exclude=[3, 4])
    assert not (set(found.ravel()) & (deleted | {3, 4}))

    report = index.compact(threads=1)
    assert report == {"items": 2596, "dropped": 5, "merged_deltas": 2, "rebuilt": True}
    assert index.info()["delta_segments"] == [] and len(index) == 2596
    a = index.exact_search(queries, 10)
    assert np.array_equal(a[0], fresh.exact_search(queries, 10)[0])
    index.verify()


def test_refresh_sees_another_writer_and_errors_are_clear(live):
    index, _, path = live
    other = mrl_index.Index.open(path)
    index.add(matryoshka_like(5, 9), threads=1)
    assert len(other) == 2000
    assert other.refresh() is True and len(other) == 2005
    assert other.refresh() is False
    # Ids continue after the largest: 2000..2004.
    with pytest.raises(ValueError, match="already a live item"):
        index.add(matryoshka_like(1, 9), [2004])
    with pytest.raises(KeyError, match="not a live item"):
        index.delete([123456])
    assert index.delete([123456, 2004], missing_ok=True) == 1
    with pytest.raises(ValueError, match="dims"):
        index.add(np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="appears twice"):
        index.add(matryoshka_like(2, 9), [7000, 7000])
    assert len(index) == 2004
