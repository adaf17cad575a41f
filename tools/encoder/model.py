"""fMRLRec (title features, no images; optional item identity) in jax: Matryoshka LRU sequential recommender.

Facts followed (docs: ../shared/docs/fmrlrec-notes.md, the paper's public code):

* item vector  e = W_p f + b_p   (Linear 384 -> 1024, not normalised; f = MiniLM title feature),
  plus, not in the paper, an optional item-identity component a_i A (``init_item_identity``:
  a zero-initialised [N, r] table times [r, 1024]; an item outside the table gets f alone)
* block: x + LRU(MRL-LN(x)) -> h + FFN(MRL-LN(h)),  FFN(x) = w2(SiLU(gate(x)) * w1(x))
* Matryoshka sizes M = [8, 16, 32, 64, 128, 256, 512, 1024]; every square linear layer is
  block-lower-triangular (output chunk j reads only the first m_j inputs), implemented as a dense
  weight times a constant 0/1 mask; LayerNorm per chunk.
* LRU: h_t = lam * h_{t-1} + gamma * (B x_t),  y_t = Re(C h_t),  lam = exp(-nu + i theta),
  nu = exp(nu_log), theta = exp(theta_log), gamma = exp(gamma_log) (learnable, initialised to
  sqrt(1 - |lam|^2)); ring init |lam| in [r_min, r_max]. B and C are complex MRL layers with
  complex bias; real and imaginary parts are separate real arrays. No D term.
* The recurrence is evaluated as a causal decay-matrix product
  h_t = sum_{s<=t} lam^(t-s) u_s,  lam^k = exp(-k nu) (cos k theta + i sin k theta),
  which is exactly what the ONNX export does (shape taken from the input, nothing unrolled).

Sequences are LEFT-aligned: position 0 is the oldest item, positions >= length are padding. The
model is causal, so padding after the last real item never changes the real positions, and the
query vector is z[b, length_b - 1].

Weights are stored as (in, out) matrices, so a layer is x @ W + b.
"""
from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
D = SIZES[-1]
FEAT_DIM = 384

# names of the MRL square layers inside a block; each has <name>_w (in, out) and <name>_b (out)
LRU_MATS = ("B_re", "B_im", "C_re", "C_im")
FFN_MATS = ("gate", "w1", "w2")


def chunk_bounds(sizes=SIZES):
    """[(start, end)] of each Matryoshka chunk: (0,8), (8,16), (16,32), ..."""
    starts = (0,) + tuple(sizes[:-1])
    return list(zip(starts, sizes))


def mrl_mask(sizes=SIZES) -> np.ndarray:
    """0/1 mask (in, out): output chunk j (columns start_j..m_j) reads inputs < m_j."""
    d = sizes[-1]
    m = np.zeros((d, d), dtype=np.float32)
    for a, b in chunk_bounds(sizes):
        m[:b, a:b] = 1.0
    return m


def mrl_param_count(sizes=SIZES) -> int:
    return int(sum((b - a) * b for a, b in chunk_bounds(sizes)))


# ----------------------------------------------------------------------------- init

