"""What the step interface costs a caller of the full interface (history/lengths -> query).

Times query_encoder.onnx against the same graph exported without the step interface
(export_onnx.build_query_model(step=False), built in memory from the file's own weights; that
is node for node the full branch of the file, test_step.py checks it), in one process,
interleaved round by round (alternating which goes first), with ONNX Runtime's defaults except that thread pools do not spin
(two sessions in one process would otherwise slow each other down):

* an empty batch (history [0, 1, 1024]): all that runs is node overhead, so the difference is
  exactly the nodes the step interface adds to the full path (one If, five Identity);
* one user with 50 items: the full path's cost, both files.

    .venv/bin/python tools/encoder/bench_step.py [--rounds 15]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnxruntime as ort

import data as D
import export_onnx as X
import model as M

OUT = D.REPO / "datasets" / "beauty"


def session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def per_call(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    qpath = OUT / "query_encoder.onnx"
    params = X.params_from_onnx(qpath, OUT / "item_encoder.onnx")
    without = session(X.build_query_model(params, step=False).SerializeToString())
    with_step = session(str(qpath))
    item = session(str(OUT / "item_encoder.onnx"))
    vecs = X.embed_items(item, D.load_features(OUT / "item_features.npy"))
    del item
    rng = np.random.RandomState(0)
    full = {"history": vecs[rng.choice(len(vecs), 50, replace=False)][None], "lengths": np.array([50], np.int64)}
    empty = {"history": np.zeros((0, 1, M.D), np.float32), "lengths": np.zeros((0,), np.int64)}
    res = {k: [] for k in ("empty_without", "empty_with", "full_without", "full_with")}
    for s in (without, with_step):
        s.run(None, full)
    pairs = [("without", without), ("with", with_step)]
    for r in range(args.rounds):
        for name, s in pairs if r % 2 == 0 else pairs[::-1]:      # alternate which goes first
            res[f"empty_{name}"].append(per_call(lambda: s.run(None, empty), 200))
        for name, s in pairs if r % 2 == 0 else pairs[::-1]:
            res[f"full_{name}"].append(per_call(lambda: s.run(None, full), 5))
    med = {k: float(np.median(v)) * 1e3 for k, v in res.items()}
    print(f"onnxruntime {ort.__version__}, {args.rounds} rounds, medians (ms per call):")
    print(f"  empty batch:          without step {med['empty_without']:.4f}, with step {med['empty_with']:.4f}"
          f" -> the step interface adds {med['empty_with'] - med['empty_without']:+.4f} ms per call")
    print(f"  one user, 50 items:   without step {med['full_without']:.2f}, with step {med['full_with']:.2f}"
          f" ({(med['full_with'] / med['full_without'] - 1) * 100:+.1f}%; round-to-round spread of"
          f" 'without': {np.min(res['full_without']) * 1e3:.2f}..{np.max(res['full_without']) * 1e3:.2f})")


if __name__ == "__main__":
    main()
