#!/usr/bin/env bash
# The main job: set up, then run the demonstration selection on scikit-learn's digits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ralif demo "$@"