def init_params(key, n_blocks: int = 2, feat_dim: int = FEAT_DIM, sizes=SIZES,
                r_min: float = 0.0, r_max: float = 0.1) -> dict:
    """PyTorch-like init (nn.Linear: U(+-1/sqrt(fan_in)) with fan_in = m_j for chunk j).

    The imaginary parts of B and C start at zero, as in the reference code (a real nn.Linear
    converted to complex). Masked-out (upper) weight entries are zero and stay zero.
    """
    d = sizes[-1]
    bounds = np.zeros((d,), dtype=np.float32)  # per output column: 1/sqrt(fan_in)
    for a, b in chunk_bounds(sizes):
        bounds[a:b] = 1.0 / np.sqrt(b)
    mask = jnp.asarray(mrl_mask(sizes))
    bnd = jnp.asarray(bounds)

    def mrl_linear(k):
        k1, k2 = jax.random.split(k)
        w = jax.random.uniform(k1, (d, d), jnp.float32, -1.0, 1.0) * bnd[None, :] * mask
        b = jax.random.uniform(k2, (d,), jnp.float32, -1.0, 1.0) * bnd
        return w, b

    keys = jax.random.split(key, 1 + n_blocks)
    kp1, kp2 = jax.random.split(keys[0])
    pb = 1.0 / np.sqrt(feat_dim)
    params = {
        "proj_w": jax.random.uniform(kp1, (feat_dim, d), jnp.float32, -pb, pb),
        "proj_b": jax.random.uniform(kp2, (d,), jnp.float32, -pb, pb),
        "blocks": [],
    }
    for i in range(n_blocks):
        ks = jax.random.split(keys[1 + i], 8)
        u1 = jax.random.uniform(ks[0], (d,), jnp.float32)
        u2 = jax.random.uniform(ks[1], (d,), jnp.float32)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = jnp.log(u2 * np.pi * 2)
        mod = jnp.exp(-jnp.exp(nu_log))
        gamma_log = jnp.log(jnp.sqrt(1 - mod ** 2))
        blk = {
            "ln1_g": jnp.ones((d,)), "ln1_b": jnp.zeros((d,)),
            "ln2_g": jnp.ones((d,)), "ln2_b": jnp.zeros((d,)),
            "nu_log": nu_log, "theta_log": theta_log, "gamma_log": gamma_log,
        }
        wb, bb = mrl_linear(ks[2])
        wc, bc = mrl_linear(ks[3])
        blk.update({
            "B_re_w": wb, "B_re_b": bb, "B_im_w": jnp.zeros((d, d)), "B_im_b": jnp.zeros((d,)),
            "C_re_w": wc, "C_re_b": bc, "C_im_w": jnp.zeros((d, d)),
        })
        for name, k in zip(FFN_MATS, ks[4:7]):
            w, b = mrl_linear(k)
            blk[name + "_w"], blk[name + "_b"] = w, b
        params["blocks"].append(blk)
    return params


def decay_mask(params) -> dict:
    """AdamW weight-decay mask: True everywhere except biases (reference: no decay on 'bias')."""
    def f(path, _):
        name = str(path[-1].key) if hasattr(path[-1], "key") else str(path[-1])
        return not name.endswith("_b")
    return jax.tree_util.tree_map_with_path(f, params)


# ----------------------------------------------------------------------------- layers

def mrl_layernorm(x, g, b, sizes=SIZES, eps: float = 1e-5):
    """A separate LayerNorm over each Matryoshka chunk (8, 8, 16, ..., 512 wide)."""
    outs = []
    for a, e in chunk_bounds(sizes):
        c = x[..., a:e]
        mu = jnp.mean(c, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(c - mu), axis=-1, keepdims=True)
        outs.append((c - mu) * jax.lax.rsqrt(var + eps))
    return jnp.concatenate(outs, axis=-1) * g + b


def mrl_matmul(x, w, mask, sizes=SIZES):
    """x @ (w * mask) as two matmuls that skip most of the zero entries: the output columns below
    m_{-2} (512) read only the first 512 inputs, and the last chunk's columns read every input (its
    mask is all ones). Same result as the dense masked product up to float summation order; 25%
    fewer multiply-adds than it (0.79M instead of 1.05M per row at 1024)."""
    h = sizes[-2]
    lo = x[..., :h] @ (w[:h, :h] * mask[:h, :h])
    hi = x @ w[:, h:]
    return jnp.concatenate([lo, hi], axis=-1)


def mrl_linear(x, w, b, mask):
    return mrl_matmul(x, w, mask) + b


def lru_decay_matrix(nu_log, theta_log, L: int):
    """Causal decay P[t, s, :] = lam^(t-s) for s <= t, else 0; real and imaginary parts."""
    nu = jnp.exp(nu_log)
    theta = jnp.exp(theta_log)
    pos = jnp.arange(L, dtype=jnp.float32)
    k = pos[:, None] - pos[None, :]                       # t - s
    causal = (k >= 0).astype(jnp.float32)[..., None]
    k = jnp.maximum(k, 0.0)[..., None]
    mag = jnp.exp(-k * nu) * causal
    return mag * jnp.cos(k * theta), mag * jnp.sin(k * theta)


def lru(x, p, mask):
    """x: [B, L, D] real. Returns Re(C h) with h the complex LRU state at every position."""
    L = x.shape[1]
    gamma = jnp.exp(p["gamma_log"])
    u_re = mrl_linear(x, p["B_re_w"], p["B_re_b"], mask) * gamma
    u_im = mrl_linear(x, p["B_im_w"], p["B_im_b"], mask) * gamma
    P_re, P_im = lru_decay_matrix(p["nu_log"], p["theta_log"], L)
    mix = lambda P, u: jnp.einsum("tsd,bsd->btd", P, u)
    h_re = mix(P_re, u_re) - mix(P_im, u_im)
    h_im = mix(P_re, u_im) + mix(P_im, u_re)
    return mrl_matmul(h_re, p["C_re_w"], mask) - mrl_matmul(h_im, p["C_im_w"], mask) + p["C_re_b"]


