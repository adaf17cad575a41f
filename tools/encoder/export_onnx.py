"""Export the trained fMRLRec weights as two ONNX graphs, built node by node with onnx.helper.

item_encoder.onnx   features [N, 384] float32          -> item_vectors [N, 1024] float32
                    (e = f W_p + b_p; a width-s item vector is the first s columns)
                    A model with an item-identity component (model.init_item_identity) also
                    takes rows [N] int64 (each item's row in its table of T trained items; a row
                    outside 0..T-1, e.g. -1, for an item it never saw) and adds
                    id_emb[rows] A (float16 table and A, rank r) for the valid rows.
query_encoder.onnx  history [B, L, 1024] float32 (item vectors from item_encoder, LEFT-aligned:
                    row b holds its items oldest-first at positions 0..lengths[b]-1; positions
                    >= lengths[b] are ignored (zeroed inside the graph), any value there is fine),
                    lengths [B] int64 in 1..L
                    -> query [B, 1024] float32 (the last block's output at position lengths[b]-1;
                    a width-s query is the first s columns; score = query[:s] . item_vector[:s])

B and L are dynamic (L = 1..50 is what the model was trained on; any L >= 1 runs). Nothing is
unrolled: the LRU recurrence h_t = sum_{s<=t} lam^(t-s) u_s is a causal decay-matrix product whose
[L, L, 1024] shape comes from Shape(history) (Range -> Exp/Cos/Sin -> batched MatMul). Complex
numbers are carried as real and imaginary parts. Matryoshka square layers are stored per output
chunk (chunk j: a [m_j, w_j] matrix reading x[..., :m_j]), so only the 66.7% non-zero block-lower-
triangular entries are stored; chunk outputs are concatenated. Weight matrices are float16
initializers followed by Cast to float32; biases, LayerNorm and LRU parameters are float32. All
arithmetic is float32. In the last block only the last real position goes through C, the residual
and the FFN (per-position ops), which is the same result as computing every position.

query_encoder.onnx also has a step interface on the same weights (add_step_branch): a user's LRU
states carried from the previous item, plus one new item, give the new query and states at a cost
that does not grow with the history:
                    item [N, 1024] float32, state_b{i}_re, state_b{i}_im [N, 1024] float32 per
                    block i (zeros for a user with no history)
                    -> step_query [N, 1024] float32, next_state_b{i}_re, next_state_b{i}_im [N, 1024]
The step inputs are initializers with empty defaults (N = 0), so callers of the full interface
feed only history and lengths; step callers feed an empty history ([0, 1, 1024], lengths [0]).

    python tools/encoder/export_onnx.py --params .work/beauty/best_params.npz --out-dir datasets/beauty
    python tools/encoder/export_onnx.py --from-onnx datasets/beauty --out-dir datasets/beauty
        (the weights read back from the committed ONNX files; this reproduces them byte for byte)
    (both also write datasets/beauty/fixtures/query_encoder_reference.json and
    query_encoder_step_reference.json unless --no-fixtures)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import model as M

OPSET = 17
IR_VERSION = 8
F32 = TensorProto.FLOAT


class G:
    """A tiny graph builder: unique names, initializers, nodes."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0
        self._consts = {}
        self._named = {}   # initializer name -> array: a second init() of a name reuses it
        self._casts = {}   # float16 weight name -> the name of its float32 Cast

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def op(self, op_type, inputs, base=None, **attrs):
        out = self.name(base or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def init(self, name, arr):
        """An initializer; naming one again (the step branch reuses the weights) must give the
        same array, and returns the existing one: every weight is stored once."""
        arr = np.ascontiguousarray(arr)
        if name in self._named:
            old = self._named[name]
            if old.dtype != arr.dtype or old.shape != arr.shape or not np.array_equal(old, arr):
                raise ValueError(f"initializer {name!r} given twice with different values")
            return name
        self._named[name] = arr
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op_to(self, op_type, inputs, out, **attrs):
        """A node whose output has the given (graph output) name."""
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def const_i64(self, vals):
        key = ("i64",) + tuple(vals)
        if key not in self._consts:
            self._consts[key] = self.init(self.name("c_i64"), np.asarray(vals, dtype=np.int64))
        return self._consts[key]

    def const_f32(self, val):
        key = ("f32", float(val))
        if key not in self._consts:
            self._consts[key] = self.init(self.name("c_f32"), np.asarray(val, dtype=np.float32))
        return self._consts[key]

    def weight_f16(self, name, arr):
        """float16 initializer + Cast to float32; returns the float32 tensor's name. A weight
        used twice (full and step branch) has one initializer and one Cast, so ONNX Runtime
        folds it into one float32 copy."""
        self.init(name, np.asarray(arr, dtype=np.float16))
        if name not in self._casts:
            self._casts[name] = self.op("Cast", [name], base=name + "_f32", to=F32)
        return self._casts[name]

    def slice_last(self, x, a, b):
        return self.op("Slice", [x, self.const_i64([a]), self.const_i64([b]), self.const_i64([-1])])


def mrl_linear(g: G, x, w, b, prefix, with_bias=True):
    """Block-lower-triangular layer: concat_j( x[..., :m_j] @ W[:m_j, chunk_j] ) + b."""
    outs = []
    for j, (a, e) in enumerate(M.chunk_bounds()):
        wj = g.weight_f16(f"{prefix}.chunk{j}", w[:e, a:e])
        outs.append(g.op("MatMul", [g.slice_last(x, 0, e), wj]))
    y = g.op("Concat", outs, axis=-1)
    if with_bias:
        y = g.op("Add", [y, g.init(f"{prefix}.bias", np.asarray(b, np.float32))])
    return y


def mrl_layernorm(g: G, x, gamma, beta, prefix, eps=1e-5):
    outs = []
    for j, (a, e) in enumerate(M.chunk_bounds()):
        s = g.init(f"{prefix}.scale{j}", np.asarray(gamma[a:e], np.float32))
        bb = g.init(f"{prefix}.bias{j}", np.asarray(beta[a:e], np.float32))
        outs.append(g.op("LayerNormalization", [g.slice_last(x, a, e), s, bb], axis=-1, epsilon=eps))
    return g.op("Concat", outs, axis=-1)


def decay_mix(g: G, P, u):
    """h[b, t, d] = sum_s P[t, s, d] u[b, s, d] as a batched MatMul over d."""
    PT = g.op("Transpose", [P], perm=[2, 0, 1])        # [D, T, S]
    uT = g.op("Transpose", [u], perm=[2, 1, 0])        # [D, S, B]
    h = g.op("MatMul", [PT, uT])                       # [D, T, B]
    return g.op("Transpose", [h], perm=[2, 1, 0])      # [B, T, D]


def state_names(i):
    """The step interface's state tensors of block i: (inputs re, im), (outputs re, im)."""
    return (f"state_b{i}_re", f"state_b{i}_im"), (f"next_state_b{i}_re", f"next_state_b{i}_im")


def block_out(g, p, pre, x, h_re, h_im):
    """A block after its LRU: x + Re(C h), then pre-LN -> gated FFN -> residual (the same
    nodes in the full and the step branch)."""
    out = g.op("Sub", [mrl_linear(g, h_re, p["C_re_w"], p["C_re_b"], f"{pre}.C_re"),
                       mrl_linear(g, h_im, p["C_im_w"], None, f"{pre}.C_im", with_bias=False)])
    h = g.op("Add", [x, out])
    y2 = mrl_layernorm(g, h, p["ln2_g"], p["ln2_b"], f"{pre}.ln2")
    gt = mrl_linear(g, y2, p["gate_w"], p["gate_b"], f"{pre}.gate")
    gt = g.op("Mul", [gt, g.op("Sigmoid", [gt])])                  # SiLU
    a = mrl_linear(g, y2, p["w1_w"], p["w1_b"], f"{pre}.w1")
    f = mrl_linear(g, g.op("Mul", [gt, a]), p["w2_w"], p["w2_b"], f"{pre}.w2")
    return g.op("Add", [h, f])


def add_step_branch(g: G, params, lru_params):
    """The step interface: one new item per user, the carried LRU states in, the query and the
    new states out. It reads the same initializers (and float32 Casts) as the full branch.

    Block i: y = LN1(x); u = gamma * (B y) (complex); h' = lam * h + u; x' = x + Re(C h');
    x'' = x' + FFN(LN2(x')). Starting from h = 0 and feeding a history item by item gives h'
    = sum_{s<=t} lam^(t-s) u_s, the full branch's state at the last position, so step_query
    after the t-th item is the full branch's query of those t items (up to float rounding).
    lam = exp(-nu) (cos theta + i sin theta) is the full branch's lam^k at k = 1.

    The computation sits in the then-branch of an If on N > 0, so a run that leaves the step
    inputs at their empty defaults (a caller of the full branch) executes one If node and an
    else-branch of Identity nodes, not the 355 nodes of the step on empty tensors.
    Returns the graph inputs and outputs to add.
    """
    nb = len(params["blocks"])
    lam = []
    for gamma, nu, theta in lru_params:               # constants: folded when the session loads
        mag = g.op("Exp", [g.op("Neg", [nu])])
        lam.append((gamma, g.op("Mul", [mag, g.op("Cos", [theta])]), g.op("Mul", [mag, g.op("Sin", [theta])])))
    n = g.op("Shape", ["item"], start=0, end=1)      # [1]: N
    cond = g.op("Greater", [n, g.const_i64([0])])
    outer_nodes, g.nodes = g.nodes, []
    n_casts = len(g._casts)
    x = "item"
    step_out = []
    for i, p in enumerate(params["blocks"]):
        pre = f"b{i}"
        gamma, l_re, l_im = lam[i]
        h_re, h_im = state_names(i)[0]
        y = mrl_layernorm(g, x, p["ln1_g"], p["ln1_b"], f"{pre}.ln1")
        u_re = g.op("Mul", [mrl_linear(g, y, p["B_re_w"], p["B_re_b"], f"{pre}.B_re"), gamma])
        u_im = g.op("Mul", [mrl_linear(g, y, p["B_im_w"], p["B_im_b"], f"{pre}.B_im"), gamma])
        n_re = g.op("Add", [g.op("Sub", [g.op("Mul", [l_re, h_re]), g.op("Mul", [l_im, h_im])]), u_re])
        n_im = g.op("Add", [g.op("Add", [g.op("Mul", [l_re, h_im]), g.op("Mul", [l_im, h_re])]), u_im])
        step_out += [n_re, n_im]
        x = block_out(g, p, pre, x, n_re, n_im)
    if len(g._casts) != n_casts:
        raise AssertionError("the step branch must only reuse the full branch's weights")
    then_outs = [g.op("Identity", [t]) for t in [x] + step_out]
    then_nodes, g.nodes = g.nodes, outer_nodes
    out_names = ["step_query"] + [name for i in range(nb) for name in state_names(i)[1]]
    vi = lambda name: helper.make_tensor_value_info(name, F32, ["N", M.D])
    then_graph = helper.make_graph(then_nodes, "step", [], [vi(t) for t in then_outs])
    else_outs = [g.name("empty") for _ in out_names]
    else_graph = helper.make_graph([helper.make_node("Identity", ["item"], [e], name=e) for e in else_outs],
                                   "no_step", [], [vi(e) for e in else_outs])
    g.nodes.append(helper.make_node("If", [cond], out_names, name="step", then_branch=then_graph,
                                    else_branch=else_graph))
    # Defaults for the step inputs: empty batches, so a caller of the full branch alone feeds
    # only history and lengths (ONNX IR >= 4: an initializer named like an input is its default).
    inputs = [vi("item")]
    g.init("item", np.zeros((0, M.D), np.float32))
    for i in range(nb):
        for name in state_names(i)[0]:
            inputs.append(vi(name))
            g.init(name, np.zeros((0, M.D), np.float32))
    return inputs, [vi(name) for name in out_names]


STEP_META = {
    "step_inputs": "item [N, 1024] float32 (one new item vector per user); state_b{i}_re, state_b{i}_im "
                   "[N, 1024] float32 for each block i (the LRU state carried from the previous step; "
                   "zeros for a user with no history). All default to empty batches (N = 0).",
    "step_outputs": "step_query [N, 1024] float32 (= query of the history including item); "
                    "next_state_b{i}_re, next_state_b{i}_im [N, 1024] float32 (the state to carry)",
}


def window_note(params, window: int = 50) -> str:
    """The window rule as the trained |lam| = exp(-exp(nu_log)) gives it (metadata step_window)."""
    lam = max(float(np.exp(-np.exp(np.asarray(p["nu_log"], np.float64))).max()) for p in params["blocks"])
    if window * lam ** window < 1e-20:
        rule = (f"streaming a whole history equals re-encoding its last {window} items within float32 "
                "rounding")
    else:
        rule = f"streaming a whole history does NOT equal re-encoding its last {window} items"
    return f"max |lam| = {lam:.4f}, |lam|^{window} = {lam ** window:.1e}: {rule}"


def build_query_model(params, step: bool = True) -> onnx.ModelProto:
    """The query encoder; with step, also the step interface (add_step_branch) on the same weights."""
    g = G()
    lru_params = []
    hist = "history"
    lengths = "lengths"
    shape = g.op("Shape", [hist])
    L = g.op("Gather", [shape, g.const_i64([1])], axis=0)           # [1]
    L0 = g.op("Squeeze", [L, g.const_i64([0])])                      # scalar
    zero = g.init(g.name("zero"), np.array(0, np.int64))
    one = g.init(g.name("one"), np.array(1, np.int64))
    pos_i = g.op("Range", [zero, L0, one])                          # [L] int64
    pos = g.op("Cast", [pos_i], to=F32)
    # causal time differences k = t - s and their mask, [L, L, 1]
    diff = g.op("Sub", [g.op("Unsqueeze", [pos, g.const_i64([1])]), g.op("Unsqueeze", [pos, g.const_i64([0])])])
    causal = g.op("Cast", [g.op("GreaterOrEqual", [diff, g.const_f32(0.0)])], to=F32)
    kd = g.op("Unsqueeze", [g.op("Relu", [diff]), g.const_i64([2])])
    causal = g.op("Unsqueeze", [causal, g.const_i64([2])])
    # zero the padding (positions >= length): [B, L, 1] bool
    valid = g.op("Less", [g.op("Unsqueeze", [pos_i, g.const_i64([0])]),
                          g.op("Unsqueeze", [lengths, g.const_i64([1])])])
    valid3 = g.op("Unsqueeze", [valid, g.const_i64([2])])
    x = g.op("Where", [valid3, hist, g.const_f32(0.0)])
    # index of the last real position, [B, 1, D]
    last = g.op("Sub", [lengths, one])
    last = g.op("Reshape", [last, g.const_i64([-1, 1, 1])])
    last = g.op("Expand", [last, g.const_i64([1, 1, M.D])])

    def gather_last(t):
        return g.op("GatherElements", [t, last], axis=1)             # [B, 1, D]

    nb = len(params["blocks"])
    for i, p in enumerate(params["blocks"]):
        pre = f"b{i}"
        final = i == nb - 1
        y = mrl_layernorm(g, x, p["ln1_g"], p["ln1_b"], f"{pre}.ln1")
        gamma = g.op("Exp", [g.init(f"{pre}.gamma_log", np.asarray(p["gamma_log"], np.float32))])
        nu = g.op("Exp", [g.init(f"{pre}.nu_log", np.asarray(p["nu_log"], np.float32))])
        theta = g.op("Exp", [g.init(f"{pre}.theta_log", np.asarray(p["theta_log"], np.float32))])
        lru_params.append((gamma, nu, theta))
        u_re = g.op("Mul", [mrl_linear(g, y, p["B_re_w"], p["B_re_b"], f"{pre}.B_re"), gamma])
        u_im = g.op("Mul", [mrl_linear(g, y, p["B_im_w"], p["B_im_b"], f"{pre}.B_im"), gamma])
        mag = g.op("Mul", [g.op("Exp", [g.op("Neg", [g.op("Mul", [kd, nu])])]), causal])   # [L, L, D]
        ang = g.op("Mul", [kd, theta])
        P_re = g.op("Mul", [mag, g.op("Cos", [ang])])
        P_im = g.op("Mul", [mag, g.op("Sin", [ang])])
        h_re = g.op("Sub", [decay_mix(g, P_re, u_re), decay_mix(g, P_im, u_im)])
        h_im = g.op("Add", [decay_mix(g, P_re, u_im), decay_mix(g, P_im, u_re)])
        if final:
            h_re, h_im, x = gather_last(h_re), gather_last(h_im), gather_last(x)
        x = block_out(g, p, pre, x, h_re, h_im)
    g.nodes.append(helper.make_node("Squeeze", [x, g.const_i64([1])], ["query"], name="squeeze_query"))
    inputs = [helper.make_tensor_value_info("history", F32, ["B", "L", M.D]),
              helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"])]
    outputs = [helper.make_tensor_value_info("query", F32, ["B", M.D])]
    meta = {
        "history_layout": "left-aligned: history[b, :lengths[b]] oldest first; the rest is ignored",
        "inputs": "history [B, L, 1024] float32 item vectors from item_encoder.onnx; lengths [B] int64 in 1..L",
        "output": "query [B, 1024] float32; width-s query = first s columns; score = dot with item_vectors[:, :s]",
        "matryoshka_sizes": ",".join(map(str, M.SIZES)),
        "blocks": str(nb),
    }
    if step:
        step_in, step_out = add_step_branch(g, params, lru_params)
        inputs += step_in
        outputs += step_out
        meta.update(STEP_META, step_window=window_note(params))
    graph = helper.make_graph(g.nodes, "fmrlrec_query_encoder", inputs, outputs, initializer=g.inits)
    return _finish(graph, meta)


ROWS_NOTE = ("rows [N] int64: each item's identity row, row r of item_features.npy (item id r+1) "
             "for an item the model was trained on; any value outside 0..T-1 (e.g. -1) for an item "
             "it never saw, which gets the text part alone")


def build_item_model(params) -> onnx.ModelProto:
    """features [N, 384] (+ rows [N] when the model has an item-identity component) ->
    item_vectors [N, 1024] = f W_p + b_p (+ [rows valid] id_emb[rows] A)."""
    g = G()
    w = g.weight_f16("proj_w", params["proj_w"])
    y = g.op("MatMul", ["features", w])
    inputs = [helper.make_tensor_value_info("features", F32, ["N", M.FEAT_DIM])]
    meta = {"inputs": "features [N, 384] float32: all-MiniLM-L6-v2 title embeddings (datasets/beauty/item_features.npy)"}
    if "id_emb" in params:
        T, r = np.shape(params["id_emb"])
        inputs.append(helper.make_tensor_value_info("rows", TensorProto.INT64, ["N"]))
        lo = g.op("GreaterOrEqual", ["rows", g.const_i64([0])])
        hi = g.op("Less", ["rows", g.const_i64([T])])
        valid = g.op("And", [lo, hi])
        safe = g.op("Where", [valid, "rows", g.const_i64([0])])
        emb = g.op("Gather", [g.weight_f16("id_emb", params["id_emb"]), safe], axis=0)       # [N, r]
        keep = g.op("Cast", [g.op("Unsqueeze", [valid, g.const_i64([1])])], to=F32)          # [N, 1]
        ident = g.op("MatMul", [g.op("Mul", [emb, keep]), g.weight_f16("id_proj_w", params["id_proj_w"])])
        y = g.op("Add", [y, ident])
        meta["inputs"] += "; " + ROWS_NOTE
        meta["item_identity"] = f"rank {r}, {T} trained items"
    g.nodes.append(helper.make_node("Add", [y, g.init("proj_b", np.asarray(params["proj_b"], np.float32))],
                                    ["item_vectors"], name="add_bias"))
    graph = helper.make_graph(
        g.nodes, "fmrlrec_item_encoder", inputs,
        [helper.make_tensor_value_info("item_vectors", F32, ["N", M.D])],
        initializer=g.inits)
    meta["output"] = "item_vectors [N, 1024] float32, not normalised; width-s vector = first s columns"
    return _finish(graph, meta)


def _finish(graph, meta) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="mrl-index tools/encoder/export_onnx.py")
    m.ir_version = IR_VERSION
    base = {"model": "fMRLRec (title features, no images) trained on Amazon Beauty", "weights": "float16 matrices, float32 math"}
    base.update(meta)
    for k, v in base.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m, full_check=True)
    return m


