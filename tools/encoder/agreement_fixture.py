"""The prefix-agreement fixture: what the committed ONNX encoders' short prefixes find of their
full-width answers, on a fixed set of real users, so that a future model cannot silently lose it.

``datasets/beauty/fixtures/prefix_agreement.json`` holds 500 real Beauty test histories (every
44th user in file order: their last <= 50 items before the test item, oldest first) and, per
prefix width w in 64/128/256/512 and depth d in 10/100/1000, ``share``: the share of the 1024-d
exact top-10 (over those users) that the w-d prefix ranks within its top d, as ONNX Runtime
computes it from the committed files, and ``floor``: the figure any committed model must reach.

``test_agreement.py`` recomputes the shares from the committed files and fails when one is below
its floor (or differs from the recorded share by more than float rounding, which means the files
changed without the fixture). Regenerating after a new export records the new shares and keeps
each floor at max(old floor, share - 0.02): a better model raises the bar, a worse one is refused
unless ``--lower-floor`` says so on purpose.

    .venv/bin/python tools/encoder/agreement_fixture.py [--lower-floor]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import jax.numpy as jnp

import data as D
import evaluate as EV
import export_onnx as X
import model as M

OUT = D.REPO / "datasets" / "beauty"
FIXTURE = OUT / "fixtures" / "prefix_agreement.json"
USERS = 500
STRIDE = 44
MARGIN = 0.02


def shares(histories, out_dir=OUT, batch: int = 64) -> dict:
    """{str(w): {str(d): share}} for the committed encoders in ``out_dir``: item and query vectors
    from ONNX Runtime, ranks as ``evaluate.prefix_agreement`` counts them."""
    feats = D.load_features(out_dir / "item_features.npy")
    items = X.embed_items(X.ort_session(out_dir / "item_encoder.onnx"), feats)
    query = X.ort_session(out_dir / "query_encoder.onnx")
    E_pad = np.concatenate([np.zeros((1, items.shape[1]), np.float32), items])
    ids = D.pad_left_aligned(histories, max(len(h) for h in histories))
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    z = query.run(["query"], {"history": E_pad[ids], "lengths": lengths})[0]
    E = jnp.asarray(items)
    ranks = np.concatenate([np.asarray(EV.top10_ranks(M.mrl_logits(jnp.asarray(z[s:s + batch]), E)))
                            for s in range(0, len(z), batch)], axis=1)          # [S, U, 10]
    return {str(w): {str(d): float((ranks[M.SIZES.index(w)] < d).mean()) for d in EV.AGREEMENT_DEPTHS}
            for w in EV.AGREEMENT_WIDTHS}


def fixture_histories(data_dir="../shared/datasets"):
    seqs = D.load_sequences(data_dir)
    hist, _ = D.eval_examples(seqs, "test")
    return [[int(x) for x in hist[u]] for u in range(0, STRIDE * USERS, STRIDE)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--lower-floor", action="store_true",
                    help="allow a floor to go down (a model that agrees less, on purpose)")
    args = ap.parse_args(argv)
    histories = fixture_histories(args.data_dir)
    got = shares(histories)
    old = json.loads(FIXTURE.read_text())["floor"] if FIXTURE.exists() else {}
    floor = {w: {} for w in got}
    for w, row in got.items():
        for d, v in row.items():
            new = round(max(0.0, v - MARGIN), 4)
            prev = old.get(w, {}).get(d)
            if prev is None or args.lower_floor:
                floor[w][d] = new
                continue
            if v < prev:
                sys.exit(f"error: prefix {w} top-{d} share {v:.4f} is below the floor {prev:.4f}; "
                         f"the new model agrees less (pass --lower-floor to accept that on purpose)")
            floor[w][d] = max(prev, new)
    doc = {
        "what": "share of the 1024-d exact top-10 that each w-d prefix ranks in its top d, over these "
                "users, from the committed item_encoder.onnx and query_encoder.onnx (ONNX Runtime, CPU); "
                "made by tools/encoder/agreement_fixture.py, checked by test_agreement.py",
        "users": f"every {STRIDE}th Beauty user in file order, test split: the last <= 50 items "
                 f"before the test item, oldest first",
        "share": got,
        "floor": floor,
        "histories": histories,
    }
    tmp = FIXTURE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    os.replace(tmp, FIXTURE)
    for w, row in got.items():
        print(w, {d: f"{v:.4f} (floor {floor[w][d]:.4f})" for d, v in row.items()})


if __name__ == "__main__":
    main()
