"""Check features.py's numpy MiniLM against sentence-transformers (torch) on the same weights.

The package ships no reference embeddings, and torch is not installed here, so the check runs
where sentence-transformers is installed (the GPU machine's image has it; it runs there on CPU).
The 90 MB float32 safetensors file is too big to carry there, so BOTH sides use the same
float16-rounded weights (every tensor rounded to float16, computed in float32): that checks the
forward pass (tokenisation, BERT, mean pooling, normalisation) exactly, independent of weights.

    # here: write the f16 model dir + the numpy embeddings of the texts
    python tools/encoder/check_minilm_reference.py prepare --out-dir .work/minilm_f16 [--n 512]
    # machine with sentence-transformers:
    python tools/encoder/check_minilm_reference.py compare --out-dir .work/minilm_f16 [--json result.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

FIXED = ["This is an example sentence", "Each sentence is converted", ""]


def prepare(out_dir: Path, n: int, data_dir: str):
    from safetensors.numpy import load_file, save_file

    import features as F

    src = F.model_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in src.glob("**/*"):
        if item.is_file() and item.name not in ("model.safetensors", "README.md", "data_config.json"):
            dst = out_dir / item.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, dst)
    w = load_file(str(src / "model.safetensors"))
    w16 = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in w.items()}
    save_file(w16, str(out_dir / "model.safetensors"))
    titles = F.load_titles(F.REPO / data_dir if not Path(data_dir).is_absolute() else Path(data_dir))
    texts = FIXED + titles[:n]
    (out_dir / "texts.json").write_text(json.dumps(texts))
    m16 = F.MiniLM(weights={k: v.astype(np.float32) for k, v in w16.items()})
    np.save(out_dir / "numpy_f16w.npy", m16.encode(texts))
    m32 = F.MiniLM()
    e32 = m32.encode(texts)
    np.save(out_dir / "numpy_f32w.npy", e32)
    d = np.abs(np.load(out_dir / "numpy_f16w.npy") - e32).max()
    print(f"prepared {out_dir}: {len(texts)} texts; numpy f16-rounded vs f32 weights: max abs diff {d:.2e}")


def compare(out_dir: Path, json_out: str):
    import torch
    from sentence_transformers import SentenceTransformer

    texts = json.loads((out_dir / "texts.json").read_text())
    st = SentenceTransformer(str(out_dir), device="cpu")
    st = st.float()
    ref = st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=False)
    ours = np.load(out_dir / "numpy_f16w.npy")
    diff = np.abs(ref - ours)
    cos = (ref * ours).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(ours, axis=1)
    res = {"texts": len(texts), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
           "min_cosine": float(cos.min()), "ref_norm_min": float(np.linalg.norm(ref, axis=1).min()),
           "ref_first8_example_sentence": ref[0, :8].tolist(), "torch": torch.__version__,
           "sentence_transformers": __import__("sentence_transformers").__version__,
           "max_seq_length": st.max_seq_length}
    print(json.dumps(res, indent=1))
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["prepare", "compare"])
    ap.add_argument("--out-dir", default=".work/minilm_f16")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    out = Path(a.out_dir)
    if not out.is_absolute():
        out = Path(__file__).resolve().parents[2] / out
    prepare(out, a.n, a.data_dir) if a.mode == "prepare" else compare(out, a.json)


if __name__ == "__main__":
    main()
