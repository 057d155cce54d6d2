#!/usr/bin/env bash
# The deep row behind benchmarks/results/deep-*.md: the paper's own regime, a network
# trained from scratch every round. A small CNN on Fashion-MNIST images (a fixed pool of
# 10,000, balanced and long-tailed 100:1), random, margin, BADGE and the default RALIF,
# 5 seeds, 100 initial labels and 6 rounds of 100, 15 epochs per round; the head that
# influence is computed on is refit on the network's features each round. About 40
# minutes on two CPU cores. Extra arguments go to `ralif bench` (on a GPU, for example:
# --device cuda --rounds 10).
# Usage: bash benchmarks/run_deep.sh [OUT] [ralif bench arguments ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${1:-runs/deep}
shift || true
COMMON=(--scenario scratch-cnn --dataset fashion-mnist --pool-size 10000 --test-size 2000
        --strategies ralif,random,margin,badge --seeds 5 --rounds 6 --init 100 --budget 100
        --epochs 15 --quiet)
.venv/bin/ralif bench "${COMMON[@]}" --out "$OUT/balanced" "$@"
.venv/bin/ralif report "$OUT/balanced" --quiet
record() {  # report, destination, what was run
    { printf 'Command: `bash benchmarks/run_deep.sh` (%s; OMP_NUM_THREADS=%s, %s).\n\n' \
          "$3" "$OMP_NUM_THREADS" "$(date -u +%Y-%m-%d)"; cat "$1"; } > "$2"
}
record "$OUT/balanced/report.md" benchmarks/results/deep-fashion-mnist.md \
    "ralif bench ${COMMON[*]} $*"
cp "$OUT/balanced/curves.png" benchmarks/results/deep-fashion-mnist.png
# Long-tailed: judged by macro-F1, which counts the rare classes as much as the common.
.venv/bin/ralif bench "${COMMON[@]}" --imbalance 100 --out "$OUT/long-tailed" "$@"
.venv/bin/ralif report "$OUT/long-tailed" --metric macro_f1 --quiet
record "$OUT/long-tailed/report.md" benchmarks/results/deep-fashion-mnist-lt100.md \
    "ralif bench ${COMMON[*]} --imbalance 100 $*; ralif report --metric macro_f1"
cp "$OUT/long-tailed/curves.png" benchmarks/results/deep-fashion-mnist-lt100.png
