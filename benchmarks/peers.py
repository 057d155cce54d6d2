"""ralif's baselines next to scikit-activeml's, on the same splits and features.

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/peers.py [--quick]
(needs the optional extra: pip install -e '.[peers]')

1. Query time on the Fashion-MNIST pool (59,900 unlabeled items, PCA-64 features,
   100 labeled, budget 100): median of --repeats runs for ours, and for theirs where one
   run takes under 20 s (else one run).
2. Accuracy: the same loop (same initial sets, same evaluated model: the linear head with
   cross-validated l2) with either library's query, on a fixed 10,000-item subsample of
   the pool so that the slow peers finish; AUBC over rounds 1-R, mean ± std over seeds.

Their classifier is scikit-learn's LogisticRegression with C = 1/(n l2), the same
objective as our head, with the l2 the evaluated model chose that round.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import time

import numpy as np

from ralif.bench.report import aubc
from ralif.data import Dataset, load_dataset
from ralif.loop import initial_labeled_set, run_rounds
from ralif.strategies import make_strategy, strategy_class
from ralif.strategies.base import Strategy

PAIRS = {  # ours -> scikit-activeml's
    "random": "RandomSampling",
    "entropy": "UncertaintySampling(entropy)",
    "margin": "UncertaintySampling(margin_sampling)",
    "coreset": "CoreSet",
    "badge": "Badge",
    "typiclust": "TypiClust",
}


class Peer(Strategy):
    """A scikit-activeml query strategy behind ralif's interface.

    Its logistic regression takes the ridge of the model it is handed (the evaluated
    head, in the loop), else ``l2``.
    """

    @property
    def needs_model(self) -> bool:  # only the peers that train a classifier
        return self.kind.startswith(("UncertaintySampling", "Badge"))

    def __init__(
        self, kind: str, classes: np.ndarray, l2: float = 0.01, random_state: object = None
    ) -> None:
        self.kind = kind
        self.classes = classes
        self.l2 = l2
        self.random_state = random_state

    def query(self, model, X, y, pool, budget, rng):
        from skactiveml import pool as skpool
        from skactiveml.classifier import SklearnClassifier
        from sklearn.linear_model import LogisticRegression

        seed = int(rng.integers(2**31 - 1))
        labeled = np.flatnonzero(y >= 0)
        l2 = getattr(model, "l2_", self.l2)
        name, _, method = self.kind.partition("(")
        kwargs = {"missing_label": -1, "random_state": seed}
        if method:
            kwargs["method"] = method.rstrip(")")
        qs = getattr(skpool, name)(**kwargs)
        if name in ("UncertaintySampling", "Badge"):
            C = 1.0 / (len(labeled) * l2)
            clf = SklearnClassifier(
                LogisticRegression(C=C, max_iter=2000),
                classes=self.classes,
                missing_label=-1,
                random_state=seed,
            )
            idx = qs.query(X, y, clf=clf, batch_size=budget)
        else:
            idx = qs.query(X, y, batch_size=budget)
        return np.asarray(idx), np.full(len(pool), np.nan)


def time_query(strategy: Strategy, X, y, budget, repeats, slow_after=20.0):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        strategy.select(X, y, budget)
        times.append(time.perf_counter() - t)
        if times[-1] > slow_after:
            break
    return statistics.median(times), len(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--subsample", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="timing only")
    ap.add_argument("--budget", type=int, default=100, help="batch size of the timed query")
    ap.add_argument("--strategies", default=",".join(PAIRS))
    args = ap.parse_args()
    names = [s for s in args.strategies.split(",") if s]

    import skactiveml

    data = load_dataset("fashion-mnist")
    classes = np.unique(data.y)
    print(
        f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; scikit-activeml {skactiveml.__version__}"
    )
    init = initial_labeled_set(len(data.y), 100, seed=0)
    y = np.full(len(data.y), -1)
    y[init] = data.y[init]
    print(
        f"\nquery time: pool {int((y < 0).sum())} items, PCA-64, 100 labeled, budget {args.budget}"
    )
    print("| strategy | ralif (s) | scikit-activeml (s) | ratio |\n|---|---|---|---|")
    for name in names:
        ours, _ = time_query(
            make_strategy(
                name,
                random_state=0,
                **({"l2": 0.01} if strategy_class(name)[0].needs_model else {}),
            ),
            data.X,
            y,
            args.budget,
            args.repeats,
        )
        theirs, runs = time_query(
            Peer(PAIRS[name], classes, 0.01, random_state=0), data.X, y, args.budget, args.repeats
        )
        note = "" if runs == args.repeats else f" ({runs} run)"
        print(f"| {name} | {ours:.3f} | {theirs:.2f}{note} | {theirs / ours:.0f}x |", flush=True)
    if args.quick:
        return

    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(data.y), args.subsample, replace=False))
    sub = Dataset(data.name, data.X[keep], data.y[keep], data.X_test, data.y_test)
    print(
        f"\naccuracy: {args.subsample}-item pool subsample, {args.seeds} seeds, 100 initial + {args.rounds} x 100; AUBC (%) over rounds 1-{args.rounds}"
    )
    print("| strategy | ralif | scikit-activeml | difference |\n|---|---|---|---|")
    for name in names:
        scores = {}
        for who in ("ralif", "peer"):
            per_seed = []
            for seed in range(args.seeds):
                initial = initial_labeled_set(len(sub.y), 100, seed)
                strategy = name if who == "ralif" else Peer(PAIRS[name], classes)

                accs = [
                    r.accuracy
                    for r in run_rounds(
                        sub.X,
                        sub.y,
                        sub.X_test,
                        sub.y_test,
                        strategy,
                        initial,
                        100,
                        args.rounds,
                        seed=seed,
                    )
                ]
                per_seed.append(aubc(np.array([accs]), np.arange(len(accs)))[0])
            scores[who] = np.array(per_seed) * 100
        d = scores["ralif"] - scores["peer"]
        print(
            f"| {name} | {scores['ralif'].mean():.1f} ± {scores['ralif'].std():.1f} | "
            f"{scores['peer'].mean():.1f} ± {scores['peer'].std():.1f} | {d.mean():+.1f} ± {d.std():.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
