"""Stopping rules against hindsight over a suite folder: labels saved and score lost.

Run:
  OMP_NUM_THREADS=2 .venv/bin/ralif bench --suite tune --seeds 10 \\
      --strategies ralif,random,margin --out runs/stop-tune
  .venv/bin/python benchmarks/stopping_tables.py runs/stop-tune

For every data set of the folder (each run of ``ralif bench`` records its stopping
signals) and every seed, each rule of ``ralif.stopping.RULES`` is read round by round; where
it fires, the labels it saved against the last round and the set's metric (accuracy, or
macro-F1 where the suite says so) lost there are counted. Prints, per rule and strategy:
the runs in which it fired, the mean share of the labels after the initial set that it
saved, the mean and the worst score lost (points), and the mean over data sets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ralif.bench.report import load_curves, stopping_outcomes
from ralif.bench.store import open_results
from ralif.data.suite import SUITE
from ralif.stopping import RULES


def runs(folder: Path):
    """``(set, strategy, rule, fired round or None, labels saved, share saved, lost)``."""
    for sub in sorted(p for p in folder.iterdir() if (p / "results.sqlite").is_file()):
        with open_results(sub) as store:
            c = load_curves(store.rows())
        spec = SUITE.get(sub.name)
        values = c.macro_f1 if spec is not None and spec.metric == "macro_f1" else c.accuracy
        budget_total = c.n_labeled[-1] - c.n_labeled[0]
        for (s, name), per_seed in stopping_outcomes(c, values).items():
            for r, saved, lost in per_seed:
                yield sub.name, s, name, r, saved, saved / budget_total, lost


def main() -> None:
    folder = Path(sys.argv[1])
    rows = list(runs(folder))
    if not rows:
        sys.exit(f"no results with stopping signals in {folder}")
    sets = sorted({r[0] for r in rows})
    print(f"{folder}: {len(sets)} data sets ({', '.join(sets)})")
    print(
        "| rule | strategy | fired (runs) | labels saved (mean share) | "
        "score lost, mean (points) | worst | mean over sets of score lost |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in RULES:
        for s in sorted({r[1] for r in rows}):
            mine = [r for r in rows if r[1] == s and r[2] == name]
            fired = [r for r in mine if r[3] is not None]
            if not fired:
                print(f"| {name} | {s} | 0/{len(mine)} | — | — | — | — |")
                continue
            share = np.mean([r[5] for r in fired]) * 100
            lost = np.array([r[6] for r in fired]) * 100
            per_set = [
                np.mean([r[6] for r in fired if r[0] == d]) * 100
                for d in sets
                if any(r[0] == d for r in fired)
            ]
            print(
                f"| {name} | {s} | {len(fired)}/{len(mine)} | {share:.0f} % | "
                f"{lost.mean():+.2f} | {lost.max():+.2f} | {np.mean(per_set):+.2f} |"
            )


if __name__ == "__main__":
    main()