def _dropout(x, rate, key):
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def block(x, p, mask, dropout: float = 0.0, key=None):
    ks = jax.random.split(key, 3) if key is not None else (None, None, None)
    h = x + _dropout(lru(mrl_layernorm(x, p["ln1_g"], p["ln1_b"]), p, mask), dropout, ks[0])
    y = mrl_layernorm(h, p["ln2_g"], p["ln2_b"])
    gate = jax.nn.silu(mrl_linear(y, p["gate_w"], p["gate_b"], mask))
    a = _dropout(mrl_linear(y, p["w1_w"], p["w1_b"], mask), dropout, ks[1])
    return h + _dropout(mrl_linear(gate * a, p["w2_w"], p["w2_b"], mask), dropout, ks[2])


# ----------------------------------------------------------------------------- model

def init_item_identity(key, n_items: int, rank: int, d: int = D, width: int = 0) -> dict:
    """The item-identity component: e_i = W_p f_i + b_p + a_i A, with a [N, rank] zero at the
    start (so a warm-started model is unchanged) and A [rank, D] uniform +-1/sqrt(rank) (so a gets
    a gradient from the first step). Row i belongs to item id i+1, like the feature rows.
    ``width`` > 0: A's columns from ``width`` on start at zero, and ``mrl_loss`` with the same
    ``identity_width`` keeps them there, so the identity feeds only the first ``width`` dims."""
    b = 1.0 / np.sqrt(rank)
    A = jax.random.uniform(key, (rank, d), jnp.float32, -b, b)
    if width:
        A = A * identity_columns(width, d)
    return {"id_emb": jnp.zeros((n_items, rank), jnp.float32), "id_proj_w": A}


def init_title_words(n_words: int, rank: int) -> dict:
    """Title-word vectors for the item-identity component: item i's identity row becomes
    ``a_i + sum_k w_ik v_k`` over its title words k (``data.title_words``), so items that share a
    brand or a product word share part of their identity. Zero at the start (the model is
    unchanged); ``fold_title_words`` turns them into plain identity rows."""
    return {"word_emb": jnp.zeros((n_words, rank), jnp.float32)}


def fold_title_words(params, words):
    """Parameters with ``word_emb`` -> the same model as a plain identity table: ``id_emb`` plus
    each row's weighted sum of its word vectors (exact; differentiable, so training calls it
    inside the loss). ``words``: (item [nnz], word [nnz], weight [nnz]) from ``data.title_words``.
    Parameters without ``word_emb`` come back unchanged. What is saved and exported is folded, so
    a cold item (outside the table) gets the title projection alone, as before."""
    if "word_emb" not in params:
        return params
    item, word, weight = (jnp.asarray(a) for a in words)
    table = params["id_emb"]
    add = jax.ops.segment_sum(weight[:, None] * params["word_emb"][word], item, num_segments=table.shape[0])
    out = {k: v for k, v in params.items() if k != "word_emb"}
    out["id_emb"] = table + add
    return out


def identity_columns(width: int, d: int = D):
    """[d] float mask: 1 for the item vector's dims below ``width``, 0 from there on."""
    return (jnp.arange(d) < width).astype(jnp.float32)


def item_vectors(params, feats, rows=None):
    """[N, 384] features -> [N, 1024] item vectors (prefix s = first s columns): the text
    projection, plus the item-identity component ``id_emb[rows] @ id_proj_w`` when the model
    has one (``init_item_identity``). ``rows`` [N]: each item's identity row; a row outside the
    table (e.g. -1) gets the text part alone. Default: row i of ``feats`` is identity row i (the
    training catalogue). This is what item_encoder.onnx computes (its ``rows`` input)."""
    e = feats @ params["proj_w"] + params["proj_b"]
    if "id_emb" in params:
        table = params["id_emb"]
        if rows is None:
            if feats.shape[0] != table.shape[0]:
                raise ValueError(f"{feats.shape[0]} feature rows but {table.shape[0]} identity rows: pass rows")
            ident = table
        else:
            rows = jnp.asarray(rows)
            valid = (rows >= 0) & (rows < table.shape[0])
            ident = jnp.where(valid[:, None], jnp.asarray(table)[jnp.where(valid, rows, 0)], 0.0)
        e = e + ident @ params["id_proj_w"]
    return e


