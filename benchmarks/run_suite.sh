#!/usr/bin/env bash
# The benchmark suite behind benchmarks/results/suite-*.md: every strategy and mechanism of
# benchmarks/suite_strategies.txt on the tune half, then the same on the confirm half
# (10 seeds each; SEEDS=5 for a quicker run). random#2 is random under a second stream
# of draws: the noise floor.
# Usage: bash benchmarks/run_suite.sh [OUT] [HALF ...]   (halves: tune confirm; default both)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/suite_data.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${1:-runs/suite}
shift || true
HALVES=("$@")
[ "${#HALVES[@]}" -gt 0 ] || HALVES=(tune confirm)
# Named configurations (ralif_spread, typiclust_ralif5...) are specs of benchmarks/presets.txt.
STRATEGIES=$(bash benchmarks/presets.sh "$(tr -d ' \n' < benchmarks/suite_strategies.txt)")
for half in "${HALVES[@]}"; do
    .venv/bin/ralif bench --suite "$half" --seeds "${SEEDS:-10}" --strategies "$STRATEGIES" --out "$OUT/$half" --quiet
    .venv/bin/ralif report "$OUT/$half" --quiet
    cp "$OUT/$half/suite-report.md" "benchmarks/results/suite-$half.md"
    cp "$OUT/$half/cd-$half.png" "benchmarks/results/suite-$half-cd.png"
done
