"""The encoders through Python, on the committed Beauty model: item vectors and queries equal
the reference fixture made with ONNX Runtime, recommendations exclude the history and equal the
command line's, bad input raises the documented exceptions.

Needs ONNX Runtime (``pip install onnxruntime``): skipped without it, unless
MRL_REQUIRE_ONNX_RUNTIME=1 (CI), where a missing runtime fails."""

import importlib.util
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mrl_index

ROOT = Path(__file__).resolve().parents[2]
BEAUTY = ROOT / "datasets" / "beauty"
FIXTURE = BEAUTY / "fixtures" / "query_encoder_reference.json"

if importlib.util.find_spec("onnxruntime") is None and not os.environ.get("ORT_DYLIB_PATH"):
    if os.environ.get("MRL_REQUIRE_ONNX_RUNTIME") == "1":
        raise RuntimeError("MRL_REQUIRE_ONNX_RUNTIME=1 but onnxruntime is not installed")
    pytest.skip("ONNX Runtime not installed (pip install onnxruntime)", allow_module_level=True)


@pytest.fixture(scope="module")
def reference():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def encoders():
    return (
        mrl_index.ItemEncoder(BEAUTY / "item_encoder.onnx"),
        mrl_index.QueryEncoder(BEAUTY / "query_encoder.onnx"),
    )


@pytest.fixture(scope="module")
def beauty(tmp_path_factory, encoders):
    """Every Beauty item embedded by the item encoder, indexed under its P5 id (row + 1)."""
    item_encoder, _ = encoders
    features = np.load(BEAUTY / "item_features.npy")  # float16: converted on the way in
    vectors = item_encoder.encode(features)
    ids = np.arange(1, len(vectors) + 1, dtype=np.uint64)
    path = tmp_path_factory.mktemp("beauty") / "index"
    index = mrl_index.Index.build(path, vectors, ids, m=8, ef_construction=32)
    return index, vectors, path


def test_item_vectors_equal_the_reference(encoders, beauty, reference):
    item_encoder, _ = encoders
    _, vectors, _ = beauty
    assert item_encoder.in_dim == 384 and item_encoder.dim == 1024
    expect = np.array(reference["item_vectors"], dtype=np.float32)
    rows = reference["feature_rows"]
    tol = reference["tolerance_max_abs"]
    np.testing.assert_allclose(vectors[rows], expect, rtol=0, atol=tol)
    features = np.load(BEAUTY / "item_features.npy")
    one = item_encoder.encode(features[rows[0]])  # row 0 alone: identity row 0 by default
    np.testing.assert_allclose(one[0], expect[0], rtol=0, atol=tol)
    # some rows alone, with their identity rows given (what a model with an identity component
    # needs; a text-only model ignores them)
    some = item_encoder.encode(features[rows[1:]], rows=rows[1:])
    np.testing.assert_allclose(some, expect[1:], rtol=0, atol=tol)
    with pytest.raises(ValueError, match="identity rows"):
        item_encoder.encode(features[rows], rows=rows[:2])


def test_queries_equal_the_reference(encoders, beauty, reference):
    _, query_encoder = encoders
    index, vectors, _ = beauty
    assert query_encoder.dim == 1024
    histories = [h[:n] for h, n in zip(reference["item_ids"], reference["lengths"])]
    expect = np.array(reference["query"], dtype=np.float32)
    tol = reference["tolerance_max_abs"]
    by_ids = query_encoder.encode_ids(index, histories)
    assert by_ids.shape == (4, 1024) and by_ids.dtype == np.float32
    np.testing.assert_allclose(by_ids, expect, rtol=0, atol=tol)
    # the same histories as item vectors, one matrix per user
    by_vectors = query_encoder.encode([vectors[np.array(h) - 1] for h in histories])
    np.testing.assert_allclose(by_vectors, expect, rtol=0, atol=tol)
    # one history alone: a list of ids, or a 2-d matrix of its item vectors
    np.testing.assert_allclose(query_encoder.encode_ids(index, histories[1])[0], expect[1],
                               rtol=0, atol=tol)
    np.testing.assert_allclose(query_encoder.encode(vectors[np.array(histories[1]) - 1])[0],
                               expect[1], rtol=0, atol=tol)
    # a batch of equal-length histories as one 3-d array
    three = np.stack([vectors[np.array(histories[0][:4]) - 1],
                      vectors[np.array(histories[1]) - 1]])
    np.testing.assert_allclose(query_encoder.encode(three)[1], expect[1], rtol=0, atol=tol)
    # the exact top 10 of those queries is the reference's
    top, _ = index.exact_search(by_ids, 10)
    for width, expected in reference["top10_item_ids_by_width"].items():
        top_w, _ = index.exact_search(by_ids, 10, int(width))
        for got, want in zip(top_w.tolist(), expected):
            assert len(set(got) & set(want)) >= 9, (width, got, want)
    assert top.shape == (4, 10)