def params_from_onnx(query_path, item_path) -> dict:
    """The float32 parameter pytree that the two ONNX files hold (f16 matrices widened)."""
    q = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(query_path)).graph.initializer}
    it = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(item_path)).graph.initializer}
    params = {k: it[k].astype(np.float32) for k in M.ITEM_KEYS if k in it}
    params["blocks"] = []
    i = 0
    while f"b{i}.nu_log" in q:
        pre = f"b{i}"
        blk = {k: q[f"{pre}.{k}"].astype(np.float32) for k in ("nu_log", "theta_log", "gamma_log")}
        for ln in ("ln1", "ln2"):
            blk[f"{ln}_g"] = np.concatenate([q[f"{pre}.{ln}.scale{j}"] for j in range(len(M.SIZES))])
            blk[f"{ln}_b"] = np.concatenate([q[f"{pre}.{ln}.bias{j}"] for j in range(len(M.SIZES))])
        for name in ("B_re", "B_im", "C_re", "C_im", "gate", "w1", "w2"):
            w = np.zeros((M.D, M.D), np.float32)
            for j, (a, e) in enumerate(M.chunk_bounds()):
                w[:e, a:e] = q[f"{pre}.{name}.chunk{j}"].astype(np.float32)
            blk[f"{name}_w"] = w
            if f"{pre}.{name}.bias" in q:
                blk[f"{name}_b"] = q[f"{pre}.{name}.bias"].astype(np.float32)
        params["blocks"].append(blk)
        i += 1
    return params


