"""Tests of the jax fMRLRec model: Matryoshka nesting, the LRU recurrence, causality, the loss.

Run: .venv/bin/python -m pytest tools/encoder/test_model.py -q
(Small random models; no data files needed. Single-threaded CPU is enough.)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pytest

import jax
import jax.numpy as jnp

jax.config.update("jax_default_matmul_precision", "highest")

import model as M


def _rand_params(seed=0, n_blocks=2):
    """Init, then randomise every entry (incl. the zero-initialised imaginary parts) so the test
    does not rely on special init values; the upper (masked) parts get junk too."""
    p = M.init_params(jax.random.PRNGKey(seed), n_blocks=n_blocks)
    rng = np.random.RandomState(seed + 1)

    def f(a):
        a = np.asarray(a)
        return jnp.asarray(a + 0.05 * rng.standard_normal(a.shape).astype(np.float32))
    return jax.tree_util.tree_map(f, p)


def _perturb_outside(params, s, rng):
    """Randomise every parameter entry that belongs to output dims >= s (outside the size-s
    sub-model), including masked weight entries."""
    def f(path, a):
        name = str(path[-1].key)
        a = np.array(a)
        noise = rng.standard_normal(a.shape).astype(np.float32)
        if a.shape == (M.D, M.D):           # (in, out): columns >= s, and rows >= s (masked for cols < s)
            a[:, s:] += noise[:, s:]
            a[s:, :s] += noise[s:, :s]
        elif a.shape == (M.FEAT_DIM, M.D):  # projector: output columns >= s
            a[:, s:] += noise[:, s:]
        elif a.shape == (M.D,):
            a[s:] += noise[s:]
        else:
            raise AssertionError(name)
        return jnp.asarray(a)
    return jax.tree_util.tree_map_with_path(f, params)


@pytest.mark.parametrize("s", [8, 16, 64, 256, 512])
def test_matryoshka_prefix_depends_only_on_submodel(s):
    rng = np.random.RandomState(s)
    params = _rand_params(1)
    feats = jnp.asarray(rng.standard_normal((20, M.FEAT_DIM)).astype(np.float32))
    hist = jnp.asarray(rng.standard_normal((3, 7, M.D)).astype(np.float32))
    z = M.sequence_forward(params, hist)
    e = M.item_vectors(params, feats)

    p2 = _perturb_outside(params, s, rng)
    hist2 = hist.at[..., s:].set(jnp.asarray(rng.standard_normal((3, 7, M.D - s)).astype(np.float32)))
    z2 = M.sequence_forward(p2, hist2)
    e2 = M.item_vectors(p2, feats)
    # exactly unchanged: no arithmetic of the prefix touches the perturbed entries
    np.testing.assert_array_equal(np.asarray(z[..., :s]), np.asarray(z2[..., :s]))
    np.testing.assert_array_equal(np.asarray(e[:, :s]), np.asarray(e2[:, :s]))
    # ... while the rest does change (the perturbation is real)
    assert np.abs(np.asarray(z[..., s:]) - np.asarray(z2[..., s:])).max() > 1e-3


def test_mrl_mask_structure():
    m = M.mrl_mask()
    assert m.sum() == M.mrl_param_count() == 699072
    for a, b in M.chunk_bounds():
        assert m[:b, a:b].all() and not m[b:, a:b].any()


def _lru_sequential(x, p, mask):
    """Plain complex recurrence h_t = lam h_{t-1} + gamma (B x_t), y_t = Re(C h_t) in numpy."""
    x = np.asarray(x, np.float64)
    nu, theta, gamma = (np.exp(np.asarray(p[k], np.float64)) for k in ("nu_log", "theta_log", "gamma_log"))
    lam = np.exp(-nu + 1j * theta)
    Bw = (np.asarray(p["B_re_w"]) + 1j * np.asarray(p["B_im_w"])) * mask
    Bb = np.asarray(p["B_re_b"]) + 1j * np.asarray(p["B_im_b"])
    Cw = (np.asarray(p["C_re_w"]) + 1j * np.asarray(p["C_im_w"])) * mask
    u = (x @ Bw + Bb) * gamma
    h = np.zeros((x.shape[0], x.shape[2]), complex)
    ys = []
    for t in range(x.shape[1]):
        h = lam * h + u[:, t]
        ys.append((h @ Cw).real + np.asarray(p["C_re_b"]))
    return np.stack(ys, 1)


def test_lru_decay_matrix_equals_recurrence():
    rng = np.random.RandomState(3)
    p = _rand_params(2, n_blocks=1)["blocks"][0]
    # push some |lambda| close to 1 so long-range terms matter
    p = dict(p, nu_log=jnp.asarray(np.log(rng.uniform(1e-3, 0.5, M.D)).astype(np.float32)))
    x = rng.standard_normal((2, 50, M.D)).astype(np.float32)
    y = np.asarray(M.lru(jnp.asarray(x), p, jnp.asarray(M.mrl_mask())))
    ref = _lru_sequential(x, p, M.mrl_mask())
    np.testing.assert_allclose(y, ref, atol=2e-3, rtol=1e-4)


def test_causal_and_left_aligned_padding_is_ignored():
    rng = np.random.RandomState(4)
    params = _rand_params(5)
    hist = rng.standard_normal((2, 9, M.D)).astype(np.float32)
    lengths = np.array([4, 9], np.int32)
    q = np.asarray(M.query_vectors(params, jnp.asarray(hist), jnp.asarray(lengths)))
    hist2 = hist.copy()
    hist2[0, 4:] = rng.standard_normal((5, M.D))     # change only the padding of row 0
    q2 = np.asarray(M.query_vectors(params, jnp.asarray(hist2), jnp.asarray(lengths)))
    np.testing.assert_array_equal(q, q2)
    q3 = np.asarray(M.query_vectors(params, jnp.asarray(hist[:1, :4]), jnp.asarray(lengths[:1])))
    np.testing.assert_allclose(q[:1], q3, atol=1e-5)


def test_mrl_logits_cumsum_equals_prefix_dot():
    rng = np.random.RandomState(6)
    z = jnp.asarray(rng.standard_normal((5, M.D)).astype(np.float32))
    e = jnp.asarray(rng.standard_normal((11, M.D)).astype(np.float32))
    lg = np.asarray(M.mrl_logits(z, e))
    for k, s in enumerate(M.SIZES):
        np.testing.assert_allclose(lg[k], np.asarray(z[:, :s] @ e[:, :s].T), rtol=1e-4, atol=1e-3)


def test_loss_is_mean_of_per_size_cross_entropy():
    rng = np.random.RandomState(7)
    params = _rand_params(8, n_blocks=1)
    feats = jnp.asarray(rng.standard_normal((30, M.FEAT_DIM)).astype(np.float32))
    ids = np.array([[3, 5, 7, 0], [1, 2, 0, 0]], np.int32)
    labels = np.array([[5, 7, 9, 0], [2, 30, 0, 0]], np.int32)
    w = (labels > 0).astype(np.float32)
    loss, per = M.mrl_loss(params, feats, jnp.asarray(ids), jnp.asarray(labels), jnp.asarray(w))
    E = np.asarray(M.item_vectors(params, feats), np.float64)
    z = np.asarray(M.sequence_forward(params, jnp.asarray(np.concatenate([np.zeros((1, M.D)), E])[ids],
                                                          dtype=jnp.float32)), np.float64)
    ref = []
    for s in M.SIZES:
        tot = 0.0
        for b, t in zip(*np.nonzero(w)):
            lg = z[b, t, :s] @ E[:, :s].T
            tot += np.log(np.exp(lg - lg.max()).sum()) + lg.max() - lg[labels[b, t] - 1]
        ref.append(tot / w.sum())
    np.testing.assert_allclose(np.asarray(per), ref, rtol=2e-4, atol=2e-4)
    assert abs(float(loss) - np.mean(ref)) < 2e-4


def test_save_load_roundtrip(tmp_path):
    params = M.to_numpy(_rand_params(9))
    # masked entries are zero in trained weights (init zero, zero gradient, decay keeps 0)
    mask = M.mrl_mask()
    for blk in params["blocks"]:
        for k in blk:
            if k.endswith("_w"):
                blk[k] = blk[k] * mask
    M.save_params(params, tmp_path / "p.npz")
    back = M.load_params(tmp_path / "p.npz")
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)
