"""A demonstration query on scikit-learn's digits, printed as a table."""

from __future__ import annotations

import numpy as np

from ralif._validation import RalifInputError
from ralif.head import LinearHead
from ralif.scores import kept_classes
from ralif.strategies.ralif import RALIF


def _stratified_labeled(y: np.ndarray, n_labeled: int, rng: np.random.Generator) -> np.ndarray:
    """``n_labeled`` indices spread as evenly as possible over the classes."""
    classes = np.unique(y)
    order = rng.permutation(len(y))
    # Round-robin over classes in a random order within each class.
    rank = np.empty(len(y), dtype=np.int64)
    for c in classes:
        members = order[y[order] == c]
        rank[members] = np.arange(len(members))
    by_rank = np.lexsort((rng.random(len(y)), rank))
    return by_rank[:n_labeled]


def _accuracy(X_train, y_train, X_test, y_test, l2) -> float:
    head = LinearHead(l2=l2).fit(X_train, y_train)
    return float((head.predict(X_test) == y_test).mean())


def run_demo(n_labeled: int = 30, budget: int = 10, seed: int = 0, **params: object) -> dict:
    """Label a few digits, ask RALIF for the next ``budget``, and print what and why.

    Parameters
    ----------
    n_labeled : int
        Initially labeled items (spread over the ten classes).
    budget : int
        How many items RALIF picks.
    seed : int
        Seed of the split and of the k-means++ draws.
    **params
        RALIF parameters (``l2``, ``tau``, ...).

    Returns
    -------
    summary : dict
        The picks and the held-out accuracies printed at the end.
    """
    from sklearn.datasets import load_digits

    X_all, y_all = load_digits(return_X_y=True)
    X_all = (X_all - X_all.mean(axis=0)) / (X_all.std(axis=0) + 1.0)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y_all))
    test, rest = perm[:500], perm[500:]
    X, y_true = X_all[rest], y_all[rest]
    X_test, y_test = X_all[test], y_all[test]
    if not 2 <= n_labeled < len(rest):
        raise RalifInputError(f"--labeled must be between 2 and {len(rest) - 1}, got {n_labeled}")
    y = np.full(len(rest), -1)
    labeled = _stratified_labeled(y_true, n_labeled, rng)
    y[labeled] = y_true[labeled]

    strategy = RALIF(random_state=seed, **params)
    picks = strategy.select(X, y, budget)
    head, infl = strategy.head_, strategy.influence_
    pos = np.searchsorted(strategy.pool_index_, picks)
    cand_rank = {int(c): r for r, c in enumerate(strategy.candidates_, start=1)}
    proba = infl.proba[pos]
    kept = kept_classes(proba, strategy.tau)

    print("RALIF demonstration on scikit-learn's digits (8x8 images, 10 classes, 64 features)")
    print(
        f"  labeled {len(labeled)}, pool {len(strategy.pool_index_)}, held-out test {len(test)}, budget {budget}"
    )
    cv = f" (chosen by {head.cv}-fold cross-validation)" if head.cv_log_loss_ else ""
    print(f"  head: l2 = {head.l2_:g}{cv}, gradient norm at the optimum {head.grad_norm_:.1e}")
    print(
        f"  target loss L_T (pool, pseudo labels) = {infl.target_loss:.4f}; "
        f"H^-1 g by {infl.solve.solver} (residual {infl.solve.residual:.1e})"
    )
    print(
        f"  candidates: the {len(strategy.candidates_)} pool items with the largest predicted loss drop"
        + (
            " among the most uncertain (smallest margin)"
            if strategy.candidates == "influence+margin"
            else ""
        )
        + "; the batch is drawn from them by k-means++"
    )
    print()
    head_row = f"{'pick':>4}  {'item':>5}  {'true':>4}  {'pseudo':>6}  {'p(pseudo)':>9}  {'kept labels':<12}  {'E(z)':>10}  {'cand. rank':>10}"
    print(head_row)
    print("-" * len(head_row))
    for k, (i, p, m, s) in enumerate(
        zip(picks, proba, kept, strategy.scores_[pos], strict=True), start=1
    ):
        pseudo = head.classes_[p.argmax()]
        labels = ",".join(str(c) for c in head.classes_[m])
        print(
            f"{k:>4}  {i:>5}  {y_true[i]:>4}  {pseudo:>6}  {p.max():>9.3f}  {labels:<12}  {s:>10.4g}  {cand_rank[int(pos[k - 1])]:>10}"
        )
    print()
    print("E(z): predicted change of the mean pool loss if z were labeled (negative = drop),")
    print("averaged over the labels the model finds likely (p > tau/C), by influence functions.")

    l2 = head.l2_
    base = _accuracy(X[labeled], y_true[labeled], X_test, y_test, l2)
    with_picks = np.r_[labeled, picks]
    acc_ralif = _accuracy(X[with_picks], y_true[with_picks], X_test, y_test, l2)
    pool = strategy.pool_index_
    acc_random = [
        _accuracy(X[idx], y_true[idx], X_test, y_test, l2)
        for idx in (np.r_[labeled, rng.choice(pool, budget, replace=False)] for _ in range(20))
    ]
    print()
    print(f"held-out accuracy with {len(labeled)} labels: {base:.3f}")
    print(f"  + these {budget} picks:            {acc_ralif:.3f}")
    print(
        f"  + {budget} random picks (mean of 20): {np.mean(acc_random):.3f} +- {np.std(acc_random):.3f}"
    )
    return {
        "picks": picks,
        "accuracy_before": base,
        "accuracy_ralif": acc_ralif,
        "accuracy_random": float(np.mean(acc_random)),
    }
