"""Compare strategy variants (any parameters) on the linear probe, against random.

Run, e.g.:
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/variants.py --dataset fashion-mnist \\
      --seeds 3 --rounds 10 --init 100 --budget 100 \\
      --variant random=random --variant auto=ralif --variant l2_0.01='ralif:{"l2": 0.01}'

Each variant is NAME=STRATEGY or NAME=STRATEGY:JSON-PARAMS. Same seeds, initial sets and
evaluated model (linear head, cross-validated l2) as ``ralif bench``; prints AUBC (mean
accuracy over rounds 1-R, %), and with a ``random`` variant the mean difference to it,
the rounds where the mean is at least random's, and the per-round differences.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np

from ralif.data import load_dataset
from ralif.loop import initial_labeled_set, run_rounds


def parse_variant(text: str) -> tuple[str, str, dict]:
    name, _, spec = text.partition("=")
    strategy, _, params = spec.partition(":")
    return name, strategy, json.loads(params) if params else {}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--imbalance", type=float, default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--init", type=int, default=100)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--variant", action="append", required=True, help="NAME=STRATEGY[:JSON]")
    args = ap.parse_args()
    data = load_dataset(args.dataset, imbalance=args.imbalance)
    curves = {}
    for name, strategy, params in map(parse_variant, args.variant):
        runs = []
        for seed in range(args.seeds):
            initial = initial_labeled_set(len(data.y), args.init, seed)
            results = run_rounds(
                data.X, data.y, data.X_test, data.y_test, strategy, initial, args.budget, args.rounds,
                seed=seed, params=params,
            )  # fmt: skip
            runs.append([r.accuracy for r in results])
        curves[name] = c = np.array(runs) * 100
        line = f"{name:24s} AUBC {c[:, 1:].mean():.2f} ± {c[:, 1:].mean(axis=1).std():.2f}"
        base = curves.get("random")
        if base is not None and name != "random":
            diff = (c - base)[:, 1:]
            at_least = int((c.mean(axis=0)[1:] >= base.mean(axis=0)[1:]).sum())
            line += (
                f"  vs random {diff.mean():+.2f}  rounds >= random {at_least}/{args.rounds}"
                f"  per round {' '.join(f'{v:+.1f}' for v in diff.mean(axis=0))}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
