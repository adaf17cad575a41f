#!/usr/bin/env bash
# Installs only the ONNX Runtime that mrl-index's encoders load at run time (the PyPI
# `onnxruntime` wheel, which carries libonnxruntime.so) into .venv at the repository root.
# mrl-index built from this checkout finds it there by itself (it looks nowhere else but
# ORT_DYLIB_PATH); or point ORT_DYLIB_PATH at the library.
# tools/setup.sh installs the whole model tooling (training, export), this included.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION="$(grep -E '^onnxruntime==' tools/requirements.txt | cut -d= -f3)"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
if ! .venv/bin/python -c "import onnxruntime, sys; sys.exit(onnxruntime.__version__ != '$VERSION')" 2>/dev/null; then
  .venv/bin/python -m pip install --disable-pip-version-check -q "onnxruntime==$VERSION"
fi
ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1
