"""The main job's benchmark, timed by stage, optionally against an earlier revision.

Run:
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_main.py
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_main.py --baseline 2fef10d

Runs the benchmark of ``scripts/main.sh`` (``ralif bench`` on Fashion-MNIST, or digits
where it is missing: RALIF, random, margin, entropy, core-set and BADGE, 3 seeds, 10
rounds of 100 labels) into a fresh folder, and prints its wall time split into stages
from the results it stored: the evaluated model's fits (the cross-validated ridge and the
final fit, every round of every strategy), each strategy's selections, and the rest
(loading the data and its PCA, start-up, writing results). With ``--baseline REV`` the
same benchmark then runs under that revision (a temporary git worktree), and the script
prints the ratio of wall times and whether every stored accuracy and macro-F1 is equal:
a faster evaluation must not change what it measures.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = "ralif,random,margin,entropy,coreset,badge"


def run_bench(src: Path, out: Path, args: argparse.Namespace) -> float:
    """Wall seconds of the main job's ``ralif bench`` with the package at ``src``."""
    cmd = [
        sys.executable, "-m", "ralif.cli", "bench", "--dataset", args.dataset,
        "--fallback-dataset", "digits", "--strategies", STRATEGIES, "--seeds", str(args.seeds),
        "--rounds", str(args.rounds), "--init", "100", "--budget", "100", "--out", str(out),
        "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def read_results(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def stages(rows: list[dict], wall: float) -> list[tuple[str, float]]:
    """``(stage, seconds)``: the evaluation fits, each strategy's selections, the rest."""
    fit = sum(float(r["fit_seconds"] or 0) for r in rows)
    select = defaultdict(float)
    for r in rows:
        select[r["strategy"]] += float(r["select_seconds"] or 0)
    out = [("evaluation fits (all strategies)", fit)]
    out += [(f"selection: {s}", t) for s, t in select.items()]
    out.append(("the rest (data, PCA, start-up, results)", wall - fit - sum(select.values())))
    return out


def print_split(title: str, rows: list[dict], wall: float) -> None:
    print(f"\n{title}: {wall:.1f} s wall ({wall / 60:.2f} min)")
    print(f"{'stage':44} {'seconds':>8} {'share':>6}")
    for name, t in stages(rows, wall):
        print(f"{name:44} {t:8.1f} {t / wall:6.1%}")
    rounds = len(rows)
    fit = sum(float(r["fit_seconds"] or 0) for r in rows)
    print(f"{'evaluation fit per round (mean)':44} {fit / rounds:8.2f}")


def same_measures(a: list[dict], b: list[dict]) -> tuple[int, int]:
    """How many (strategy, seed, round) rows agree in accuracy and macro-F1, of how many."""
    key = lambda r: (r["strategy"], r["seed"], r["round"])  # noqa: E731
    bs = {key(r): r for r in b}
    same = sum(
        1
        for r in a
        if key(r) in bs and (r["accuracy"], r["macro_f1"]) == (bs[key(r)]["accuracy"],
                                                               bs[key(r)]["macro_f1"])
    )  # fmt: skip
    return same, len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="a git revision to time the same benchmark under")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    print(
        f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; {args.dataset}, "
        f"{STRATEGIES}, {args.seeds} seeds x {args.rounds} rounds of 100"
    )
    with tempfile.TemporaryDirectory() as tmp:
        wall = run_bench(ROOT / "src", Path(tmp) / "now", args)
        rows = read_results(Path(tmp) / "now")
        print_split("working tree", rows, wall)
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.baseline],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            try:
                base_wall = run_bench(tree / "src", Path(tmp) / "base", args)
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
                )
            base_rows = read_results(Path(tmp) / "base")
            print_split(f"baseline {args.baseline}", base_rows, base_wall)
            same, total = same_measures(rows, base_rows)
            print(f"\nwall time: {wall:.1f} s against {base_wall:.1f} s ({base_wall / wall:.2f}x)")
            print(f"rows with equal accuracy and macro-F1: {same} of {total}")


if __name__ == "__main__":
    main()