def feature_whitening(feats, shrink: float = 0.01):
    """ZCA whitening of the item features, at the features' own overall scale: returns (mu [F],
    P [F, F]) such that ``(feats - mu) @ P`` has covariance ``s^2 I`` with s^2 the mean variance
    per dim of ``feats``, up to the shrinkage: ``shrink`` times the mean eigenvalue is added to
    every eigenvalue first (so a direction of variance l ends at s^2 l / (l + shrink mean)), so
    directions of almost no variance are not blown up into noise."""
    x = np.asarray(feats, np.float64)
    mu = x.mean(axis=0)
    lam, U = np.linalg.eigh(np.cov(x - mu, rowvar=False))
    lam = np.clip(lam, 0.0, None)
    mean = lam.mean()
    P = (U * (np.sqrt(mean) / np.sqrt(lam + shrink * mean))) @ U.T
    return mu.astype(np.float32), P.astype(np.float32)


def fold_whitening(params, mu, P):
    """Parameters trained on whitened features ``(f - mu) @ P`` -> the same model on raw features:
    the text projection becomes ``P @ proj_w`` and its bias ``proj_b - mu @ P @ proj_w`` (exact,
    the projection is linear), so evaluation and export take the raw features unchanged."""
    W = jnp.asarray(P) @ params["proj_w"]
    return dict(params, proj_w=W, proj_b=params["proj_b"] - jnp.asarray(mu) @ W)


def sequence_forward(params, hist, dropout: float = 0.0, key=None):
    """hist: [B, L, 1024] item vectors, left-aligned. Returns z: [B, L, 1024] (causal)."""
    mask = jnp.asarray(mrl_mask())
    n = len(params["blocks"])
    keys = jax.random.split(key, n + 1) if key is not None else [None] * (n + 1)
    x = _dropout(hist, dropout, keys[0])
    for i, p in enumerate(params["blocks"]):
        x = block(x, p, mask, dropout, keys[i + 1])
    return x


def query_vectors(params, hist, lengths):
    """Query z at the last real position of each left-aligned history: [B, 1024]."""
    z = sequence_forward(params, hist)
    idx = jnp.clip(lengths - 1, 0, hist.shape[1] - 1)
    return jnp.take_along_axis(z, idx[:, None, None], axis=1)[:, 0, :]


def mrl_logits(z, items, sizes=SIZES):
    """Scores at every Matryoshka size with one full-width matmul's worth of work.

    z: [P, D], items: [N, D] -> [len(sizes), P, N]; entry k is z[:, :m_k] @ items[:, :m_k].T,
    computed as per-chunk partial products and a running sum over chunks. (A running sum, not
    ``jnp.cumsum``: on XLA's CPU backend the cumsum over the stacked [S, P, N] products made the
    loss's forward and backward 10x slower, same values bit for bit.)
    """
    out, acc = [], None
    for a, b in chunk_bounds(sizes):
        part = z[:, a:b] @ items[:, a:b].T
        acc = part if acc is None else acc + part
        out.append(acc)
    return jnp.stack(out, axis=0)


def distill_loss(logits, w, tau: float = 1.0, topk: int = 0):
    """Self-distillation across sizes: KL(softmax(t/tau) || softmax(s_k/tau)) from the full size's
    scores t (a stopped-gradient teacher) to every smaller size's s_k, averaged over the real
    positions (weights ``w`` [P]); scaled by tau**2 so its gradient does not shrink with tau.

    ``topk`` > 0: the teacher is instead uniform over the full size's own top ``topk`` items
    (a listwise hard-target form: each smaller size's cross-entropy of those items, minus its
    minimum log(topk)), which asks every size to rank exactly the full size's top items high --
    what a cascade needs -- however flat the full size's softmax is.

    logits: [S, P, N] (``mrl_logits``) -> [S-1] per smaller size. The teacher receives no
    gradient: the term only moves the small sizes towards the full size's ranking.
    """
    t = jax.lax.stop_gradient(logits[-1]) / tau                      # [P, N]
    log_q = jax.nn.log_softmax(logits[:-1] / tau, axis=-1)           # [S-1, P, N]
    if topk:
        top = jax.lax.top_k(t, topk)[1]                              # [P, K]
        lq = jnp.take_along_axis(log_q, jnp.broadcast_to(top[None], (log_q.shape[0],) + top.shape),
                                 axis=-1)                            # [S-1, P, K]
        kl = -lq.mean(-1) - np.log(topk)                             # KL(uniform top-K || q)
    else:
        log_p = jax.nn.log_softmax(t, axis=-1)
        p = jnp.exp(log_p)
        kl = jnp.sum(p[None] * (log_p[None] - log_q), axis=-1)       # [S-1, P]
    return (kl * w[None]).sum(-1) / jnp.maximum(w.sum(), 1.0) * tau * tau


