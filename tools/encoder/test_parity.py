"""Parity of the exported ONNX encoders with the jax model (pytest).

The jax reference uses exactly the weights stored in the ONNX files (float16 matrices widened to
float32, read back by export_onnx.params_from_onnx), so any difference is arithmetic only.
Requirement: max |ONNX Runtime - jax| <= 1e-4 on random and real histories of varying lengths and
batch sizes; onnx.checker passes; the Rust fixture is what ONNX Runtime produces.

    .venv/bin/python -m pytest tools/encoder/test_parity.py -q
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnx
import pytest

import jax
import jax.numpy as jnp

jax.config.update("jax_default_matmul_precision", "highest")

import data as D
import export_onnx as X
import model as M

OUT = D.REPO / "datasets" / "beauty"
QPATH, IPATH = OUT / "query_encoder.onnx", OUT / "item_encoder.onnx"
FEATS = OUT / "item_features.npy"
FIXTURE = OUT / "fixtures" / "query_encoder_reference.json"
DATA_DIR = D.resolve("../shared/datasets")
TOL = 1e-4

pytestmark = pytest.mark.skipif(not (QPATH.exists() and IPATH.exists()), reason="ONNX files not exported")


@pytest.fixture(scope="module")
def env():
    params = X.params_from_onnx(QPATH, IPATH)
    feats = D.load_features(FEATS)
    item = X.ort_session(IPATH)
    query = X.ort_session(QPATH)
    vecs = X.embed_items(item, feats)
    return params, feats, item, query, vecs


def _jax_query(params, hist, lengths):
    return np.asarray(M.query_vectors(params, jnp.asarray(hist), jnp.asarray(lengths)))


def test_onnx_checker_passes():
    for p in (QPATH, IPATH):
        onnx.checker.check_model(str(p), full_check=True)
        m = onnx.load(str(p))
        assert m.opset_import[0].version == X.OPSET


def test_item_encoder_parity(env):
    params, feats, item, _, vecs = env
    ref = np.asarray(M.item_vectors(params, jnp.asarray(feats)))
    err = np.abs(vecs - ref).max()
    print(f"item encoder max abs err {err:.2e} (|v| max {np.abs(ref).max():.2f})")
    assert err <= TOL
    rng = np.random.RandomState(0)
    f = rng.standard_normal((7, 384)).astype(np.float32)
    rows = np.array([0, 5, -1, 12100, 12101, 7, 3], np.int64)    # -1 and 12101: outside the table
    got = X.embed_items(item, f, rows)
    assert np.abs(got - np.asarray(M.item_vectors(params, f, rows))).max() <= TOL
    if "id_emb" in params:  # an item the model never saw gets the text part alone
        text = f @ params["proj_w"] + params["proj_b"]
        assert np.abs(got[[2, 4]] - text[[2, 4]]).max() <= TOL
        assert np.abs(got[0] - text[0]).max() > 10 * TOL


@pytest.mark.parametrize("B,L,seed", [(1, 1, 0), (1, 50, 1), (3, 7, 2), (8, 50, 3), (5, 23, 4), (16, 13, 5)])
def test_query_parity_random(env, B, L, seed):
    params, _, _, query, vecs = env
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, L + 1, size=B).astype(np.int64)
    lengths[0] = L
    # half: real item vectors of random items; half: Gaussian vectors of the same scale
    hist = vecs[rng.randint(0, len(vecs), size=(B, L))]
    noise = rng.standard_normal((B, L, M.D)).astype(np.float32) * vecs.std()
    hist = np.where(rng.rand(B, L, 1) < 0.5, hist, noise).astype(np.float32)
    for b in range(B):
        hist[b, lengths[b]:] = rng.standard_normal((L - lengths[b], M.D)) * 100  # junk padding
    got = query.run(None, {"history": hist, "lengths": lengths})[0]
    ref = _jax_query(params, hist, lengths)
    err = np.abs(got - ref).max()
    print(f"B={B} L={L}: max abs err {err:.2e} (|q| max {np.abs(ref).max():.2f})")
    assert got.shape == (B, M.D)
    assert err <= TOL


@pytest.mark.skipif(not DATA_DIR.exists(), reason="../shared/datasets not present")
@pytest.mark.parametrize("batch", [1, 4, 64])
def test_query_parity_real_histories(env, batch):
    params, _, _, query, vecs = env
    seqs = D.load_sequences(DATA_DIR)
    hist_ids, _ = D.eval_examples(seqs, "test")
    rng = np.random.RandomState(batch)
    users = rng.choice(len(hist_ids), size=batch, replace=False)
    if batch > 1:
        users[0] = int(np.argmax([len(h) for h in hist_ids]))  # a 50-long history
    rows = [hist_ids[u] for u in users]
    lengths = np.array([len(r) for r in rows], np.int64)
    ids = D.pad_left_aligned(rows, int(lengths.max()))
    vp = np.concatenate([np.zeros((1, M.D), np.float32), vecs])
    hist = vp[ids]
    got = query.run(None, {"history": hist, "lengths": lengths})[0]
    ref = _jax_query(params, hist, lengths)
    err = np.abs(got - ref).max()
    print(f"real batch={batch} L={ids.shape[1]}: max abs err {err:.2e}")
    assert err <= TOL


def test_query_matryoshka_prefix_in_onnx(env):
    """query[:, :s] must not depend on history dims >= s in the exported graph either."""
    _, _, _, query, vecs = env
    rng = np.random.RandomState(11)
    hist = vecs[rng.randint(0, len(vecs), size=(3, 9))]
    lengths = np.array([9, 5, 1], np.int64)
    q = query.run(None, {"history": hist, "lengths": lengths})[0]
    for s in (8, 64, 256):
        h2 = hist.copy()
        h2[..., s:] = rng.standard_normal(h2[..., s:].shape)
        q2 = query.run(None, {"history": h2, "lengths": lengths})[0]
        np.testing.assert_allclose(q[:, :s], q2[:, :s], atol=1e-6, rtol=0)


@pytest.mark.skipif(not FIXTURE.exists(), reason="fixture not written")
def test_rust_fixture_matches_onnxruntime(env):
    _, feats, item, query, vecs = env
    fx = json.loads(FIXTURE.read_text())
    ids = np.asarray(fx["item_ids"], np.int64)
    lengths = np.asarray(fx["lengths"], np.int64)
    vp = np.concatenate([np.zeros((1, M.D), np.float32), vecs])
    got = query.run(None, {"history": vp[ids], "lengths": lengths})[0]
    assert np.abs(got - np.asarray(fx["query"], np.float32)).max() <= fx["tolerance_max_abs"]
    iv = X.embed_items(item, feats[fx["feature_rows"]], fx["feature_rows"])
    assert np.abs(iv - np.asarray(fx["item_vectors"], np.float32)).max() <= fx["tolerance_max_abs"]
