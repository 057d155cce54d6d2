#!/usr/bin/env bash
# Build the documentation into docs/_build/html, offline, warnings as errors.
#
# Installs what the build needs into .venv (ralif itself, and the pinned packages of
# docs/requirements.txt, only where missing or at another version), then runs Sphinx:
# the API reference from the docstrings, the CLI reference from the parsers, and the
# gallery, whose examples/plot_*.py run during the build (sphinx-gallery reruns only
# the ones that changed since the last build).
#
#   bash scripts/docs.sh              # build
#   SPHINXOPTS="-v" bash scripts/docs.sh   # more options for sphinx-build
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if [ ! -x .venv/bin/python ]; then
    bash scripts/setup.sh
fi
PY=.venv/bin/python
PIP=("$PY" -m pip --disable-pip-version-check -q)

"$PY" -c "import ralif" 2>/dev/null || "${PIP[@]}" install -e .
# Exit 1 when a pinned package is missing or at another version.
if ! "$PY" - docs/requirements.txt <<'EOF'; then
import sys
from importlib.metadata import PackageNotFoundError, version

for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition("==")
    try:
        if version(name) != pinned:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
    "${PIP[@]}" install -r docs/requirements.txt
fi

# The gallery's examples run in this process, on one thread unless told otherwise: on two
# busy cores, two OpenMP threads made the learning curves 3 times slower (12.6 s against 5.0).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
export MPLBACKEND=Agg
# The CLI page shows the parsers' defaults; --db's default reads $RALIF_SESSION.
unset RALIF_SESSION

# -E: read every page again, so that a warning is reported on every build, not only on
# the build after the page changed (the gallery still skips examples that did not change).
# -n: every cross-reference must resolve (docs/conf.py lists the third-party names that
# cannot, the build being offline).
# shellcheck disable=SC2086
"$PY" -m sphinx -b html -E -n -W --keep-going -d docs/_build/doctrees ${SPHINXOPTS:-} \
    docs docs/_build/html

echo "docs: docs/_build/html/index.html ($(($(date +%s) - start)) s)"