def test_recommend_excludes_the_history(encoders, beauty, reference):
    _, query_encoder = encoders
    index, _, _ = beauty
    histories = [h[:n] for h, n in zip(reference["item_ids"], reference["lengths"])]
    ids, scores = index.recommend(histories, k=20, encoder=query_encoder)
    assert ids.shape == (4, 20) and scores.shape == (4, 20) and ids.dtype == np.uint64
    for h, row in zip(histories, ids.tolist()):
        assert not set(h) & set(row)
    # the same as searching the encoded queries with the history as the exclude list
    queries = query_encoder.encode_ids(index, histories)
    found, found_scores = index.search(queries, k=20, exclude=histories)
    assert (found == ids).all()
    np.testing.assert_allclose(found_scores, scores, rtol=1e-6)
    # keep_history is the unfiltered search; a batch equals its users one by one
    kept, _ = index.recommend(histories, k=20, encoder=query_encoder, keep_history=True)
    assert (kept == index.search(queries, k=20)[0]).all()
    for i, h in enumerate(histories):
        alone, _ = index.recommend(h, k=20, encoder=query_encoder)
        assert (alone[0] == ids[i]).all()
    # extra filters: exclude more, or allow only some
    extra = [int(x) for x in ids[0, :5]]
    more, _ = index.recommend(histories[0], k=10, encoder=query_encoder, exclude=extra)
    assert not set(extra) & set(more[0].tolist())
    allow = [int(x) for x in ids[0, 10:20]] + histories[0][:3]
    only, _ = index.recommend(histories[0], k=10, encoder=query_encoder, allow=allow)
    assert set(only[0].tolist()) <= set(allow) - set(histories[0])
    # narrower widths and explicit plans reach the search
    narrow, _ = index.recommend(histories, k=10, encoder=query_encoder, width=64)
    assert (narrow == index.search(queries, k=10, width=64, exclude=histories)[0]).all()
    plan = "L64:3000,1024:k"
    planned, _ = index.recommend(histories, k=10, encoder=query_encoder, plan=plan, threads=1)
    assert (planned == index.search(queries, k=10, plan=plan, exclude=histories)[0]).all()


def test_recommend_releases_the_gil(encoders, beauty, ticks_during):
    _, query_encoder = encoders
    index, _, _ = beauty
    rng = np.random.default_rng(3)
    histories = [rng.integers(1, len(index) + 1, size=20).tolist() for _ in range(60)]
    during = ticks_during(lambda: index.recommend(histories, k=10, encoder=query_encoder, threads=1))
    assert during > 1000, during


def test_encoder_errors(encoders, beauty, tmp_path):
    item_encoder, query_encoder = encoders
    index, vectors, _ = beauty
    with pytest.raises(ValueError, match="999999"):
        index.recommend([1, 999999], k=5, encoder=query_encoder)
    with pytest.raises(ValueError, match="empty"):
        index.recommend([], k=5, encoder=query_encoder)
    with pytest.raises(ValueError, match="empty"):
        query_encoder.encode_ids(index, [[1, 2], []])
    with pytest.raises(ValueError, match="non-negative"):
        index.recommend([1, -2], k=5, encoder=query_encoder)
    with pytest.raises(ValueError, match="1024"):
        query_encoder.encode([vectors[:3, :100]])
    with pytest.raises(ValueError, match="384"):
        item_encoder.encode(vectors[:2])
    with pytest.raises(TypeError, match="dtype"):
        query_encoder.encode([vectors[:3].astype(np.complex64)])
    with pytest.raises(FileNotFoundError):
        mrl_index.QueryEncoder(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(ValueError, match="garbage.onnx"):
        mrl_index.QueryEncoder(garbage)
    # the item encoder is not a query encoder
    with pytest.raises(ValueError, match="query encoder"):
        mrl_index.QueryEncoder(BEAUTY / "item_encoder.onnx")
    # an index of another dimension
    small = mrl_index.Index.build(tmp_path / "small", vectors[:300, :64], coarse_dim=32,
                                  widths=[32, 64])
    with pytest.raises(ValueError, match="1024"):
        small.recommend([1, 2], k=5, encoder=query_encoder)
    # one ONNX Runtime per process: the loaded one again is fine, another is refused
    loaded = mrl_index.QueryEncoder.runtime()
    assert loaded is not None and loaded.is_file()
    mrl_index.QueryEncoder(BEAUTY / "query_encoder.onnx", runtime=loaded)
    with pytest.raises(RuntimeError, match="already loaded"):
        mrl_index.QueryEncoder(BEAUTY / "query_encoder.onnx", runtime=tmp_path / "other.so")
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.recommend([1, 2], k=0, encoder=query_encoder)
    with pytest.raises(ValueError, match="bogus"):
        index.recommend([1, 2], k=5, encoder=query_encoder, plan="bogus")


def test_encoders_pickle_by_path(encoders, beauty):
    item_encoder, query_encoder = encoders
    index, _, _ = beauty
    again = pickle.loads(pickle.dumps(query_encoder))
    assert isinstance(again, mrl_index.QueryEncoder) and again.path == query_encoder.path
    np.testing.assert_array_equal(again.encode_ids(index, [1, 2, 3]),
                                  query_encoder.encode_ids(index, [1, 2, 3]))
    items = pickle.loads(pickle.dumps(item_encoder))
    assert isinstance(items, mrl_index.ItemEncoder) and items.dim == 1024


def test_recommend_equals_the_command_line(encoders, beauty, reference):
    _, query_encoder = encoders
    index, _, path = beauty
    exe = os.environ.get("MRL_INDEX_BIN") or str(ROOT / "target" / "release" / "mrl-index")
    if not Path(exe).is_file():
        if os.environ.get("MRL_REQUIRE_CLI") == "1":
            pytest.fail("MRL_REQUIRE_CLI=1 but no mrl-index binary (set MRL_INDEX_BIN)")
        pytest.skip("no mrl-index binary built (cargo build --release)")
    for h, n in zip(reference["item_ids"], reference["lengths"]):
        history = h[:n]
        out = subprocess.run(
            [exe, "recommend", "--index", str(path), "--encoder",
             str(BEAUTY / "query_encoder.onnx"), "--history", ",".join(map(str, history)),
             "-k", "10", "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        cli = json.loads(out)
        ids, scores = index.recommend(history, k=10, encoder=query_encoder)
        assert cli["ids"] == ids[0].tolist()
        np.testing.assert_allclose(cli["scores"], scores[0], rtol=1e-5)
