#!/usr/bin/env bash
# Creates tools/peers/.venv and installs the pinned peer systems (requirements.txt):
# faiss-cpu, hnswlib (compiled from its sdist: needs a C++ compiler), usearch, numpy, and
# the optional ones, scann and rabitqlib (manylinux x86_64 wheels only), and mrl-index's own
# package from ../../python (built with cargo and maturin): a failure to
# install an optional package is reported, not fatal (run_peers.py then skips its family).
# Needs python3 (3.11) and PyPI; nothing else is downloaded.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
cd "$HERE"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY="$HERE/.venv/bin/python"
if ! command -v "${CXX:-g++}" >/dev/null 2>&1 && ! command -v c++ >/dev/null 2>&1; then
  echo "warning: no C++ compiler found; hnswlib (no 3.11 wheel) will fail to build" >&2
fi
REQUIRED="$(mktemp)"
trap 'rm -f "$REQUIRED"' EXIT
grep -v -E '#[[:space:]]*optional[[:space:]]*$' "$HERE/requirements.txt" > "$REQUIRED"
"$VPY" -m pip install --disable-pip-version-check -q -r "$REQUIRED"
# optional packages, one pip call each, held to the required pins (-c)
grep -E '^[^#].*#[[:space:]]*optional[[:space:]]*$' "$HERE/requirements.txt" | sed 's/[[:space:]]*#.*//' |
while read -r pkg; do
  if ! "$VPY" -m pip install --disable-pip-version-check -q -c "$REQUIRED" "$pkg"; then
    echo "warning: optional $pkg did not install (see pip's message above); its family will be skipped" >&2
  fi
done
# mrl-index's own Python package (family mrl-index-py: the same measurement as the peers,
# through Python), built from this checkout (maturin, cargo); rebuilt when its sources change.
ROOT="$(cd "$HERE/../.." && pwd)"
STAMP="$(cd "$ROOT" && find python src Cargo.toml Cargo.lock -type f \( -name '*.rs' -o -name '*.toml' \
  -o -name '*.lock' -o -name '*.py' -o -name '*.pyi' -o -name py.typed \) -not -path 'python/tests/*' |
  LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64)"
if [ "$(cat .venv/mrl_index.stamp 2>/dev/null)" != "$STAMP" ]; then
  "$VPY" -m pip install --disable-pip-version-check -q "$ROOT/python"
  echo "$STAMP" > .venv/mrl_index.stamp
fi
"$VPY" - <<'PY'
import faiss, hnswlib, usearch, numpy, mrl_index
print("ok: faiss", faiss.__version__, "| hnswlib", getattr(hnswlib, "__version__", "0.8.0"),
      "| usearch", usearch.__version__, "| numpy", numpy.__version__,
      "| faiss Panorama:", hasattr(faiss, "IndexFlatIPPanorama"), "| mrl_index", mrl_index.__file__)
PY
# optional imports in their own processes (a native module may abort rather than raise)
for mod in scann rabitqlib; do
  if out="$("$VPY" -c "
import importlib.metadata as m, $mod
print(m.version('$mod'))" 2>&1)"; then
    echo "ok: $mod $out"
  else
    echo "optional: $mod is not usable here, its family will be skipped: $(printf '%s' "$out" | tail -n 1)"
  fi
done
echo "run with: $HERE/.venv/bin/python $HERE/run_peers.py --help"
