"""The active-learning loop: rounds of fit -> select -> oracle -> add labels."""

from __future__ import annotations

import inspect
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import f1_score

from ralif._validation import RalifInputError
from ralif.head import LinearHead
from ralif.strategies import make_strategy
from ralif.strategies.base import Strategy


@dataclass
class RoundResult:
    """What one round produced.

    ``round`` 0 is the initial labeled set; round ``k >= 1`` comes after the ``k``-th
    batch was picked, labeled and the model refitted.
    """

    round: int
    n_labeled: int
    accuracy: float
    macro_f1: float
    select_seconds: float
    fit_seconds: float
    picks: np.ndarray = field(repr=False)
    l2: float = float("nan")
    net_accuracy: float = float("nan")
    train_seconds: float = float("nan")
    extract_seconds: float = float("nan")


def initial_labeled_set(n_items: int, n_initial: int, seed: int) -> np.ndarray:
    """The initial labeled indices for a seed: the same for every strategy."""
    if not 1 <= n_initial < n_items:
        raise RalifInputError(f"initial labeled set must be in [1, {n_items - 1}], got {n_initial}")
    return np.sort(np.random.default_rng([seed, 0x1A11]).choice(n_items, n_initial, replace=False))


def round_seed(seed: int, round_: int, strategy: str) -> int:
    """Seed of a strategy's draws in one round: a resumed run repeats the same picks."""
    return int(
        np.random.SeedSequence([seed, round_, zlib.crc32(strategy.encode())]).generate_state(1)[0]
    )


def evaluate(head: LinearHead, X_test: np.ndarray, y_test: np.ndarray) -> tuple[float, float]:
    """Accuracy and macro-F1 (over the test set's classes) as fractions."""
    pred = head.predict(X_test)
    acc = float((pred == y_test).mean())
    f1 = float(f1_score(y_test, pred, labels=np.unique(y_test), average="macro", zero_division=0))
    return acc, f1


StrategyFactory = Callable[[int, float], Strategy]
"""``(random_state, l2) -> Strategy``: builds a round's strategy object."""


def strategy_for_round(
    name: str | StrategyFactory, seed: int, round_: int, l2: float, params: dict
) -> Strategy:
    """The strategy object of one round, seeded for it, using the model's chosen ridge."""
    if callable(name):
        return name(round_seed(seed, round_, getattr(name, "__name__", "custom")), l2)
    strategy = make_strategy(name, random_state=round_seed(seed, round_, name), **params)
    # The model was just cross-validated on the same labeled set: reuse its ridge.
    if "l2" in inspect.signature(type(strategy).__init__).parameters and "l2" not in params:
        strategy.l2 = l2
    return strategy


def run_rounds(
    X: np.ndarray,
    y_true: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    strategy: str | StrategyFactory,
    initial: np.ndarray,
    budget: int,
    n_rounds: int,
    *,
    seed: int = 0,
    l2: float | str = "auto",
    params: dict | None = None,
    done: Sequence[np.ndarray] = (),
    on_phase: Callable[[str], None] | None = None,
) -> Iterator[RoundResult]:
    """Simulate ``n_rounds`` rounds of labeling with the ground truth as the oracle.

    Parameters
    ----------
    X, y_true : ndarray
        The pool's features and true labels.
    X_test, y_test : ndarray
        The fixed test set.
    strategy : str or callable
        Strategy name (``ralif.STRATEGIES``), or a factory
        ``(random_state, l2) -> Strategy`` for strategies from elsewhere.
    initial : ndarray
        Indices labeled before round 1.
    budget : int
        Items labeled per round.
    n_rounds : int
        Rounds after the initial one.
    seed : int
        Seeds each round's strategy (see :func:`round_seed`).
    l2 : float or "auto"
        Ridge rule of the evaluated model; its chosen value is passed to the
        strategy's head too.
    params : dict, optional
        Extra strategy parameters.
    done : sequence of ndarray
        Picks of rounds already finished (for resuming); those rounds are replayed
        without selecting, and only later rounds are yielded.
    on_phase : callable, optional
        Told "fit" or "select" when a phase starts (for progress displays).

    Yields
    ------
    RoundResult
        One per round not in ``done`` (round 0 included when ``done`` is empty).
    """
    params = dict(params or {})
    labeled = np.zeros(len(y_true), dtype=bool)
    labeled[initial] = True
    for picks in done[1:]:
        labeled[picks] = True
    start = max(len(done), 0)
    y = np.where(labeled, y_true, -1)
    model_l2 = l2
    head = None
    for r in range(start, n_rounds + 1):
        select_s = 0.0
        picks = np.empty(0, dtype=np.intp)
        if r > 0:
            if head is None:  # resumed: refit the model of the previous round for its l2
                head = LinearHead(l2=l2).fit(X[labeled], y_true[labeled])
                model_l2 = head.l2_
            if budget > (~labeled).sum():
                raise RalifInputError(
                    f"round {r}: budget {budget} exceeds the {(~labeled).sum()} unlabeled items left"
                )
            if on_phase:
                on_phase("select")
            strat = strategy_for_round(strategy, seed, r, model_l2, params)
            t = time.perf_counter()
            picks = strat.select(X, y, budget)
            select_s = time.perf_counter() - t
            if labeled[picks].any() or len(np.unique(picks)) != len(picks):
                raise RuntimeError(f"{strategy} picked an item twice or an already labeled item")
            labeled[picks] = True
            y[picks] = y_true[picks]
        if on_phase:
            on_phase("fit")
        t = time.perf_counter()
        head = LinearHead(l2=l2).fit(X[labeled], y_true[labeled])
        fit_s = time.perf_counter() - t
        model_l2 = head.l2_
        acc, f1 = evaluate(head, X_test, y_test)
        yield RoundResult(r, int(labeled.sum()), acc, f1, select_s, fit_s, picks, model_l2)
