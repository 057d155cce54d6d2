#!/usr/bin/env bash
# Build ralif's sdist and wheel, install the wheel into a fresh virtual environment outside
# the source tree, and run the installed package from a folder outside the source tree:
# `ralif --version`, `ralif demo` and a short Python check of what the wheel ships.
#
# Usage: bash scripts/wheel_smoke.sh   (PYTHON picks the interpreter of the fresh
# environment, python3 by default; the build and twine come from .venv, see setup.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
BUILD_PY=${BUILD_PY:-$ROOT/.venv/bin/python}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ralif-wheel-smoke.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
unset PYTHONPATH

echo "wheel-smoke: building into $TMP/dist"
# The wheel is built from the sdist, so a file missing from the sdist fails here too.
"$BUILD_PY" -m build --outdir "$TMP/dist" "$ROOT" >"$TMP/build.log" 2>&1 \
    || { cat "$TMP/build.log" >&2; echo "wheel-smoke: build failed" >&2; exit 1; }
"$BUILD_PY" -m twine check --strict "$TMP"/dist/*
shopt -s nullglob
wheels=("$TMP"/dist/ralif-*.whl)
shopt -u nullglob
[ "${#wheels[@]}" = 1 ] || { echo "wheel-smoke: expected one wheel in $TMP/dist" >&2; exit 1; }
WHEEL=${wheels[0]}

echo "wheel-smoke: installing $(basename "$WHEEL") into a fresh environment"
"$PYTHON" -m venv "$TMP/venv"
VENV_PY=$TMP/venv/bin/python
"$VENV_PY" -m pip install --disable-pip-version-check -q "$WHEEL"

mkdir "$TMP/elsewhere"
cd "$TMP/elsewhere"
version_line=$("$TMP/venv/bin/ralif" --version)
echo "wheel-smoke: ralif --version: $version_line"
"$TMP/venv/bin/ralif" demo >"$TMP/demo.out"
grep -q "held-out accuracy" "$TMP/demo.out" \
    || { cat "$TMP/demo.out" >&2; echo "wheel-smoke: ralif demo printed no table" >&2; exit 1; }
echo "wheel-smoke: ralif demo ran"

# -I: neither the current folder nor PYTHON* variables put anything on sys.path.
RALIF_SMOKE_SRC=$ROOT/src RALIF_SMOKE_VENV=$TMP/venv RALIF_SMOKE_VERSION_LINE=$version_line \
    "$VENV_PY" -I - <<'EOF'
import importlib.metadata
import importlib.resources
import os
from pathlib import Path

import numpy as np

import ralif

here = Path(ralif.__file__).resolve()
venv = Path(os.environ["RALIF_SMOKE_VENV"]).resolve()
src = Path(os.environ["RALIF_SMOKE_SRC"]).resolve()
assert here.is_relative_to(venv), f"ralif imported from {here}, not from the fresh environment"
assert not here.is_relative_to(src), f"ralif imported from the source tree: {here}"

version = importlib.metadata.version("ralif")
assert ralif.__version__ == version, (ralif.__version__, version)
line = os.environ["RALIF_SMOKE_VERSION_LINE"]
assert line == f"ralif {version}", line

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 5))
y = np.full(200, -1)
y[:20] = (X[:20, 0] > 0).astype(int)
picks = ralif.select(X, y, budget=5, random_state=0)
assert picks.shape == (5,) and len(set(picks.tolist())) == 5, picks
assert (y[picks] == -1).all(), picks

page = importlib.resources.files("ralif.session").joinpath("page")
for name in ("index.html", "page.css", "page.js"):
    assert page.joinpath(name).is_file(), f"ralif/session/page/{name} is not in the wheel"
    assert page.joinpath(name).read_text(encoding="utf-8").strip(), name
assert importlib.resources.files("ralif").joinpath("py.typed").is_file(), "py.typed missing"
print(f"wheel-smoke: ralif {version} from {here.parent}: select, page assets and py.typed ok")
EOF
echo "wheel-smoke: ok"
