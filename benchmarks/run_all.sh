#!/usr/bin/env bash
# The benchmark runs behind benchmarks/results/*.md (about 30 minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Named configurations (ralif_authors...) are specs of benchmarks/presets.txt.
ALL=$(bash benchmarks/presets.sh ralif,ralif_influence,ralif_authors,ralif_nodiv,ralif_argmax,ralif_damped,random,margin,entropy,least_confidence,bald,coreset,badge,isal,typiclust)
OUT=${1:-runs}
run() {  # name, then ralif bench arguments
    local name=$1; shift
    .venv/bin/ralif bench --strategies "$ALL" --out "$OUT/$name" --quiet "$@"
    .venv/bin/ralif report "$OUT/$name" --quiet
    cp "$OUT/$name/report.md" "benchmarks/results/$name.md"
    cp "$OUT/$name/curves.png" "benchmarks/results/$name.png"
}
run fashion-mnist --dataset fashion-mnist --seeds 3 --rounds 10 --init 100 --budget 100
run fashion-mnist-lt100 --dataset fashion-mnist --imbalance 100 --seeds 3 --rounds 10 --init 100 --budget 100
run digits --dataset digits --seeds 5 --rounds 8 --init 20 --budget 20
