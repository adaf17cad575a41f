"""The step interface of query_encoder.onnx (pytest): streaming a history one item at a time.

Requirements checked here:
* feeding real Beauty histories item by item through the step interface (item + carried LRU
  states -> step_query + new states) gives, after every item, the full interface's query of
  the last min(n, 50) items (the window rule; max abs difference <= 1e-4);
* the rule's premise: the trained LRUs' max |lam|^50 is far below float32 resolution;
* the step inputs are optional (callers of history/lengths alone keep working) and the step
  reuses the full branch's weights (one copy in the file);
* the file is what `export_onnx.py --from-onnx` builds, byte for byte, and the full branch is
  node for node the graph exported without the step interface;
* the Rust fixture query_encoder_step_reference.json is what ONNX Runtime produces;
* tests/data/query_encoder_no_step.onnx (a tiny query encoder without the step interface, for
  the Rust test of older files) is what legacy_model() builds.

    .venv/bin/python -m pytest tools/encoder/test_step.py -q
    .venv/bin/python tools/encoder/test_step.py --write-legacy   # rewrites the tiny model
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import data as D
import export_onnx as X
import model as M

OUT = D.REPO / "datasets" / "beauty"
QPATH, IPATH = OUT / "query_encoder.onnx", OUT / "item_encoder.onnx"
FEATS = OUT / "item_features.npy"
STEP_FIXTURE = OUT / "fixtures" / "query_encoder_step_reference.json"
LEGACY = D.REPO / "tests" / "data" / "query_encoder_no_step.onnx"
DATA_DIR = D.resolve("../shared/datasets")
TOL = 1e-4
WINDOW = 50  # MAX_HISTORY in src/encoder.rs

pytestmark = pytest.mark.skipif(not (QPATH.exists() and IPATH.exists()), reason="ONNX files not exported")


@pytest.fixture(scope="module")
def env():
    item = X.ort_session(IPATH)
    query = X.ort_session(QPATH)
    vecs = X.embed_items(item, D.load_features(FEATS))
    nb = sum(1 for t in onnx.load(str(QPATH)).graph.initializer if t.name.endswith(".nu_log"))
    return query, vecs, nb


def full_queries(query, vecs, rows):
    """The full interface's queries of item-id lists (each its last WINDOW items), one batch."""
    rows = [r[-WINDOW:] for r in rows]
    lengths = np.array([len(r) for r in rows], np.int64)
    vp = np.concatenate([np.zeros((1, M.D), np.float32), vecs])
    return query.run(["query"], {"history": vp[D.pad_left_aligned(rows, int(lengths.max()))],
                                 "lengths": lengths})[0]


def test_window_rule_premise():
    """Streaming keeps every item, the full encoder the last 50: they agree because an item 50
    steps back is weighted by |lam|^50 (through both blocks, at most ~50 max|lam|^50 relative)."""
    q = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(QPATH)).graph.initializer}
    mods = [np.exp(-np.exp(q[f"b{i}.nu_log"].astype(np.float64))) for i in range(2)]
    lam = max(m.max() for m in mods)
    print(f"max |lam| per block {[round(float(m.max()), 4) for m in mods]}, max|lam|^50 = {lam ** 50:.1e}")
    assert WINDOW * lam ** WINDOW < 1e-20           # float32 resolution is ~6e-8 relative
    meta = {p.key: p.value for p in onnx.load(str(QPATH)).metadata_props}
    assert meta["step_window"].startswith(f"max |lam| = {lam:.4f}, |lam|^50 = {lam ** 50:.1e}: streaming")


def test_step_inputs_are_optional(env):
    query, vecs, nb = env
    names = {i.name for i in query.get_overridable_initializers()}
    assert names == {"item"} | {n for i in range(nb) for n in X.state_names(i)[0]}
    assert [i.name for i in query.get_inputs()] == ["history", "lengths"]
    hist = vecs[None, :3]
    out = query.run(None, {"history": hist, "lengths": np.array([3], np.int64)})
    assert out[0].shape == (1, M.D)
    assert all(o.shape == (0, M.D) for o in out[1:])       # the step ran on its empty defaults


def test_step_shares_the_weights_and_leaves_the_full_branch_alone():
    m = onnx.load(str(QPATH))
    params = X.params_from_onnx(QPATH, IPATH)
    m0 = X.build_query_model(params, step=False)
    # the full branch: node for node and initializer for initializer the export without the step
    assert list(m.graph.node[:len(m0.graph.node)]) == list(m0.graph.node)
    assert list(m.graph.initializer[:len(m0.graph.initializer)]) == list(m0.graph.initializer)
    extra = m.graph.initializer[len(m0.graph.initializer):]
    assert sorted(t.name for t in extra) == sorted(["item"] + [n for i in range(2) for n in X.state_names(i)[0]])
    assert all(numpy_helper.to_array(t).size == 0 for t in extra)   # empty defaults, no weights
    # the step branch: no initializers, no Casts of its own; it reads the full branch's Casts
    (step,) = [n for n in m.graph.node if n.op_type == "If"]
    then = next(a.g for a in step.attribute if a.name == "then_branch")
    assert len(then.initializer) == 0 and not any(n.op_type == "Cast" for n in then.node)
    casts = {n.output[0] for n in m0.graph.node if n.op_type == "Cast" and ".chunk" in n.input[0]}
    assert len(casts) == 2 * 7 * 8                      # 2 blocks x 7 matrices x 8 chunks
    assert {i for n in then.node for i in n.input} & casts == casts


