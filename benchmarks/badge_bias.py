"""Why ralif's BADGE scores above scikit-activeml's: the bias term of the gradient embedding.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/badge_bias.py  (needs the peers extra)

Same 10,000-item Fashion-MNIST pool subsample as peers.py, 4 seeds, 100 initial + 5 x 100,
AUBC (%): ralif's BADGE (embedding (p - e_yhat) (x) [x, 1]), the same without the bias
column ((p - e_yhat) (x) x, as scikit-activeml and the original BADGE code), and
scikit-activeml's Badge.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ralif.strategies.baselines as baselines
from peers import Peer
from ralif.bench.report import aubc
from ralif.data import Dataset, load_dataset
from ralif.loop import initial_labeled_set, run_rounds
from ralif.selectors import gradient_kmeans_pp_select, kmeans_pp_select


def without_bias(residuals, X, n_select, *, random_state=None):
    """BADGE's k-means++ on explicit (p - e_yhat) (x) x embeddings (no bias column)."""
    G = (np.asarray(residuals, np.float64)[:, :, None] * X[:, None, :].astype(np.float64)).reshape(
        len(X), -1
    )
    first = int(np.argmax((G**2).sum(axis=1)))
    return kmeans_pp_select(G, n_select, first=first, random_state=random_state)


def main() -> None:
    d = load_dataset("fashion-mnist")
    keep = np.sort(np.random.default_rng(0).choice(len(d.y), 10_000, replace=False))
    sub = Dataset(d.name, d.X[keep], d.y[keep], d.X_test, d.y_test)
    classes = np.unique(d.y)
    results = {}
    for label in ("ralif (bias)", "ralif (no bias)", "scikit-activeml"):
        baselines.gradient_kmeans_pp_select = (
            without_bias if label == "ralif (no bias)" else gradient_kmeans_pp_select
        )
        per_seed = []
        for seed in range(4):
            initial = initial_labeled_set(len(sub.y), 100, seed)
            if label == "scikit-activeml":

                def strategy(rs, l2):
                    return Peer("Badge", classes, l2, rs)
            else:
                strategy = "badge"
            accs = [
                r.accuracy
                for r in run_rounds(
                    sub.X, sub.y, sub.X_test, sub.y_test, strategy, initial, 100, 5, seed=seed
                )
            ]
            per_seed.append(aubc(np.array([accs]), np.arange(len(accs)))[0] * 100)
        results[label] = np.array(per_seed)
        print(
            f"{label:16s} per seed {results[label].round(2)}  mean {results[label].mean():.2f}",
            flush=True,
        )
    d1 = results["ralif (bias)"] - results["ralif (no bias)"]
    d2 = results["ralif (no bias)"] - results["scikit-activeml"]
    print(f"bias - no bias: {d1.round(2)} mean {d1.mean():+.2f}")
    print(f"no bias - scikit-activeml: {d2.round(2)} mean {d2.mean():+.2f}")


if __name__ == "__main__":
    main()
