#!/usr/bin/env bash
# One command for the whole comparison: generated strongly and weakly Matryoshka sets (and
# the real Beauty set when its query vectors are given), mrl-index's own sweep, the peers
# (FAISS, hnswlib, USearch) on the same files, queries, k and threads, then one merged table
# and plot per data set.
#
#   tools/compare.sh ci   [OUT]   # 100,000 items x 1024, 1,000 queries, quick grids (minutes)
#   tools/compare.sh full [OUT]   # 1,000,000 items x 1024, 10,000 queries (hours on 2 cores)
#   SETS="strong weak" PEERS=faiss,hnswlib,usearch tools/compare.sh ci   # subsets
#
# Results: OUT/<set>/{mrl.json,peers.jsonl}, OUT/compare/{all.json,all.csv,table.md,*.svg,*.png}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE="${1:-ci}"
OUT="$(realpath -m "${2:-$ROOT/results/$SIZE}")"
case "$SIZE" in
  ci)   N=100000;  NQ=1000;  QUICK=--quick ;;
  full) N=1000000; NQ=10000; QUICK= ;;
  tiny) N=5000;    NQ=100;   QUICK=--quick ;;
  *) echo "usage: $0 ci|full|tiny [OUT]" >&2; exit 2 ;;
esac
SETS="${SETS:-strong weak}"
PEERS="${PEERS:-faiss,hnswlib,usearch}"
THREADS="$(nproc)"
cd "$ROOT"
cargo build --release --quiet
B="$ROOT/target/release/mrl-index"
[ -n "$PEERS" ] && bash tools/peers/setup.sh >/dev/null
PY="$ROOT/tools/peers/.venv/bin/python"
mkdir -p "$OUT"
inputs=()
for set in $SETS; do
  D="$OUT/$set"
  mkdir -p "$D"
  echo "== $set: $N x 1024, $NQ queries -> $D"
  [ -f "$D/items.npy" ] || "$B" bench-data --kind "$set" --n "$N" --nq "$NQ" --out "$D"
  /usr/bin/time -f "%e s build, %M KB max RSS" -o "$D/build.time" \
    "$B" build --input "$D/items.npy" --out "$D/index" --force --quiet
  cat "$D/build.time"
  "$B" bench --index "$D/index" --queries "$D/queries.npy" -k 10 --threads "$THREADS" $QUICK \
    --dataset "$set-$N" --out "$D/mrl.json" --csv "$D/mrl.csv" --plot "$D/mrl"
  inputs+=("$D/mrl.json")
  if [ -n "$PEERS" ]; then
    # The ground truth mrl-index cached beside the queries (ids are row numbers here).
    nice -n 5 "$PY" tools/peers/run_peers.py --items "$D/items.npy" --queries "$D/queries.npy" \
      --ground-truth "$D/queries.gt100.npy" -k 10 --threads-all "$THREADS" \
      --dataset "$set-$N" --only "$PEERS" --out "$D/peers.jsonl" --tmpdir "$D"
    inputs+=("$D/peers.jsonl")
  fi
done
"$B" compare --inputs "${inputs[@]}" --out "$OUT/compare"
echo "== results in $OUT/compare (table.md, all.json, all.csv, plots)"
