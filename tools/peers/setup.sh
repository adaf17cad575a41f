#!/usr/bin/env bash
# Creates tools/peers/.venv and installs the pinned peer systems (requirements.txt):
# faiss-cpu, hnswlib (compiled from its sdist: needs a C++ compiler), usearch, numpy.
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
"$VPY" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
"$VPY" - <<'PY'
import faiss, hnswlib, usearch, numpy
print("ok: faiss", faiss.__version__, "| hnswlib", getattr(hnswlib, "__version__", "0.8.0"),
      "| usearch", usearch.__version__, "| numpy", numpy.__version__,
      "| faiss Panorama:", hasattr(faiss, "IndexFlatIPPanorama"))
PY
echo "run with: $HERE/.venv/bin/python $HERE/run_peers.py --help"
