"""Does influence at RALIF's ridge agree with refitting, on the suite's data sets?

For every suite set and seed, at the suite protocol's initial labeled set (round 0) and
after three rounds of random labels (round 3), the head is fitted with a ridge, and for
40 pool items the predicted change of the pool's pseudo-label loss (influence) is
compared with the change measured by refitting the head with the item added, once with
a random label ("random label") and once with the head's own label ("pseudo label", the
term RALIF's expected score is made of when one label is kept). Agreement is Spearman's
rank correlation over the 40 items. Ridges: the cross-validated one the default uses
(``auto``), ten times it, and 0.1.

Run (two cores, about 15 minutes for both halves):
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_fidelity.py [--sets tune] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
from scipy.stats import spearmanr

from ralif import LinearHead, influence_matrix
from ralif.bench.runner import BenchConfig, suite_configs
from ralif.data import load_dataset, subsample
from ralif.loop import initial_labeled_set

N_ITEMS = 40
RIDGES = ("auto", "10x auto", "0.1")
KINDS = ("random label", "pseudo label")


def target_loss(head: LinearHead, X: np.ndarray, labels: np.ndarray) -> float:
    p = head.predict_proba(X)
    return float(-np.log(p[np.arange(len(labels)), np.searchsorted(head.classes_, labels)]).mean())


def agreement(XL, yL, XU, l2: float, rng: np.random.Generator) -> dict[str, float]:
    """Spearman of predicted against refitted changes, per kind of added label."""
    head = LinearHead(l2=l2).fit(XL, yL)
    pseudo = head.predict(XU)
    base = target_loss(head, XU, pseudo)
    delta = influence_matrix(head, XL, yL, XU, rescale_ridge=True)
    items = rng.choice(len(XU), min(N_ITEMS, len(XU)), replace=False)
    out = {}
    for kind in KINDS:
        predicted, actual = [], []
        for i in items:
            c = (
                int(np.searchsorted(head.classes_, pseudo[i]))
                if kind == "pseudo label"
                else int(rng.integers(len(head.classes_)))
            )
            refit = LinearHead(l2=l2).fit(np.vstack([XL, XU[i]]), np.r_[yL, head.classes_[c]])
            actual.append(target_loss(refit, XU, pseudo) - base)
            predicted.append(delta[i, c])
        out[kind] = float(spearmanr(predicted, actual)[0])
    return out


def measure(name: str, config: BenchConfig, seeds: int) -> dict:
    data = subsample(
        load_dataset(config.dataset, dim=config.dim), config.pool_size, config.test_size
    )
    X, y = data.X.astype(np.float64), data.y
    rho = {(stage, r, k): [] for stage in (0, 3) for r in RIDGES for k in KINDS}
    l2s = []
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 7])
        labeled = initial_labeled_set(len(y), config.init, seed, y=y)
        for stage in (0, 3):
            if stage:
                rest = np.setdiff1d(np.arange(len(y)), labeled)
                labeled = np.r_[labeled, rng.choice(rest, 3 * config.budget, replace=False)]
            pool = np.setdiff1d(np.arange(len(y)), labeled)
            XL, yL, XU = X[labeled], y[labeled], X[pool]
            auto = LinearHead(l2="auto").fit(XL, yL).l2_
            if stage == 0:
                l2s.append(auto)
            for ridge, l2 in zip(RIDGES, (auto, 10 * auto, 0.1), strict=True):
                for kind, value in agreement(XL, yL, XU, l2, rng).items():
                    rho[(stage, ridge, kind)].append(value)
    return {"rho": {k: float(np.median(v)) for k, v in rho.items()}, "l2": float(np.median(l2s))}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", default="all", help="all, tune, confirm or a comma list")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    configs = suite_configs(args.sets, BenchConfig(strategies=("random",), seeds=1))
    print(
        f"Spearman of influence against refitting, median over {args.seeds} seeds, "
        f"{N_ITEMS} pool items each; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}\n"
    )
    cols = [(s, r) for s in (0, 3) for r in RIDGES]
    print("Each cell: random label / pseudo label.\n")
    print("| data set | l2 auto (round 0) | " + " | ".join(f"r{s} {r}" for s, r in cols) + " | s |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    results = {}
    for name, config in configs.items():
        t = time.perf_counter()
        res = results[name] = measure(name, config, args.seeds)
        rho = res["rho"]
        cells = " | ".join(" / ".join(f"{rho[(s, r, k)]:.2f}" for k in KINDS) for s, r in cols)
        print(f"| {name} | {res['l2']:.3g} | {cells} | {time.perf_counter() - t:.0f} |", flush=True)
    print()
    for col in [(s, r, k) for s, r in cols for k in KINDS]:
        values = np.array([r["rho"][col] for r in results.values()])
        print(
            f"round {col[0]}, {col[1]}, {col[2]}: median {np.median(values):.2f}, "
            f"min {values.min():.2f}, sets >= 0.9: {int((values >= 0.9).sum())}/{len(values)}"
        )


if __name__ == "__main__":
    main()
