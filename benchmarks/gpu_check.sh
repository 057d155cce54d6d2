#!/usr/bin/env bash
# GPU checks and figures of streamed queries and feature extraction, in one go.
# Run on a machine with a CUDA GPU, from the repository root:  bash benchmarks/gpu_check.sh
# It prints every figure; see benchmarks/gpu_check.py for what each one is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
# The CPU figures beside the GPU ones use the machine's cores as they are.
"$PY" benchmarks/gpu_check.py "$@"
# The streaming tests on this machine (they run on the CPU; the GPU agreement is above).
"$PY" -m pytest -q tests/test_streaming.py tests/test_sources.py -p no:cacheprovider