def test_export_reproduces_the_committed_file():
    params = X.params_from_onnx(QPATH, IPATH)
    assert X.build_query_model(params).SerializeToString() == QPATH.read_bytes()
    assert X.build_item_model(params).SerializeToString() == IPATH.read_bytes()


@pytest.mark.skipif(not DATA_DIR.exists(), reason="../shared/datasets not present")
def test_streaming_real_histories_equals_reencoding_the_last_50(env):
    """Users with the longest histories (up to 204 items) and random ones, streamed from zero
    states; after each item n (n <= 55, every 10th, the last) the step query equals the full
    interface's query of the last min(n, 50) items."""
    query, vecs, nb = env
    seqs = [s[:-1] for s in D.load_sequences(DATA_DIR)]           # test-split histories, uncapped
    lens = np.array([len(s) for s in seqs])
    rng = np.random.RandomState(12)
    users = list(np.argsort(-lens, kind="stable")[:4]) + list(rng.choice(len(seqs), 28, replace=False))
    rows = [seqs[u] for u in users]
    steps, _ = X.run_steps(query, vecs, rows, nb)
    worst, checked = 0.0, 0
    for n in range(1, max(len(r) for r in rows) + 1):
        act = [b for b, r in enumerate(rows) if len(r) >= n and (n <= 55 or n % 10 == 0 or n == len(r))]
        if not act:
            continue
        ref = full_queries(query, vecs, [rows[b][:n] for b in act])
        got = np.stack([steps[b][n - 1] for b in act])
        worst = max(worst, float(np.abs(got - ref).max()))
        checked += len(act)
    print(f"{len(rows)} users, lengths up to {max(map(len, rows))}, {checked} (user, n) pairs: "
          f"max abs diff {worst:.2e}")
    assert max(map(len, rows)) > 120 and worst <= TOL


def test_batched_step_equals_one_user_at_a_time(env):
    query, vecs, nb = env
    rng = np.random.RandomState(3)
    rows = [list(rng.randint(1, len(vecs) + 1, size=n)) for n in (7, 3, 12, 1, 9)]
    batched, sb = X.run_steps(query, vecs, rows, nb)
    for b, r in enumerate(rows):
        alone, sa = X.run_steps(query, vecs, [r], nb)
        assert np.abs(np.stack(alone[0]) - np.stack(batched[b])).max() <= TOL
        for k in sa:
            assert np.abs(sa[k][0] - sb[k][b]).max() <= TOL


@pytest.mark.skipif(not STEP_FIXTURE.exists(), reason="fixture not written")
def test_rust_step_fixture_matches_onnxruntime(env):
    query, vecs, nb = env
    fx = json.loads(STEP_FIXTURE.read_text())
    assert [len(r) for r in fx["item_ids"]] == [120, 51, 2, 1] and fx["blocks"] == nb
    steps, state = X.run_steps(query, vecs, fx["item_ids"], nb)
    for u, expected in enumerate(fx["step_queries"]):
        assert sorted(map(int, expected)) == [n for n in fx["checkpoints"] if n <= len(fx["item_ids"][u])]
        for n, q in expected.items():
            assert np.abs(steps[u][int(n) - 1] - np.asarray(q, np.float32)).max() <= fx["tolerance_max_abs"]
    got = np.stack([state[n][0] for i in range(nb) for n in X.state_names(i)[0]])
    assert np.abs(got - np.asarray(fx["final_state"], np.float32)).max() <= fx["tolerance_max_abs"]


def legacy_model(dim: int = 8) -> onnx.ModelProto:
    """A query encoder without the step interface: query = mean of the history's rows."""
    nodes = [
        helper.make_node("ReduceSum", ["history", "axes"], ["sum"], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["len_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["len_f", "axes"], ["len_col"]),
        helper.make_node("Div", ["sum", "len_col"], ["query"]),
    ]
    graph = helper.make_graph(
        nodes, "query_encoder_without_step",
        [helper.make_tensor_value_info("history", TensorProto.FLOAT, ["B", "L", dim]),
         helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"])],
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, ["B", dim])],
        initializer=[numpy_helper.from_array(np.array([1], np.int64), "axes")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", X.OPSET)],
                          producer_name="mrl-index tools/encoder/test_step.py")
    m.ir_version = X.IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def test_legacy_model_is_current():
    assert LEGACY.read_bytes() == legacy_model().SerializeToString()
    import onnxruntime as ort

    s = ort.InferenceSession(str(LEGACY), providers=["CPUExecutionProvider"])
    h = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)
    q = s.run(None, {"history": h, "lengths": np.array([3, 3], np.int64)})[0]
    np.testing.assert_allclose(q, h.mean(axis=1))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-legacy"]:
        LEGACY.parent.mkdir(parents=True, exist_ok=True)
        LEGACY.write_bytes(legacy_model().SerializeToString())
        print(f"wrote {LEGACY}")
    else:
        sys.exit(__doc__)
