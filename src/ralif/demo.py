"""A demonstration query on scikit-learn's digits: computed, then printed as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass
class Demo:
    """One demonstration query and what it led to.

    Attributes
    ----------
    strategy : RALIF
        After its query (``head_``, ``target_loss_``, ``solve_``, ``candidates_``,
        ``scores_``).
    picks : ndarray
        Indices of the picked items (into the pool ``X``).
    y_true : ndarray
        True labels of the pool.
    n_labeled, n_test, budget : int
    accuracy_before, accuracy_ralif : float
        Held-out accuracy of the head on the labeled items, and with the picks added.
    accuracy_random : ndarray
        The same with ``budget`` random picks instead, for 20 draws.
    proba : ndarray
        The head's probabilities of the picked items.
    """

    strategy: RALIF
    picks: np.ndarray
    y_true: np.ndarray
    n_labeled: int
    n_test: int
    budget: int
    accuracy_before: float
    accuracy_ralif: float
    accuracy_random: np.ndarray
    proba: np.ndarray


def compute_demo(n_labeled: int = 30, budget: int = 10, seed: int = 0, **params: Any) -> Demo:
    """Label a few digits, ask RALIF for the next ``budget``, and measure the gain.

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
    Demo
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
    head = strategy.head_
    assert head is not None  # labels of two classes or more: the head was fitted
    l2 = head.l2_
    base = _accuracy(X[labeled], y_true[labeled], X_test, y_test, l2)
    with_picks = np.r_[labeled, picks]
    acc_ralif = _accuracy(X[with_picks], y_true[with_picks], X_test, y_test, l2)
    pool = strategy.pool_index_
    acc_random = np.array(
        [
            _accuracy(X[idx], y_true[idx], X_test, y_test, l2)
            for idx in (np.r_[labeled, rng.choice(pool, budget, replace=False)] for _ in range(20))
        ]
    )
    proba = head.predict_proba(X[picks])
    return Demo(
        strategy, picks, y_true, len(labeled), len(test), budget, base, acc_ralif, acc_random, proba
    )


def format_demo(demo: Demo) -> str:
    """The demonstration as the text ``ralif demo`` prints."""
    strategy, picks, y_true, budget = demo.strategy, demo.picks, demo.y_true, demo.budget
    head, solve = strategy.head_, strategy.solve_
    assert head is not None  # as run_demo fitted it
    pos = np.searchsorted(strategy.pool_index_, picks)
    cand_rank = {int(c): r for r, c in enumerate(strategy.candidates_, start=1)}
    proba = demo.proba
    kept = kept_classes(proba, strategy.tau)
    lines = [
        "RALIF demonstration on scikit-learn's digits (8x8 images, 10 classes, 64 features)",
        f"  labeled {demo.n_labeled}, pool {len(strategy.pool_index_)}, held-out test "
        f"{demo.n_test}, budget {budget}",
    ]
    cv = f" (chosen by {head.cv}-fold cross-validation)" if head.cv_log_loss_ else ""
    lines.append(
        f"  head: l2 = {head.l2_:g}{cv}, gradient norm at the optimum {head.grad_norm_:.1e}"
    )
    lines.append(
        f"  target loss L_T (pool, pseudo labels) = {strategy.target_loss_:.4f}; "
        f"H^-1 g by {solve.solver} (residual {solve.residual:.1e})"
    )
    lines.append(
        f"  candidates: the {len(strategy.candidates_)} pool items with the largest predicted loss drop"
        + (
            " among the most uncertain (smallest margin)"
            if strategy.candidates == "influence+margin"
            else ""
        )
        + "; the batch is drawn from them by k-means++"
    )
    lines.append("")
    head_row = f"{'pick':>4}  {'item':>5}  {'true':>4}  {'pseudo':>6}  {'p(pseudo)':>9}  {'kept labels':<12}  {'E(z)':>10}  {'cand. rank':>10}"
    lines += [head_row, "-" * len(head_row)]
    for k, (i, p, m, s) in enumerate(
        zip(picks, proba, kept, strategy.scores_[pos], strict=True), start=1
    ):
        pseudo = head.classes_[p.argmax()]
        labels = ",".join(str(c) for c in head.classes_[m])
        lines.append(
            f"{k:>4}  {i:>5}  {y_true[i]:>4}  {pseudo:>6}  {p.max():>9.3f}  {labels:<12}  {s:>10.4g}  {cand_rank[int(pos[k - 1])]:>10}"
        )
    lines += [
        "",
        "E(z): predicted change of the mean pool loss if z were labeled (negative = drop),",
        "averaged over the labels the model finds likely (p > tau/C), by influence functions.",
        "",
        f"held-out accuracy with {demo.n_labeled} labels: {demo.accuracy_before:.3f}",
        f"  + these {budget} picks:            {demo.accuracy_ralif:.3f}",
        f"  + {budget} random picks (mean of 20): {demo.accuracy_random.mean():.3f} +- "
        f"{demo.accuracy_random.std():.3f}",
    ]
    return "\n".join(lines)


def run_demo(n_labeled: int = 30, budget: int = 10, seed: int = 0, **params: Any) -> dict:
    """Compute the demonstration (:func:`compute_demo`) and print it (:func:`format_demo`).

    Returns
    -------
    summary : dict
        The picks and the held-out accuracies printed at the end.
    """
    demo = compute_demo(n_labeled, budget, seed, **params)
    print(format_demo(demo))
    return {
        "picks": demo.picks,
        "accuracy_before": demo.accuracy_before,
        "accuracy_ralif": demo.accuracy_ralif,
        "accuracy_random": float(demo.accuracy_random.mean()),
    }
