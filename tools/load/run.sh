#!/usr/bin/env bash
# Load test of `mrl-index serve` on loopback with wrk: /v1/search, /v1/recommend and the
# streaming endpoints (POST /v1/users/{u}/events, GET /v1/users/{u}/recommendations) at 1, 8
# and 64 clients, an index reload (POST /admin/reload and SIGHUP) in the middle of the
# 8-client search run, SIGTERM at the end; plus the library's own batch search rate on the
# same index and queries, for the HTTP-overhead ratio. Writes OUT/results.jsonl and prints
# the Markdown table of docs/serving.md.
#
#   tools/load/run.sh [OUT]            # default OUT: .work/load; SECS=10 seconds per run
#
# Needs: wrk (Debian: apt-get install wrk), curl, the ONNX Runtime (tools/install-runtime.sh),
# python3 with numpy (tools/setup.sh makes .venv), ../shared/datasets/amazon-beauty.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$(realpath -m "${1:-$ROOT/.work/load}")"
SECS="${SECS:-10}"
PORT="${PORT:-18080}"
RAW="${RAW:-$ROOT/../shared/datasets/amazon-beauty}"
PY="${PY:-$ROOT/.venv/bin/python}"
command -v wrk >/dev/null || { echo "wrk not found (Debian: apt-get install wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }
cd "$ROOT"
cargo build --release --quiet
B="${CARGO_TARGET_DIR:-$ROOT/target}/release/mrl-index"
ENC="$ROOT/datasets/beauty/query_encoder.onnx"
mkdir -p "$OUT"
[ -f "$OUT/index/MANIFEST" ] || "$B" demo --index-dir "$OUT/index" --eval-users 0 --quiet >/dev/null
[ -f "$OUT/queries.npy" ] || "$B" encode-queries --index "$OUT/index" --encoder "$ENC" \
  --sequences "$RAW/sequential_data.txt" --max-users 2000 --out "$OUT/queries.npy" >/dev/null
"$PY" "$ROOT/tools/load/requests.py" --queries "$OUT/queries.npy" \
  --sequences "$RAW/sequential_data.txt" --out "$OUT/requests"

"$B" serve --index "$OUT/index" --encoder "$ENC" --addr "127.0.0.1:$PORT" --threads 2 \
  >"$OUT/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 0.1
done

: >"$OUT/results.jsonl"
run() {  # name requests-file clients [reload]
  local name=$1 file=$2 c=$3 t=2
  [ "$c" -lt 2 ] && t=1
  local reloader=""
  if [ "${4:-}" = reload ]; then
    ( sleep "$(( SECS / 2 ))"
      curl -sf -X POST "http://127.0.0.1:$PORT/admin/reload" >"$OUT/reload.json"
      kill -HUP "$PID" ) &
    reloader=$!
  fi
  local line
  line="$(LOAD_REQUESTS="$file" wrk -t "$t" -c "$c" -d "${SECS}s" --timeout 10s \
    -s "$ROOT/tools/load/requests.lua" "http://127.0.0.1:$PORT" | tail -n 1)"
  [ -z "$reloader" ] || wait "$reloader"
  echo "{\"endpoint\": \"$name\", \"clients\": $c, \"reload\": $([ "${4:-}" = reload ] && echo true || echo false), ${line#\{}" | tee -a "$OUT/results.jsonl"
}
R="$OUT/requests"
for c in 1 8 64; do
  if [ "$c" = 8 ]; then run search "$R/search.tsv" "$c" reload; else run search "$R/search.tsv" "$c"; fi
  run recommend "$R/recommend.tsv" "$c"
  run events "$R/events.tsv" "$c"
  run recommendations "$R/recs.tsv" "$c"
done
run recommend50 "$R/recommend50.tsv" 1
# The library's batch search on the same index and queries, 2 threads, in this run.
LIB="$("$B" search --index "$OUT/index" --queries "$OUT/queries.npy" --threads 2 2>&1 >/dev/null | tail -n 1)"
echo "library: $LIB"
echo "{\"endpoint\": \"library search_batch\", \"line\": \"$LIB\"}" >>"$OUT/results.jsonl"
curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt"
kill -TERM "$PID"
set +e; wait "$PID"; CODE=$?; set -e
trap - EXIT
echo "serve exited with $CODE after SIGTERM"
"$PY" "$ROOT/tools/load/table.py" "$OUT/results.jsonl" "$CODE"
