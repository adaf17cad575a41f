#!/usr/bin/env bash
# The real and the real-geometry scale benchmark sets, from the committed Beauty model files
# and the shared Amazon Beauty sequences. Nothing made here is committed.
#
#   tools/scale/make_sets.sh OUT N NQ
#
#   OUT/beauty/{items.npy,queries.npy,sample_queries.npy,set.json}  the 12,101 real Beauty
#       item vectors (item_encoder.onnx on datasets/beauty/item_features.npy), the query
#       vectors of the first NQ real test users (query_encoder.onnx over each user's
#       leave-one-out history), and sample queries for builds to learn and tune from: the
#       validation-split queries (history without the last two items) of the next SAMPLE
#       users (default 10,000), none of whom is evaluated.
#   OUT/beauty-scale/{items.npy,queries.npy,set.json}  N items: the 12,101 real items first,
#       then N - 12,101 feature rows drawn from a Gaussian mixture fitted to the real title
#       features (tools/scale/sample_features.py), all through item_encoder.onnx; the same
#       NQ real user queries.
#
# Item ids are row numbers in both sets (the peers and mrl-index see the same files).
# Needs the ONNX Runtime wheel (tools/install-runtime.sh), tools/peers/.venv (numpy) and
# ../shared/datasets/amazon-beauty/sequential_data.txt (or SEQUENCES=...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$(realpath -m "${1:?usage: $0 OUT N NQ}")"
N="${2:?usage: $0 OUT N NQ}"
NQ="${3:?usage: $0 OUT N NQ}"
SEQUENCES="${SEQUENCES:-$ROOT/../shared/datasets/amazon-beauty/sequential_data.txt}"
SEED="${SEED:-20261122}"
SAMPLE="${SAMPLE:-10000}"
[ -f "$SEQUENCES" ] || { echo "error: $SEQUENCES not found (set SEQUENCES=)" >&2; exit 1; }
cd "$ROOT"
B="${CARGO_TARGET_DIR:-$ROOT/target}/release/mrl-index"   # where cargo put it
[ -x "$B" ] || cargo build --release --quiet
PY="$ROOT/tools/peers/.venv/bin/python"
[ -x "$PY" ] || bash tools/peers/setup.sh >/dev/null
bash tools/install-runtime.sh >/dev/null
M="$ROOT/datasets/beauty"
R="$OUT/beauty"
S="$OUT/beauty-scale"
mkdir -p "$R" "$S"

if [ ! -f "$R/sample_queries.npy" ]; then
  "$B" embed-items --encoder "$M/item_encoder.onnx" --features "$M/item_features.npy" --out "$R/items.npy"
  # The query encoder reads histories by P5 item id (row + 1), so it gets an index with those ids.
  "$PY" -c "import numpy as np, sys; n = np.load(sys.argv[1], mmap_mode='r').shape[0]; np.save(sys.argv[2], np.arange(1, n + 1, dtype=np.uint64))" \
    "$R/items.npy" "$R/p5_ids.npy"
  "$B" build --input "$R/items.npy" --ids "$R/p5_ids.npy" --out "$R/p5-index" --force --quiet
  "$B" eval --index "$R/p5-index" --encoder "$M/query_encoder.onnx" --sequences "$SEQUENCES" \
    --max-users "$NQ" --save-queries "$R/queries.npy" --json > "$R/eval.json"
  "$B" encode-queries --index "$R/p5-index" --encoder "$M/query_encoder.onnx" --sequences "$SEQUENCES" \
    --split valid --skip-users "$NQ" --max-users "$SAMPLE" --out "$R/sample_queries.npy"
  rm -rf "$R/p5-index" "$R/p5_ids.npy"
  printf '{"kind": "beauty", "items": "real Beauty item vectors (item_encoder.onnx)", "queries": "first %s real test users (query_encoder.onnx)", "sample_queries": "validation queries of the next %s users"}\n' "$NQ" "$SAMPLE" > "$R/set.json"
fi

if [ "$N" -le 12101 ]; then
  echo "N = $N: no scale set (it holds the 12,101 real items and more)"
elif [ ! -f "$S/items.npy" ]; then
  "$PY" tools/scale/sample_features.py --features "$M/item_features.npy" --n "$N" --seed "$SEED" \
    --out "$S/features.npy" --report "$S/fit.json"
  "$B" embed-items --encoder "$M/item_encoder.onnx" --features "$S/features.npy" --out "$S/items.npy"
  rm -f "$S/features.npy"
  cp "$R/queries.npy" "$S/queries.npy"
  printf '{"kind": "beauty-scale", "n": %s, "seed": %s, "items": "12101 real + mixture draws fitted to the real title features, item_encoder.onnx", "queries": "first %s real test users"}\n' "$N" "$SEED" "$NQ" > "$S/set.json"
fi
if [ -f "$S/items.npy" ] && [ ! -f "$S/sample_queries.npy" ]; then
  cp "$R/sample_queries.npy" "$S/sample_queries.npy"
fi
echo "sets in $R and $S"
