#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 30) with cargo fuzz
# (libFuzzer, AddressSanitizer, the nightly toolchain), seeded from fuzz/seeds/<target>,
# growing fuzz/corpus/<target> (not committed). Fails on the first crash, leak or timeout:
# libFuzzer leaves the input in fuzz/artifacts/<target>/, which becomes a regression test.
# A summary line per target (runs, seconds) is appended to fuzz/corpus/runs.log.
#   bash tools/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(npy fvecs ids sequences plan manifest store graph space deletes)
fi
cargo +nightly fuzz build -O --fuzz-dir fuzz
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/corpus/$t.log"
    echo "== fuzz $t, ${secs}s"
    if ! cargo +nightly fuzz run -O --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 -timeout=20 -max_len=262144 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $t failed: see fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "$(date -u +%FT%TZ) $t ${secs}s runs=$runs" | tee -a fuzz/corpus/runs.log
done
