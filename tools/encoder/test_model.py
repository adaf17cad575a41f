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


def test_distill_loss_is_zero_when_sizes_agree_and_never_moves_the_teacher():
    rng = np.random.RandomState(11)
    full = rng.standard_normal((4, 9)).astype(np.float32)
    w = jnp.asarray(np.array([1, 1, 0, 1], np.float32))
    same = jnp.asarray(np.stack([full] * 3))                          # [S=3, P, N]
    np.testing.assert_allclose(np.asarray(M.distill_loss(same, w, 2.0)), 0.0, atol=1e-6)
    other = jnp.asarray(np.stack([rng.standard_normal((4, 9)).astype(np.float32), full, full]))
    kl = np.asarray(M.distill_loss(other, w, 1.0))
    assert kl[0] > 0.01 and abs(kl[1]) < 1e-6
    # The reference: KL(p || q) at the real positions, by hand.
    p = np.exp(full - full.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    s0 = np.asarray(other[0]); q = np.exp(s0 - s0.max(-1, keepdims=True)); q /= q.sum(-1, keepdims=True)
    ref = (np.sum(p * (np.log(p) - np.log(q)), -1) * np.asarray(w)).sum() / 3
    np.testing.assert_allclose(kl[0], ref, rtol=1e-4)
    g = jax.grad(lambda lg: M.distill_loss(lg, w, 1.5).sum())(other)
    assert np.all(np.asarray(g[-1]) == 0.0), "the full size is a stopped-gradient teacher"
    assert np.abs(np.asarray(g[0])).max() > 0


def test_mrl_loss_adds_the_weighted_distillation_term():
    rng = np.random.RandomState(12)
    params = _rand_params(13, n_blocks=1)
    feats = jnp.asarray(rng.standard_normal((30, M.FEAT_DIM)).astype(np.float32))
    ids = jnp.asarray(np.array([[3, 5, 7, 0], [1, 2, 0, 0]], np.int32))
    labels = jnp.asarray(np.array([[5, 7, 9, 0], [2, 30, 0, 0]], np.int32))
    w = (labels > 0).astype(jnp.float32)
    base, per = M.mrl_loss(params, feats, ids, labels, w)
    total, per2 = M.mrl_loss(params, feats, ids, labels, w, distill_weight=0.5, tau=2.0)
    E = M.item_vectors(params, feats)
    E_pad = jnp.concatenate([jnp.zeros((1, M.D)), E])
    z = M.sequence_forward(params, E_pad[ids]).reshape(-1, M.D)
    kd = M.distill_loss(M.mrl_logits(z, E), w.reshape(-1), 2.0).mean()
    np.testing.assert_allclose(float(total), float(base) + 0.5 * float(kd), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(per2), np.asarray(per), rtol=1e-6)
    assert float(kd) > 0


def test_prefix_agreement_counts_the_full_top10_in_each_prefix_top_d():
    import evaluate as EV
    rng = np.random.RandomState(14)
    params = _rand_params(15, n_blocks=1)
    feats = rng.standard_normal((40, M.FEAT_DIM)).astype(np.float32)
    seqs = [list(rng.randint(1, 41, size=rng.randint(3, 9))) for _ in range(37)]
    agr = EV.prefix_agreement(params, feats, seqs, "test", batch_size=16,
                              widths=(8, 64, 1024), depths=(10, 20, 40))
    assert set(agr) == {"8", "64", "1024"}
    for w, row in agr.items():
        vals = [row["10"], row["20"], row["40"]]
        assert all(0.0 <= v <= 1.0 for v in vals) and vals == sorted(vals), (w, row)
        assert row["40"] == 1.0, "every item is within the top 40 of 40"
    assert agr["1024"]["10"] == 1.0, "the full size holds its own top-10"
    # The 8-d prefix of a random model agrees far less than the full size with itself.
    assert agr["8"]["10"] < 0.9


def test_mrl_matmul_equals_the_dense_masked_product():
    """The two-matmul layer (model.mrl_matmul) skips the masked entries; junk there must not leak."""
    rng = np.random.RandomState(3)
    x = jnp.asarray(rng.standard_normal((5, 7, M.D)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((M.D, M.D)).astype(np.float32))   # junk in masked entries
    mask = jnp.asarray(M.mrl_mask())
    got = np.asarray(M.mrl_matmul(x, w, mask))
    want = np.asarray(x @ (w * mask))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    # and the masked entries really are ignored
    junk = w + jnp.asarray((1 - M.mrl_mask()) * 1e3)
    np.testing.assert_array_equal(np.asarray(M.mrl_matmul(x, junk, mask)), got)


def test_token_batches_score_every_real_position_exactly_once():
    import data as D
    rng = np.random.RandomState(0)
    lengths = list(range(1, 61)) * 3 + list(rng.randint(1, 9, size=200))
    ins = [list(rng.randint(1, 100, size=n))[-50:] for n in lengths]
    labs = [list(rng.randint(1, 100, size=len(i))) for i in ins]
    ts = D.TrainSet(ins, labs)
    want = sorted((a, b) for i, l in zip(ins, labs) for a, b in zip(i, l))
    got, shapes = [], set()
    for ids, labels, w in D.token_batches(ts, 64, np.random.RandomState(1)):
        B, L = ids.shape
        assert L in D.FINE_BUCKETS and B == max(1, 64 // L), (B, L)
        assert np.array_equal(w, (labels > 0).astype(np.float32))
        assert np.all(ids[w == 0] == 0)                      # padding carries no item
        for row_ids, row_w in zip(ids, w):                   # left-aligned: real positions first
            n = int(row_w.sum())
            assert row_w[:n].all() and not row_w[n:].any()
        got += [(int(a), int(b)) for a, b in zip(ids[w > 0], labels[w > 0])]
        shapes.add((B, L))
    assert sorted(got) == want
    assert len(shapes) == len(D.FINE_BUCKETS)                # one compiled shape per bucket


def _two_size_logits(seed):
    """A small size's and the full size's scores for 3 positions over 12 items (the middle
    position is padding): (full, small, weights, stacked [S=2, P, N] logits)."""
    rng = np.random.RandomState(seed)
    full = rng.standard_normal((3, 12)).astype(np.float32)
    small = rng.standard_normal((3, 12)).astype(np.float32)
    w = jnp.asarray(np.array([1, 0, 1], np.float32))
    return full, small, w, jnp.asarray(np.stack([small, full]))


def test_topk_distillation_is_the_kl_from_uniform_over_the_teacher_top_k():
    full, small, w, lg = _two_size_logits(21)
    got = float(M.distill_loss(lg, w, 1.0, topk=4)[0])
    ref = []
    for p in range(3):
        top = np.argsort(-full[p])[:4]
        logq = small[p] - small[p].max() - np.log(np.exp(small[p] - small[p].max()).sum())
        ref.append(np.sum(0.25 * (np.log(0.25) - logq[top])))        # KL(uniform top-4 || q)
    np.testing.assert_allclose(got, (ref[0] + ref[2]) / 2, rtol=1e-5)
    # zero exactly when the small size puts all its mass evenly on the teacher's top-K
    peaked = np.full((3, 12), -1e4, np.float32)
    for p in range(3):
        peaked[p, np.argsort(-full[p])[:4]] = 5.0
    z = M.distill_loss(jnp.asarray(np.stack([peaked, full])), w, 1.0, topk=4)
    np.testing.assert_allclose(np.asarray(z), 0.0, atol=1e-5)
    g = jax.grad(lambda x: M.distill_loss(x, w, 1.0, topk=4).sum())(lg)
    assert np.all(np.asarray(g[-1]) == 0.0), "the full size is a stopped-gradient teacher"


def test_item_identity_starts_at_zero_keeps_matryoshka_and_round_trips(tmp_path):
    rng = np.random.RandomState(22)
    params = M.to_numpy(_rand_params(23, n_blocks=1))
    feats = jnp.asarray(rng.standard_normal((30, M.FEAT_DIM)).astype(np.float32))
    text_only = np.asarray(M.item_vectors(params, feats))
    with_id = dict(params, **M.init_item_identity(jax.random.PRNGKey(0), 30, 8))
    np.testing.assert_array_equal(np.asarray(M.item_vectors(with_id, feats)), text_only)
    # a trained identity table changes the vectors; a width-s vector still reads only the
    # first s columns of the projection (prefix of a linear map)
    with_id["id_emb"] = rng.standard_normal((30, 8)).astype(np.float32)
    e = np.asarray(M.item_vectors(with_id, feats))
    assert np.abs(e - text_only).max() > 0.1
    cut = dict(with_id, id_proj_w=np.asarray(with_id["id_proj_w"]).copy())
    cut["id_proj_w"][:, 64:] += 1.0
    np.testing.assert_allclose(np.asarray(M.item_vectors(cut, feats))[:, :64], e[:, :64], rtol=0, atol=1e-5)
    # the loss has a gradient into the zero-initialised table from the first step
    ids = jnp.asarray(np.array([[3, 5, 7]], np.int32))
    labels = jnp.asarray(np.array([[5, 7, 9]], np.int32))
    start = dict(params, **M.init_item_identity(jax.random.PRNGKey(0), 30, 8))
    g = jax.grad(lambda p: M.mrl_loss(p, feats, ids, labels, jnp.ones((1, 3)))[0])(start)
    assert np.abs(np.asarray(g["id_emb"])).max() > 0
    M.save_params(with_id, tmp_path / "p.npz")
    back = M.load_params(tmp_path / "p.npz")
    np.testing.assert_array_equal(back["id_emb"], with_id["id_emb"])
    np.testing.assert_array_equal(back["id_proj_w"], with_id["id_proj_w"])


def test_cascade_loss_is_the_smooth_hinge_of_teacher_items_against_each_size_boundary():
    full, small, w, lg = _two_size_logits(31)
    got = float(M.cascade_loss(lg, w, top=3, boundary=5)[0])
    ref = []
    for p in range(3):
        teach = np.argsort(-full[p])[:3]
        bound = np.sort(small[p])[::-1][4]                          # the small size's 5th best score
        ref.append(np.mean(np.log1p(np.exp(bound - small[p][teach]))))
    np.testing.assert_allclose(got, (ref[0] + ref[2]) / 2, rtol=1e-5)
    # near zero once the teacher's items sit far above the boundary at the small size
    inside = np.zeros((3, 12), np.float32)
    for p in range(3):
        inside[p, np.argsort(-full[p])[:3]] = 40.0
    assert float(M.cascade_loss(jnp.asarray(np.stack([inside, full])), w, 3, 5)[0]) < 1e-12
    g = np.asarray(jax.grad(lambda x: M.cascade_loss(x, w, 3, 5).sum())(lg))
    assert np.all(g[-1] == 0.0), "the full size is a stopped-gradient teacher"
    for p in (0, 2):                                                 # lifts the teacher's items,
        teach = np.argsort(-full[p])[:3]                             # lowers the boundary item
        assert np.all(g[0, p, teach] < 0)
        b = np.argsort(-small[p])[4]
        assert b in teach or g[0, p, b] > 0
    assert np.all(g[0, 1] == 0.0), "padding positions have no say"


def test_mrl_loss_small_ce_weight_scales_only_the_smaller_sizes():
    rng = np.random.RandomState(32)
    params = _rand_params(33, n_blocks=1)
    feats = jnp.asarray(rng.standard_normal((30, M.FEAT_DIM)).astype(np.float32))
    ids = jnp.asarray(np.array([[3, 5, 7, 0]], np.int32))
    labels = jnp.asarray(np.array([[5, 7, 9, 0]], np.int32))
    w = (labels > 0).astype(jnp.float32)
    base, per = M.mrl_loss(params, feats, ids, labels, w)
    per = np.asarray(per)
    for a in (0.0, 0.25):
        got, _ = M.mrl_loss(params, feats, ids, labels, w, small_ce_weight=a)
        np.testing.assert_allclose(float(got), (a * per[:-1].sum() + per[-1]) / len(M.SIZES), rtol=1e-5)
    both, _ = M.mrl_loss(params, feats, ids, labels, w, cascade_weight=0.5, cascade_top=2, cascade_boundary=4)
    E = M.item_vectors(params, feats)
    E_pad = jnp.concatenate([jnp.zeros((1, M.D)), E])
    z = M.sequence_forward(params, E_pad[ids]).reshape(-1, M.D)
    idx = [M.SIZES.index(m) for m in M.CASCADE_SIZES]
    casc = M.cascade_loss(M.mrl_logits(z, E), w.reshape(-1), 2, 4, idx).mean()
    np.testing.assert_allclose(float(both), float(base) + 0.5 * float(casc), rtol=1e-4)
    assert float(casc) > 0


def test_id_dropout_drops_whole_identity_rows_and_is_off_without_a_key():
    rng = np.random.RandomState(34)
    params = dict(M.to_numpy(_rand_params(35, n_blocks=1)), **M.init_item_identity(jax.random.PRNGKey(1), 30, 8))
    params["id_emb"] = rng.standard_normal((30, 8)).astype(np.float32)
    feats = jnp.asarray(rng.standard_normal((30, M.FEAT_DIM)).astype(np.float32))
    ids = jnp.asarray(np.array([[3, 5, 7, 0]], np.int32))
    labels = jnp.asarray(np.array([[5, 7, 9, 0]], np.int32))
    w = (labels > 0).astype(jnp.float32)
    plain, _ = M.mrl_loss(params, feats, ids, labels, w)
    no_key, _ = M.mrl_loss(params, feats, ids, labels, w, id_dropout=0.5)
    assert float(no_key) == float(plain), "evaluation (no key) uses every identity"
    key = jax.random.PRNGKey(3)
    dropped, _ = M.mrl_loss(params, feats, ids, labels, w, key=key, id_dropout=0.5)
    # the same loss as the model whose table has the dropped rows zeroed and the rest doubled
    keep = np.asarray(jax.random.bernoulli(jax.random.fold_in(key, 7), 0.5, (30, 1)))
    assert 0 < keep.sum() < 30
    manual = dict(params, id_emb=np.where(keep, params["id_emb"] * 2.0, 0.0))
    ref, _ = M.mrl_loss(manual, feats, ids, labels, w, key=key)
    np.testing.assert_allclose(float(dropped), float(ref), rtol=1e-5)


def test_identity_width_keeps_the_identity_out_of_the_last_dims():
    rng = np.random.RandomState(36)
    params = dict(M.to_numpy(_rand_params(37, n_blocks=1)),
                  **M.init_item_identity(jax.random.PRNGKey(2), 30, 8, width=64))
    A = np.asarray(params["id_proj_w"])
    assert np.abs(A[:, :64]).min() > 0 and not A[:, 64:].any(), "A starts with only the first 64 columns"
    params["id_emb"] = rng.standard_normal((30, 8)).astype(np.float32)
    feats = jnp.asarray(rng.standard_normal((30, M.FEAT_DIM)).astype(np.float32))
    ids = jnp.asarray(np.array([[3, 5, 7, 0]], np.int32))
    labels = jnp.asarray(np.array([[5, 7, 9, 0]], np.int32))
    w = (labels > 0).astype(jnp.float32)
    grads = jax.grad(lambda p: M.mrl_loss(p, feats, ids, labels, w, identity_width=64)[0])(
        jax.tree_util.tree_map(jnp.asarray, params))
    g = np.asarray(grads["id_proj_w"])
    assert np.abs(g[:, :64]).max() > 0, "the first 64 columns learn"
    assert not g[:, 64:].any(), "the masked columns get no gradient, so they stay zero"
    # without the width the same (zero) columns would learn: the mask is what holds them
    g_all = np.asarray(jax.grad(lambda p: M.mrl_loss(p, feats, ids, labels, w)[0])(
        jax.tree_util.tree_map(jnp.asarray, params))["id_proj_w"])
    assert np.abs(g_all[:, 64:]).max() > 0
    # so the item vectors past dim 64 are the text projection alone
    text_only = np.asarray(M.item_vectors(dict(params, id_emb=np.zeros_like(params["id_emb"])), feats))
    np.testing.assert_array_equal(np.asarray(M.item_vectors(params, feats))[:, 64:], text_only[:, 64:])


def test_whitening_is_isotropic_and_folds_exactly_into_the_text_projection():
    rng = np.random.RandomState(3)
    # correlated, uneven features like sentence embeddings: 384 dims, a few strong directions
    x = (rng.randn(2000, 384) @ (rng.randn(384, 384) * np.linspace(2.0, 0.05, 384)[:, None]) * 0.05
         + 0.3).astype(np.float32)
    mu, P = M.feature_whitening(x, shrink=0.0)
    xw = (x - mu) @ P
    cov = np.cov(xw.astype(np.float64), rowvar=False)
    s2 = np.cov(x.astype(np.float64), rowvar=False).trace() / 384   # the features' own mean variance
    np.testing.assert_allclose(cov, s2 * np.eye(384), atol=2e-3 * s2)
    # the default shrinkage keeps every direction, and the overall scale stays about the same
    mu, P = M.feature_whitening(x)
    xw = (x - mu) @ P
    assert 0.5 * s2 < np.var(xw, axis=0).mean() <= 1.0001 * s2
    p = M.init_item_identity(jax.random.PRNGKey(0), 2000, 8)
    p.update(M.init_params(jax.random.PRNGKey(1), n_blocks=1))
    p["id_emb"] = jnp.asarray(rng.randn(2000, 8).astype(np.float32))
    trained_on_whitened = M.item_vectors(p, jnp.asarray(xw))
    folded = M.item_vectors(M.fold_whitening(p, mu, P), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(folded), np.asarray(trained_on_whitened), atol=2e-4, rtol=1e-4)


def test_title_words_share_identity_and_fold_exactly_into_the_table():
    import data as Dt
    titles = ["Maybelline Great Lash Mascara", "Maybelline Lash Sensational Mascara, Black",
              "OPI Nail Lacquer Red", "OPI Nail Envy", "", "Unique Thing"]
    item, word, weight, vocab = Dt.title_words(titles, min_df=2, max_df=0.5)
    # words of one item only are dropped; the brand features are kept when two items share them
    assert "brand:maybelline" in vocab and "brand:opi" in vocab and "brand:opi nail" in vocab
    assert "unique" not in vocab and "great" not in vocab
    assert 4 not in item and 5 not in item              # the empty title and the unique one: no words
    for r in set(item.tolist()):                        # weights 1/sqrt(number of kept words)
        k = (item == r).sum()
        np.testing.assert_allclose(weight[item == r], 1.0 / np.sqrt(k))
    words = (item, word, weight)
    rng = np.random.RandomState(5)
    p = M.init_item_identity(jax.random.PRNGKey(0), len(titles), 4)
    p["id_emb"] = jnp.asarray(rng.randn(len(titles), 4).astype(np.float32))
    p.update(M.init_title_words(len(vocab), 4))
    # zero word vectors: the same model as the plain table
    np.testing.assert_array_equal(np.asarray(M.fold_title_words(p, words)["id_emb"]), np.asarray(p["id_emb"]))
    p["word_emb"] = jnp.asarray(rng.randn(len(vocab), 4).astype(np.float32))
    folded = M.fold_title_words(p, words)
    assert "word_emb" not in folded
    dense = np.zeros((len(titles), len(vocab)), np.float32)
    dense[item, word] = weight
    np.testing.assert_allclose(np.asarray(folded["id_emb"]),
                               np.asarray(p["id_emb"]) + dense @ np.asarray(p["word_emb"]), atol=1e-5)
    # a word vector gets a gradient from every item that has the word, none from the others
    w_ml = vocab.index("brand:maybelline")
    g = jax.grad(lambda q: M.fold_title_words(q, words)["id_emb"][0].sum())(p)["word_emb"]
    assert np.abs(np.asarray(g[w_ml])).sum() > 0
    assert np.abs(np.asarray(g[vocab.index("brand:opi")])).sum() == 0
