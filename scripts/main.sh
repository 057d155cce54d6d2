#!/usr/bin/env bash
# The main job: set up, then benchmark RALIF against random, margin, entropy, core-set and
# BADGE on Fashion-MNIST fixed features (3 seeds, 10 rounds of 100 labels), then report.
# Extra arguments go to `ralif bench` (e.g. --quiet, --seeds 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "main: installing the Debian package dataset-fashion-mnist" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >&2 \
        || echo "main: could not install dataset-fashion-mnist" >&2
fi
OUT=${RALIF_MAIN_OUT:-runs/main}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/ralif bench --dataset fashion-mnist --fallback-dataset digits \
    --strategies ralif,random,margin,entropy,coreset,badge \
    --seeds 3 --rounds 10 --init 100 --budget 100 --out "$OUT" "$@"
.venv/bin/ralif report "$OUT"
