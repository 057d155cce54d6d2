#!/usr/bin/env bash
# Print the strategy specs for a comma-separated list of names, reading benchmarks/presets.txt
# for the named configurations and passing any other name through (a name of ralif.STRATEGIES).
# Usage: ralif bench --strategies "$(bash benchmarks/presets.sh ralif,ralif_spread,random)" ...
set -euo pipefail
presets="$(dirname "$0")/presets.txt"
out=()
IFS=',' read -ra names <<< "$1"
for name in "${names[@]}"; do
    spec=$(grep -m1 "^${name}=" "$presets" || true)
    out+=("${spec:-$name}")
done
(IFS=','; echo "${out[*]}")
