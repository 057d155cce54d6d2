"""One RALIF query (case A of bench_query.py) timed under several versions of the code.

Run:
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_versions.py 73c8c9d HEAD --rounds 3

Each revision is checked out into a temporary git worktree; the versions then run in turn,
``--rounds`` times, each run in a fresh process timing 5 queries after one warm-up, so that
a machine that slows down or speeds up during the run affects every version alike.
Case A: a pool of 59,000 float32 items (Gaussian class clusters), d = 512, C = 10, 1,000
labeled, budget 1,000, ``l2 = 0.01``. Prints the median over all runs of each version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
import numpy as np
import ralif

rng = np.random.default_rng(0)
n_labeled, n_pool, d, C = 1000, 59000, 512, 10
centers = (rng.normal(size=(C, d)) * (12.0 / np.sqrt(d))).astype(np.float32)
y_true = rng.integers(C, size=n_labeled + n_pool)
X = centers[y_true] + rng.normal(size=(len(y_true), d)).astype(np.float32)
y = np.full(len(y_true), -1)
y[:n_labeled] = y_true[:n_labeled]
ralif.select(X, y, 1000, l2=0.01, random_state=0)
times = []
for _ in range(5):
    t = time.perf_counter()
    ralif.select(X, y, 1000, l2=0.01, random_state=0)
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("revisions", nargs="+", help="git revisions (HEAD, a hash, a tag)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worktree", action="store_true", help="also time the working tree")
    args = ap.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; case A; 5 queries per run")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for rev in args.revisions:
            where = Path(tmp) / rev.replace("/", "_")
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev],
                check=True,
                capture_output=True,
            )
            paths[rev] = where / "src"
        if args.worktree:
            paths["working tree"] = ROOT / "src"
        times: dict[str, list[float]] = {k: [] for k in paths}
        try:
            for _ in range(args.rounds):
                for name, src in paths.items():
                    env = dict(os.environ, PYTHONPATH=str(src))
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True
                    )
                    if out.returncode:
                        raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
                    times[name] += json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            for rev in args.revisions:
                where = Path(tmp) / rev.replace("/", "_")
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                    check=False,
                    capture_output=True,
                )
    for name, ts in times.items():
        print(
            f"{name:>14}: median {statistics.median(ts):.3f} s over {len(ts)} queries "
            f"(fastest {min(ts):.3f}, slowest {max(ts):.3f})"
        )


if __name__ == "__main__":
    main()