def embed_items(session, feats, rows=None):
    """item_encoder.onnx on ``feats`` [N, 384] -> [N, 1024]; a model with an item-identity
    component is given ``rows`` (default: row i is identity row i, the training catalogue)."""
    feed = {"features": np.asarray(feats, np.float32)}
    if any(i.name == "rows" for i in session.get_inputs()):
        feed["rows"] = np.arange(len(feats), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    return session.run(None, feed)[0]


def ort_session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    # errors only: query_encoder.onnx's step inputs are initializers with empty defaults, and
    # ONNX Runtime warns at every load that it will not constant-fold them (intended)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def make_fixtures(out_dir: Path, data_dir: str, features_path: str):
    """~4 real histories with their expected ONNX Runtime outputs, for a Rust `ort` test."""
    import data as D

    feats = D.load_features(features_path)
    seqs = D.load_sequences(data_dir)
    item = ort_session(out_dir / "item_encoder.onnx")
    query = ort_session(out_dir / "query_encoder.onnx")
    hist, targets = D.eval_examples(seqs, "test")
    lens = np.array([len(h) for h in hist])
    picks = [int(np.argmax(lens)), int(np.nonzero(lens == 4)[0][0]), int(np.nonzero(lens == 12)[0][0]),
             int(np.nonzero(lens == 7)[0][1])]
    rows = [hist[u] for u in picks]
    rows[3] = rows[3][-1:]                      # a single-item history
    lengths = np.array([len(r) for r in rows], np.int64)
    L = int(lengths.max())
    all_vecs = embed_items(item, feats)
    ids = D.pad_left_aligned(rows, L)
    histv = np.zeros((len(rows), L, M.D), np.float32)
    for b, r in enumerate(rows):
        histv[b, :len(r)] = all_vecs[np.asarray(r) - 1]
    q = query.run(None, {"history": histv, "lengths": lengths})[0]
    feat_rows = [0, 1, 4096, 12100]
    iv = embed_items(item, feats[feat_rows], feat_rows)
    tops = {}
    for s in (64, 1024):
        sc = q[:, :s] @ all_vecs[:, :s].T
        tops[str(s)] = (np.argsort(-sc, axis=1, kind="stable")[:, :10] + 1).tolist()
    fx = {
        "description": "Expected ONNX Runtime outputs of datasets/beauty/{item,query}_encoder.onnx. "
                       "history = item_vectors[item_id - 1] from item_encoder.onnx applied to "
                       "item_features.npy (float16 file, widened to float32); left-aligned, "
                       "positions >= length are padding (item id 0, vector zeros).",
        "tolerance_max_abs": 1e-4,
        "users": [int(u) + 1 for u in picks],
        "item_ids": ids.tolist(),
        "lengths": lengths.tolist(),
        "query": [[float(v) for v in row] for row in q],
        "top10_item_ids_by_width": tops,
        "feature_rows": feat_rows,
        "item_ids_of_feature_rows": [r + 1 for r in feat_rows],
        "item_vectors": [[float(v) for v in row] for row in iv],
    }
    fdir = out_dir / "fixtures"
    fdir.mkdir(parents=True, exist_ok=True)
    (fdir / "query_encoder_reference.json").write_text(json.dumps(fx) + "\n")
    print(f"wrote {fdir / 'query_encoder_reference.json'} (lengths {lengths.tolist()})", file=sys.stderr)


def _f32_list(row):
    """Shortest decimal strings that read back as the same float32 (smaller JSON)."""
    return [float(str(np.float32(v))) for v in row]


STEP_CHECKPOINTS = (1, 2, 49, 50, 51, 120)


def run_steps(query, vecs, rows, nb):
    """Feeds each history in rows (item-id lists) to the step interface one item at a time, the
    users batched (a user leaves the batch after its last item). Returns per user the list of
    step queries (one per item) and the final state {name: [1024]}."""
    B = len(rows)
    state = {n: np.zeros((B, M.D), np.float32) for i in range(nb) for n in state_names(i)[0]}
    queries = [[] for _ in rows]
    empty = {"history": np.zeros((0, 1, M.D), np.float32), "lengths": np.zeros((0,), np.int64)}
    out_names = ["step_query"] + [n for i in range(nb) for n in state_names(i)[1]]
    for t in range(max(len(r) for r in rows)):
        act = np.array([b for b, r in enumerate(rows) if len(r) > t])
        feed = {"item": vecs[np.array([rows[b][t] for b in act]) - 1], **empty}
        feed.update({n: v[act] for n, v in state.items()})
        out = dict(zip(out_names, query.run(out_names, feed)))
        for i in range(nb):
            (ir, ii), (orr, oi) = state_names(i)
            state[ir][act], state[ii][act] = out[orr], out[oi]
        for k, b in enumerate(act):
            queries[b].append(out["step_query"][k])
    return queries, state


def make_step_fixture(out_dir: Path, data_dir: str, features_path: str):
    """Real histories fed item by item through the step interface, for a Rust `ort` test."""
    import data as D

    feats = D.load_features(features_path)
    seqs = [s[:-1] for s in D.load_sequences(data_dir)]            # test-split histories, uncapped
    item = ort_session(out_dir / "item_encoder.onnx")
    query = ort_session(out_dir / "query_encoder.onnx")
    vecs = embed_items(item, feats)
    nb = sum(1 for t in onnx.load(str(out_dir / "query_encoder.onnx")).graph.initializer
             if t.name.endswith(".nu_log"))
    lens = np.array([len(s) for s in seqs])
    # lengths 120, 51, 2, 1: the most recent items of real histories (Beauty has none under 4)
    picks = [int(np.nonzero(lens >= 120)[0][0]), int(np.nonzero(lens == 51)[0][0]),
             int(np.nonzero(lens == 5)[0][0]), int(np.nonzero(lens == 6)[0][0])]
    rows = [seqs[u][-n:] for u, n in zip(picks, (120, 51, 2, 1))]
    queries, state = run_steps(query, vecs, rows, nb)
    fx = {
        "description": "Real test-split histories (their most recent items, oldest first) fed one item at a time "
                       "through the step interface of datasets/beauty/query_encoder.onnx (item, state_b{i}_re/im "
                       "-> step_query, next_state_b{i}_re/im), starting from zero states, by ONNX Runtime 1.32 "
                       "(CPU). step_queries[u][str(n)] is the query after the first n items of user u, for n in "
                       "checkpoints. final_state is user 0's state after all its items, laid out as "
                       "[block][re, im][1024]. Item vectors as in query_encoder_reference.json. Window rule: "
                       "the query after n items equals the full encoder's query of the last min(n, 50) of them.",
        "tolerance_max_abs": 1e-4,
        "users": [int(u) + 1 for u in picks],
        "item_ids": rows,
        "checkpoints": list(STEP_CHECKPOINTS),
        "step_queries": [{str(n): _f32_list(qs[n - 1]) for n in STEP_CHECKPOINTS if n <= len(qs)} for qs in queries],
        "blocks": nb,
        "final_state": [_f32_list(state[n][0]) for i in range(nb) for n in state_names(i)[0]],
    }
    path = out_dir / "fixtures" / "query_encoder_step_reference.json"
    path.write_text(json.dumps(fx) + "\n")
    print(f"wrote {path} (lengths {[len(r) for r in rows]})", file=sys.stderr)


def main(argv=None):
    import data as D

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=".work/beauty/best_params.npz")
    ap.add_argument("--out-dir", default="datasets/beauty")
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--features", default="datasets/beauty/item_features.npy")
    ap.add_argument("--from-onnx", metavar="DIR",
                    help="take the weights from DIR's item_encoder.onnx and query_encoder.onnx instead of "
                         "--params (the trained npz is not committed; the ONNX files hold the same weights, "
                         "and rebuilding from them reproduces them byte for byte)")
    ap.add_argument("--no-fixtures", action="store_true")
    args = ap.parse_args(argv)
    if args.from_onnx:
        src = D.resolve(args.from_onnx)
        params = params_from_onnx(src / "query_encoder.onnx", src / "item_encoder.onnx")
    else:
        params = M.load_params(D.resolve(args.params))
    out = D.resolve(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, builder in (("item_encoder.onnx", build_item_model), ("query_encoder.onnx", build_query_model)):
        m = builder(params)
        onnx.save(m, str(out / name))
        print(f"wrote {out / name}: {(out / name).stat().st_size / 1e6:.2f} MB, {len(m.graph.node)} nodes",
              file=sys.stderr)
    if not args.no_fixtures:
        make_fixtures(out, args.data_dir, args.features)
        make_step_fixture(out, args.data_dir, args.features)


if __name__ == "__main__":
    main()
