#!/usr/bin/env bash
# Fetch the data behind the benchmark suite (ralif bench --suite): the Debian packages
# of R's data sets (r-cran-modeldata, r-cran-kernlab, r-cran-caret) and Fashion-MNIST.
# The R packages are unpacked into ralif's cache without installing R itself
# (ralif reads their files with the PyPI package rdata); already installed ones are kept.
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ralif/r-packages"
need=()
for pkg in modeldata kernlab caret; do
    if [ ! -d "/usr/lib/R/site-library/$pkg/data" ] && [ ! -d "$CACHE/usr/lib/R/site-library/$pkg/data" ]; then
        need+=("r-cran-$pkg")
    fi
done
if [ "${#need[@]}" -gt 0 ] || { [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ]; }; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
    fi
fi
if [ "${#need[@]}" -gt 0 ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -qq "${need[@]}")
    mkdir -p "$CACHE"
    for deb in "$tmp"/*.deb; do
        dpkg-deb -x "$deb" "$CACHE"
    done
    echo "suite_data: unpacked ${need[*]} into $CACHE" >&2
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >&2
fi