CASCADE_SIZES = (64, 128, 256, 512)  # the widths a cascade ranks candidates at before the full one
_CASCADE_ROWS = tuple(SIZES.index(m) for m in CASCADE_SIZES)  # their rows in ``mrl_logits``


def cascade_loss(logits, w, top: int = 10, boundary: int = 100, size_index=None, sigma: float = 1.0):
    """What a cascade needs, asked for directly: every one of the full size's top ``top`` items
    should score above each smaller size's own ``boundary``-th best item at that size.

    For size k, position p, teacher item i (the full size's top ``top``, stopped gradient) and
    the item b at rank ``boundary`` in size k's own ranking, the term is
    ``sigma * softplus((s_k[p, b] - s_k[p, i]) / sigma)``: a smooth hinge that lifts the teacher's
    items above the boundary and pushes the boundary item down, and is near zero once an item is
    well inside. Averaged over the ``top`` items and the real positions (weights ``w`` [P]).

    logits: [S, P, N] (``mrl_logits``); ``size_index``: which rows of ``logits`` to score
    (default: every smaller size). Returns one value per scored size. The full size (the
    teacher) gets no gradient.
    """
    if size_index is None:
        size_index = range(logits.shape[0] - 1)
    t = jax.lax.stop_gradient(logits[-1])
    teach = jax.lax.top_k(t, top)[1]                                 # [P, top]
    den = jnp.maximum(w.sum(), 1.0)
    out = []
    for k in size_index:
        s = logits[k]
        # (the barrier keeps XLA's CPU backend on its top-k kernel: slicing the indices straight
        # away turns the top-k into a full sort, 40x slower)
        b = jax.lax.optimization_barrier(jax.lax.top_k(jax.lax.stop_gradient(s), boundary)[1])[:, -1:]
        gap = jnp.take_along_axis(s, b, axis=-1) - jnp.take_along_axis(s, teach, axis=-1)
        per = (sigma * jax.nn.softplus(gap / sigma)).mean(-1)        # [P]
        out.append((per * w).sum() / den)
    return jnp.stack(out)


