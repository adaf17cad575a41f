#!/usr/bin/env bash
# One command for the whole comparison: generated strongly and weakly Matryoshka sets, the
# real Beauty set and the real-geometry Beauty scale set (tools/scale/make_sets.sh), each
# through mrl-index's own sweep and the peers (FAISS, hnswlib, USearch) on the same files,
# queries, k and threads, then one merged table (with matched-recall ratios and the prefix
# shares) and plots.
#
#   tools/compare.sh ci   [OUT]   # 100,000 items x 1024, 1,000 queries, quick grids (about 35 min on 2 cores)
#   tools/compare.sh full [OUT]   # 1,000,000 items x 1024, 10,000 queries, FAISS only (hours on 2 cores)
#   tools/compare.sh tiny [OUT]   # 5,000 items, 100 queries (CI)
#   SETS="strong weak" PEERS=faiss,hnswlib tools/compare.sh ci   # subsets
#   PEER_ARGS="--faiss-efc 40" tools/compare.sh full              # extra run_peers.py options
#   MRL_ARGS="--repeats 2" tools/compare.sh full                  # extra mrl-index bench options
#   COARSE_DIMS="64 512" SETS=beauty-scale tools/compare.sh ci    # also an index with a 512-d coarse graph
#
# Sets: strong, weak (generated, `mrl-index bench-data`), beauty (the 12,101 real item
# vectors and real test-user queries; its size does not change with the mode), beauty-scale
# (N items: the real ones plus draws from a mixture fitted to the real title features,
# through item_encoder.onnx; the same real queries). The beauty sets need
# ../shared/datasets/amazon-beauty (or SEQUENCES=...).
#
# Results: OUT/<set>/{mrl.json,peers.jsonl,build.time}, OUT/compare/{all.json,all.csv,
# table.md,*.svg,*.png}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE="${1:-ci}"
OUT="$(realpath -m "${2:-$ROOT/results/$SIZE}")"
case "$SIZE" in
  ci)   N=100000;  NQ=1000;  QUICK=--quick; DEF_SETS="strong weak beauty beauty-scale"
        # Every peer family but Panorama + refine (the same search as HNSW + refine), with
        # grids trimmed to keep four sets near 35 minutes on 2 cores.
        DEF_PEERS=faiss-flat-ip,faiss-hnsw-full,faiss-hnsw-prefix-refine,faiss-panorama-flat-ip,hnswlib-full,hnswlib-prefix-rerank,usearch-full
        DEF_PEER_ARGS="--ef-search 16,32,64,128,256,512 --k-factors 10,20,50 --panorama-levels 16 --repeats 2" ;;
  full) N=1000000; NQ=10000; QUICK=;        DEF_SETS="beauty-scale strong"
        # One HNSW build per peer family at this size on 2 cores (efC 200 builds take tens of
        # minutes at full width); two timed passes.
        DEF_PEERS=faiss; DEF_PEER_ARGS="--faiss-efc 40 --efc 100 --ef-search 16,32,64,128,256,512 --k-factors 10,50,200 --panorama-levels 16 --repeats 2" ;;
  tiny) N=5000;    NQ=100;   QUICK=--quick; DEF_SETS="strong weak"
        DEF_PEERS=faiss,hnswlib,usearch; DEF_PEER_ARGS="" ;;
  *) echo "usage: $0 ci|full|tiny [OUT]" >&2; exit 2 ;;
esac
SETS="${SETS:-$DEF_SETS}"
PEERS="${PEERS-$DEF_PEERS}"
PEER_ARGS="${PEER_ARGS-$DEF_PEER_ARGS}"
MRL_ARGS="${MRL_ARGS-}"
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
  case "$set" in
    strong|weak)
      [ -f "$D/items.npy" ] || "$B" bench-data --kind "$set" --n "$N" --nq "$NQ" --out "$D"
      KEEPS=""; NAME="$set-$N"; CDS="${COARSE_DIMS:-64}" ;;
    beauty|beauty-scale)
      [ -f "$D/items.npy" ] || bash tools/scale/make_sets.sh "$OUT" "$N" "$NQ"
      # This model's 64-d prefix carries little of the full-width ranking (see the prefix
      # shares): the cascade needs coarse keeps up to most of the catalogue.
      if [ "$set" = beauty ]; then KEEPS="--keeps 500,2000,6000,12101 --shrink 2"; NAME=beauty-12101
      else KEEPS="--keeps 1000,10000,50000,$((N / 4)) --shrink 2"; NAME="$set-$N"; fi
      # Also a 512-d coarse graph where building one is quick (not at 1M on 2 cores).
      if [ "$SIZE" = full ]; then CDS="${COARSE_DIMS:-64}"; else CDS="${COARSE_DIMS:-64 512}"; fi ;;
    *) echo "unknown set $set (strong, weak, beauty, beauty-scale)" >&2; exit 2 ;;
  esac
  echo "== $NAME: $NQ queries -> $D"
  # The coarse widths to build mrl-index with: 64 (the default) and, where the 64-d prefix
  # is weak and the size allows, a wider one (COARSE_DIMS overrides for every set).
  for CD in $CDS; do
    # A wider coarse graph needs no catalogue-sized keeps; its exact rows would repeat the
    # first index's.
    SUF=""; K="$KEEPS"; [ "$CD" = 64 ] || { SUF="-c$CD"; K="--no-exact"; }
    /usr/bin/time -f "%e s build, %M KB max RSS" -o "$D/build$SUF.time" \
      "$B" build --input "$D/items.npy" --out "$D/index$SUF" --coarse-dim "$CD" --force --quiet
    cat "$D/build$SUF.time"
    BUILD_S="$(cut -d' ' -f1 "$D/build$SUF.time")"
    # Ground truth as its own step (cached beside the queries), so the timed run's resident
    # memory holds only what its searches touch.
    "$B" bench --index "$D/index$SUF" --queries "$D/queries.npy" -k 10 --threads "$THREADS" --truth-only
    # shellcheck disable=SC2086
    "$B" bench --index "$D/index$SUF" --queries "$D/queries.npy" -k 10 --threads "$THREADS" $QUICK $K $MRL_ARGS \
      --build-seconds "$BUILD_S" --dataset "$NAME" --out "$D/mrl$SUF.json" --csv "$D/mrl$SUF.csv" --plot "$D/mrl$SUF"
    inputs+=("$D/mrl$SUF.json")
  done
  if [ -n "$PEERS" ]; then
    # The ground truth mrl-index cached beside the queries (ids are row numbers here).
    # shellcheck disable=SC2086
    nice -n 5 "$PY" tools/peers/run_peers.py --items "$D/items.npy" --queries "$D/queries.npy" \
      --ground-truth "$D/queries.gt100.npy" -k 10 --threads-all "$THREADS" \
      --dataset "$NAME" --only "$PEERS" --out "$D/peers.jsonl" --tmpdir "$D" $PEER_ARGS
    inputs+=("$D/peers.jsonl")
  fi
done
"$B" compare --inputs "${inputs[@]}" --out "$OUT/compare"
echo "== results in $OUT/compare (table.md, all.json, all.csv, plots)"
