"""The Python package against the library's own answers: shapes, dtypes, filters, errors,
the GIL, pickling, and equality with the command line on the same index."""

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mrl_index

DIM = 64
ROOT = Path(__file__).resolve().parents[2]


def matryoshka_like(n, seed):
    """Vectors whose energy decays with the dimension, like a Matryoshka embedding."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(1.0 + np.arange(DIM) / 4.0)
    return (rng.standard_normal((n, DIM)) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "index"
    items = matryoshka_like(3000, 1)
    ids = np.arange(3000, dtype=np.uint64) * 7 + 100
    index = mrl_index.Index.build(
        path, items, ids, widths=[16, 32, 64], coarse_dim=16, threads=1
    )
    return index, items, ids, path


def test_build_search_and_recall_against_exact(built):
    index, items, ids, _ = built
    assert len(index) == 3000 and index.dim == DIM and index.widths == [16, 32, 64]
    info = index.info()
    assert info["items"] == 3000 and info["coarse_dim"] == 16
    q = matryoshka_like(50, 2)
    found, scores = index.search(q, k=10)
    assert found.shape == (50, 10) and found.dtype == np.uint64
    assert scores.shape == (50, 10) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert set(found.ravel()) <= set(ids)
    truth, truth_scores = index.exact_search(q, 10)
    # exact scores are the inner products of the original vectors
    row = {int(i): r for r, i in enumerate(ids)}
    expect = items[[row[int(i)] for i in truth[0]]] @ q[0]
    np.testing.assert_allclose(truth_scores[0], expect, rtol=1e-4, atol=1e-4)
    assert mrl_index.recall_at_k(found, truth) >= 0.9
    # answers at a narrower width rank by the prefix
    f16, _ = index.search(q, k=5, width=16)
    t16, _ = index.exact_search(q, 5, width=16)
    assert mrl_index.recall_at_k(f16, t16) >= 0.9


def test_one_d_queries_and_dtypes(built):
    index, _, _, _ = built
    q = matryoshka_like(3, 3)
    ref, ref_scores = index.search(q, k=5)
    one, _ = index.search(q[0], k=5)
    assert one.shape == (1, 5) and (one[0] == ref[0]).all()
    for converted in (q.astype(np.float64), np.asfortranarray(q), q.astype(np.float16)):
        got, _ = index.search(converted, k=5)
        if converted.dtype != np.float16:
            assert (got == ref).all()
    assert index.search(q.tolist(), k=5)[0].shape == (3, 5)
    assert index.search(np.zeros((2, DIM), dtype=np.int32), k=3)[0].shape == (2, 3)
    for bad in (q.astype(np.complex64), q > 0, np.array([["a"] * DIM])):
        with pytest.raises(TypeError, match="dtype"):
            index.search(bad, k=3)
    with pytest.raises(ValueError, match="3-d"):
        index.search(q.reshape(3, 1, DIM), k=3)
    with pytest.raises(ValueError, match="dimension"):
        index.search(q[:, :10], k=3)
    nan = q.copy()
    nan[1, 4] = np.nan
    with pytest.raises(ValueError, match="finite"):
        index.search(nan, k=3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(q, k=0)
    with pytest.raises(ValueError):
        index.search(q, k=3, plan="not a plan")


def test_filters(built):
    index, _, ids, _ = built
    q = matryoshka_like(4, 4)
    found, _ = index.search(q, k=10)
    banned = found[:, :3].ravel()
    again, _ = index.search(q, k=10, exclude=banned)
    assert not set(again.ravel()) & set(banned)
    allowed = ids[:25]
    only, scores = index.search(q, k=10, allow=allowed)
    assert set(only.ravel()) <= set(allowed)
    few, few_scores = index.search(q, k=10, allow=ids[:3])
    # fewer eligible items than k: padded with id 2^64-1 and score -inf
    assert (few[:, 3:] == np.iinfo(np.uint64).max).all()
    assert np.isneginf(few_scores[:, 3:]).all()
    with pytest.raises(ValueError, match="non-negative"):
        index.search(q, k=3, exclude=[-1])
    # one list per query: each query's own history excluded, no other query's
    per_query = [list(map(int, found[i, :2])) for i in range(4)]
    each, _ = index.search(q, k=10, exclude=per_query)
    for i in range(4):
        assert not set(each[i]) & set(per_query[i])
        assert (each[i, :8] == found[i, 2:10]).all()
    each2, _ = index.search(q, k=10, exclude=found[:, :2])  # a 2-d array: per query too
    assert (each2 == each).all()
    ragged = [[int(found[0, 0])], [], [int(found[2, 0]), int(found[2, 1])], []]
    rag, _ = index.search(q, k=10, exclude=ragged)
    assert (rag[1] == found[1]).all() and rag[0, 0] != found[0, 0]
    with pytest.raises(ValueError, match="3 lists for 4 queries"):
        index.search(q, k=3, exclude=per_query[:3])


def test_search_releases_the_gil(built, ticks_during):
    index, _, _, _ = built
    q = matryoshka_like(3000, 5)
    during = ticks_during(lambda: index.exact_search(q, 10, threads=1))
    # With the GIL held for the whole call the other thread could not run at all.
    assert during > 1000, during


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_threads_are_honoured(built):
    index, _, _, _ = built
    q = matryoshka_like(64, 8)

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    ref, _ = index.search(q, k=10)
    # A pool of exactly the threads asked for is started (once, then reused), and the
    # answers do not depend on it.
    for t in (3, 5):
        before = os_threads()
        got, _ = index.search(q, k=10, threads=t)
        assert os_threads() - before == t
        assert (got == ref).all()
        again, _ = index.exact_search(q, 10, threads=t)
        assert os_threads() - before == t
    before = os_threads()
    index.search(q[0], k=10, threads=7)  # one query runs on the calling thread
    assert os_threads() == before
    with pytest.raises(ValueError, match="4096"):
        index.search(q, k=10, threads=5000)
    with pytest.raises(ValueError, match="4096"):
        index.search(q[0], k=10, threads=5000)


def test_errors_are_python_exceptions(built, tmp_path):
    index, items, _, path = built
    with pytest.raises(FileNotFoundError):
        mrl_index.Index.open(tmp_path / "missing")
    with pytest.raises(FileExistsError):
        mrl_index.Index.build(path, items[:100])
    bad = items[:200].copy()
    bad[7, 3] = np.inf
    with pytest.raises(ValueError, match="row 7"):
        mrl_index.Index.build(tmp_path / "nan", bad)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    graph = next(copy.glob("graph-*.mrl"))
    graph.write_bytes(graph.read_bytes()[:-8])
    with pytest.raises(mrl_index.IndexCorrupt):
        mrl_index.Index.open(copy)
    rebuilt = mrl_index.Index.build(copy, items[:500], force=True, coarse_dim=16,
                                    widths=[16, 32, 64])
    assert len(rebuilt) == 500
    rebuilt.verify()


def test_pickle_reopens_by_path(built):
    index, _, _, path = built
    again = pickle.loads(pickle.dumps(index))
    assert isinstance(again, mrl_index.Index)
    assert Path(again.path) == Path(path) and len(again) == len(index)
    q = matryoshka_like(2, 6)
    assert (again.search(q, 5)[0] == index.search(q, 5)[0]).all()


def test_recall_at_k():
    found = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint64)
    truth = np.array([[3, 2, 9], [7, 8, 9]], dtype=np.uint64)
    assert mrl_index.recall_at_k(found, truth) == pytest.approx((2 / 3 + 0) / 2)
    with pytest.raises(ValueError):
        mrl_index.recall_at_k(found, truth[:1])


def cli_binary():
    exe = os.environ.get("MRL_INDEX_BIN") or str(ROOT / "target" / "release" / "mrl-index")
    return exe if Path(exe).is_file() else None


def test_results_equal_the_command_line(built, tmp_path):
    index, _, _, path = built
    exe = cli_binary()
    if exe is None:
        if os.environ.get("MRL_REQUIRE_CLI") == "1":
            pytest.fail("MRL_REQUIRE_CLI=1 but no mrl-index binary (set MRL_INDEX_BIN)")
        pytest.skip("no mrl-index binary built (cargo build --release)")
    q = matryoshka_like(20, 7)
    qpath = tmp_path / "q.npy"
    np.save(qpath, q)
    out = subprocess.run(
        [exe, "search", "--index", str(path), "--queries", str(qpath), "-k", "10",
         "--threads", "1", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    found, scores = index.search(q, k=10, threads=1)
    assert len(rows) == 20
    for r in rows:
        assert r["ids"] == [int(x) for x in found[r["query"]]]
        np.testing.assert_allclose(r["scores"], scores[r["query"]], rtol=1e-6)
