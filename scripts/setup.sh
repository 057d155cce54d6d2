#!/usr/bin/env bash
# Create .venv (if missing) and install ralif with its development extras into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# PyTorch is optional (autograd cross-checks, the authors' per-sample method in the
# benchmark). Pin the CPU build: an open "torch" requirement resolves to a multi-GB
# CUDA build on PyPI.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" install "torch==2.13.0" || echo "setup: torch not installed; its tests fail unless RALIF_TEST_ALLOW_MISSING=1" >&2
fi
"${PIP[@]}" install -e ".[dev]"
