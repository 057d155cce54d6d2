"""Query time of every strategy on the Fashion-MNIST pool.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_strategies.py [--repeats 3]

Pool: the 60,000 Fashion-MNIST training images as PCA-64 features, 100 (or 1,000)
labeled, budgets 100 and 1,000. Medians of --repeats runs; the head's l2 is fixed at
0.01 so that only the query is timed.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import time

import numpy as np

from ralif.data import load_dataset
from ralif.loop import initial_labeled_set
from ralif.strategies import STRATEGIES, make_strategy, strategy_class


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    # Those that need a network (MC dropout): see bench_encoders.py and the deep scenario.
    default = [s for s, (cls, _) in STRATEGIES.items() if not cls.needs_network]
    ap.add_argument("--strategies", default=",".join(default))
    args = ap.parse_args()
    data = load_dataset("fashion-mnist")
    print(
        f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; median of {args.repeats} runs"
    )
    print(
        "| strategy | 100 labeled, B=100 (s) | 100 labeled, B=1000 (s) | 1000 labeled, B=1000 (s) |"
    )
    print("|---|---|---|---|")
    settings = [(100, 100), (100, 1000), (1000, 1000)]
    for name in args.strategies.split(","):
        cells = []
        for n_labeled, budget in settings:
            init = initial_labeled_set(len(data.y), n_labeled, seed=0)
            y = np.full(len(data.y), -1)
            y[init] = data.y[init]
            params = {"l2": 0.01} if strategy_class(name)[0].needs_model else {}
            times = []
            for r in range(args.repeats):
                strategy = make_strategy(name, random_state=r, **params)
                t = time.perf_counter()
                strategy.select(data.X, y, budget)
                times.append(time.perf_counter() - t)
            cells.append(f"{statistics.median(times):.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