def mrl_loss(params, feats, ids, labels, weights, dropout: float = 0.0, key=None,
             distill_weight: float = 0.0, tau: float = 1.0, topk: int = 0,
             cascade_weight: float = 0.0, cascade_top: int = 10, cascade_boundary: int = 100,
             small_ce_weight: float = 1.0, id_dropout: float = 0.0, identity_width: int = 0):
    """Mean over sizes of the full-catalogue softmax cross-entropy of the next item, plus
    ``distill_weight`` times the mean over the smaller sizes of ``distill_loss``, plus
    ``cascade_weight`` times the mean over ``CASCADE_SIZES`` below the full one of
    ``cascade_loss`` (both 0: the paper's loss exactly). ``small_ce_weight`` < 1 scales the
    smaller sizes' cross-entropies (0: they learn from the full size alone, US-Nets' in-place
    distillation); the full size's keeps weight 1/len(SIZES) either way. ``id_dropout`` (with a
    ``key``): each item's identity part is dropped with this probability at this step (scaled
    up otherwise, as dropout does), so the model cannot lean on an item's identity alone.
    ``identity_width`` > 0: the identity part reaches only the item vector's first
    ``identity_width`` dims (A's other columns get no gradient; ``init_item_identity`` starts
    them at zero, so they stay zero and the exported A needs nothing special), so the last
    chunks carry the text projection alone.

    feats: [N, 384] (item id i has row i-1); ids, labels: [B, L] int32 item ids (0 = pad), left-
    aligned; weights: [B, L] float (1 at real positions). Returns (loss, per-size losses), the
    per-size losses being the cross-entropies alone.
    """
    if id_dropout > 0.0 and key is not None and "id_emb" in params:
        keep = jax.random.bernoulli(jax.random.fold_in(key, 7), 1.0 - id_dropout, (feats.shape[0], 1))
        params = dict(params, id_emb=jnp.where(keep, params["id_emb"] / (1.0 - id_dropout), 0.0))
    if identity_width and "id_proj_w" in params:
        params = dict(params, id_proj_w=params["id_proj_w"] * identity_columns(identity_width,
                                                                              params["id_proj_w"].shape[1]))
    E = item_vectors(params, feats)                                  # [N, D]
    E_pad = jnp.concatenate([jnp.zeros((1, E.shape[1]), E.dtype), E], axis=0)
    hist = E_pad[ids]                                                # [B, L, D]
    z = sequence_forward(params, hist, dropout, key)
    B, L, Dm = z.shape
    logits = mrl_logits(z.reshape(B * L, Dm), E)                     # [S, P, N]
    tgt = jnp.clip(labels.reshape(-1) - 1, 0, E.shape[0] - 1)
    lse = jax.nn.logsumexp(logits, axis=-1)                          # [S, P]
    tl = jnp.take_along_axis(logits, tgt[None, :, None], axis=-1)[..., 0]
    w = weights.reshape(-1)
    per_size = ((lse - tl) * w[None]).sum(-1) / jnp.maximum(w.sum(), 1.0)
    if small_ce_weight == 1.0:
        loss = per_size.mean()                # the paper's loss, bit for bit as before
    else:
        loss = (small_ce_weight * per_size[:-1].sum() + per_size[-1]) / per_size.shape[0]
    if distill_weight:
        loss = loss + distill_weight * distill_loss(logits, w, tau, topk).mean()
    if cascade_weight:
        loss = loss + cascade_weight * cascade_loss(logits, w, cascade_top, cascade_boundary,
                                                    _CASCADE_ROWS).mean()
    return loss, per_size


# ----------------------------------------------------------------------------- helpers

def count_params(params, dense: bool = False) -> int:
    """Number of trainable entries; dense=False counts only the unmasked MRL weights."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    total = 0
    for path, v in leaves:
        name = str(path[-1].key) if hasattr(path[-1], "key") else ""
        if not dense and name.endswith("_w") and v.shape == (D, D):
            total += mrl_param_count()
        else:
            total += int(np.prod(v.shape))
    return total


def to_numpy(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float32), params)


def round_f16(params):
    """The weights as the ONNX export stores them: every matrix rounded to float16."""
    def f(path, a):
        name = str(path[-1].key) if hasattr(path[-1], "key") else ""
        a = np.asarray(a, dtype=np.float32)
        if name.endswith("_w") or name == "id_emb":
            return a.astype(np.float16).astype(np.float32)
        return a
    return jax.tree_util.tree_map_with_path(f, params)


ITEM_KEYS = ("proj_w", "proj_b", "id_emb", "id_proj_w")  # the item side; id_* only with identity


def save_params(params, path):
    """npz with only the unmasked MRL weight entries (66.7%), float32."""
    mask = mrl_mask().astype(bool)
    flat = {k: np.asarray(params[k], dtype=np.float32) for k in ITEM_KEYS if k in params}
    flat["n_blocks"] = np.array(len(params["blocks"]))
    for i, blk in enumerate(params["blocks"]):
        for k, v in blk.items():
            v = np.asarray(v, dtype=np.float32)
            flat[f"b{i}.{k}"] = v[mask] if (k.endswith("_w") and v.shape == (D, D)) else v
    np.savez(path, **flat)


def load_params(path) -> dict:
    mask = mrl_mask().astype(bool)
    z = np.load(path)
    n = int(z["n_blocks"])
    params = {k: z[k].astype(np.float32) for k in ITEM_KEYS if k in z.files}
    params["blocks"] = []
    for i in range(n):
        blk = {}
        pre = f"b{i}."
        for key in z.files:
            if not key.startswith(pre):
                continue
            k = key[len(pre):]
            v = z[key].astype(np.float32)
            if k.endswith("_w") and v.ndim == 1:
                full = np.zeros((D, D), dtype=np.float32)
                full[mask] = v
                v = full
            blk[k] = v
        params["blocks"].append(blk)
    return params
