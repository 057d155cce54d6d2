"""Fuzz every reader and endpoint with the long Hypothesis profile, and count the cases.

Run:
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py             # 10,000 cases per target
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py --examples 500 -k npy

Runs the properties of ``tests/test_fuzz_*.py`` (the same ones CI runs with the small
``ci`` profile) under the ``fuzz`` profile: ``--examples`` cases per target, drawn afresh
each run (not derandomized). The properties: a reader or endpoint answers, or refuses
in one line (exit 2, a 4xx); never a traceback, a 500, a hang or memory far beyond the
cap, and a refused request changes no label. Prints, per target, the cases run, the
failing ones and the time, then the totals; exits 1 when any target failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
_TARGET = re.compile(r"^(tests/\S+::\S+):$")
_COUNTS = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid")
_PHASE = re.compile(r"- during (\w+) phase \(([\d.]+) seconds\)")


def parse_statistics(text: str) -> dict[str, dict[str, float]]:
    """Per test: passing, failing and invalid cases and seconds, summed over phases."""
    stats: dict[str, dict[str, float]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        m = _TARGET.match(line)
        if m:
            current = stats.setdefault(
                m.group(1), {"passing": 0, "failing": 0, "invalid": 0, "seconds": 0.0}
            )
            continue
        if current is None:
            continue
        m = _PHASE.search(line)
        if m:
            current["seconds"] += float(m.group(2))
        m = _COUNTS.search(line)
        if m:
            current["passing"] += int(m.group(1))
            current["failing"] += int(m.group(2))
            current["invalid"] += int(m.group(3))
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=10_000, help="cases per target")
    ap.add_argument("-k", default=None, help="only the targets matching this pytest -k")
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    args = ap.parse_args()
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_fuzz_*.py"))
    cmd = [
        sys.executable, "-m", "pytest", *files, "-p", "no:cacheprovider", "-q",
        "--hypothesis-profile=fuzz", "--hypothesis-show-statistics",
        "--hypothesis-seed", str(int(time.time())),
    ]  # fmt: skip
    if args.k:
        cmd += ["-k", args.k]
    env = {**os.environ, "RALIF_FUZZ_EXAMPLES": str(args.examples)}
    if not args.quiet:
        print(" ".join(cmd), f"(RALIF_FUZZ_EXAMPLES={args.examples})", file=sys.stderr)
    started = time.monotonic()
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    stats = parse_statistics(run.stdout)
    failed_tests = re.findall(r"^FAILED (\S+)", run.stdout, flags=re.M)
    print(f"{'target':62} {'cases':>7} {'failing':>8} {'invalid':>8} {'seconds':>8}")
    total = failing = 0
    for name, s in stats.items():
        bad = int(s["failing"]) + (1 if name in failed_tests and not s["failing"] else 0)
        total += int(s["passing"] + s["failing"])
        failing += bad
        short = name.split("::", 1)[1]
        print(
            f"{short:62} {int(s['passing'] + s['failing']):>7} {bad:>8} "
            f"{int(s['invalid']):>8} {s['seconds']:>8.1f}"
        )
    print(f"{len(stats)} targets, {total} cases, {failing} failing, {wall:.0f} s")
    if run.returncode != 0:
        # The failures (and Hypothesis's falsifying examples) come before the statistics.
        end = run.stdout.find("Hypothesis Statistics")
        print(run.stdout[: end if end > 0 else None][-8000:], file=sys.stderr)
        print(run.stderr[-2000:], file=sys.stderr)
    return 0 if run.returncode == 0 and failing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
