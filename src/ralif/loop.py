"""The active-learning loop: rounds of fit -> select -> oracle -> add labels.

One loop serves every scenario. A scenario says what the features of a round are:
fixed (given features, or a frozen encoder's embeddings: :class:`FixedFeatures`) or
those of an encoder trained on the labeled items that round
(:class:`ralif.deep.EncoderPerRound`), which also hands strategies its network. Each
round the model is fitted once on the labeled items; the same fitted model is
evaluated and handed to the next round's strategy.

Fixed features may also be rows of a pool source too large for memory
(:class:`ralif.pools.streaming.StreamedFeatures`): the model is fitted on the labeled rows, read by index,
and each query is streamed (:func:`ralif.pools.streaming.streamed_select`).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.base import clone

from ralif._validation import RalifInputError
from ralif.head import LinearHead
from ralif.metrics import ALWAYS, check_metrics, scores
from ralif.pools.streaming import StreamedFeatures
from ralif.stopping import RoundSignals, round_signals, stop_set
from ralif.strategies import make_strategy, parse_spec, strategy_class
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
    signals: RoundSignals = field(default_factory=RoundSignals)
    """The stopping signals of the round (:mod:`ralif.stopping`)."""
    extra: dict[str, float] = field(default_factory=dict)
    """The further metrics asked for (:data:`ralif.metrics.METRICS`), by name."""


def labeled_features(X: np.ndarray | StreamedFeatures, labeled: np.ndarray) -> np.ndarray:
    """Features of the items the boolean mask ``labeled`` marks, in item order.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features) or StreamedFeatures
        The items' features, held in memory or rows of a pool source (read by index).
    labeled : ndarray of bool, shape (n_items,)
        Which items to take.

    Returns
    -------
    ndarray, shape (labeled.sum(), n_features)
    """
    return X.take(labeled) if isinstance(X, StreamedFeatures) else X[labeled]


@dataclass
class RoundFeatures:
    """What a scenario gives for one round: features of every item and of the test set,
    and, where a network was trained, that network (see
    :class:`ralif.strategies.network.Network`) with its accuracy and timings.

    ``X`` is an array, or :class:`StreamedFeatures` when the items' features are rows of
    a pool source."""

    X: np.ndarray | StreamedFeatures
    X_test: np.ndarray
    network: object = None
    net_accuracy: float = float("nan")
    train_seconds: float = float("nan")
    extract_seconds: float = float("nan")


class Scenario(Protocol):
    """Where a round's features come from."""

    provides_network: bool

    def features(self, round_: int, labeled: np.ndarray) -> RoundFeatures:
        """The features once the items ``labeled`` (a boolean mask) are labeled."""
        ...


@dataclass
class FixedFeatures:
    """Features that never change: given ones (an array, or rows of a pool source), or
    embeddings of a frozen encoder."""

    X: np.ndarray | StreamedFeatures
    X_test: np.ndarray
    provides_network: bool = False

    def features(self, round_: int, labeled: np.ndarray) -> RoundFeatures:
        return RoundFeatures(self.X, self.X_test)


def initial_labeled_set(
    n_items: int, n_initial: int, seed: int, y: np.ndarray | None = None
) -> np.ndarray:
    """The initial labeled indices for a seed: the same for every strategy.

    With the labels ``y``, a draw holding fewer than two classes (a model needs two) is
    drawn again, from the next seed of the same sequence, until it holds two; a draw
    that already does is the same as without ``y``.
    """
    if not 1 <= n_initial < n_items:
        raise RalifInputError(f"initial labeled set must be in [1, {n_items - 1}], got {n_initial}")
    if y is not None and len(np.unique(y)) >= 2 and n_initial < 2:
        raise RalifInputError("the initial labeled set needs at least 2 items to hold two classes")
    for attempt in range(1000):
        key = [seed, 0x1A11] if attempt == 0 else [seed, 0x1A11, attempt]
        idx = np.sort(np.random.default_rng(key).choice(n_items, n_initial, replace=False))
        if y is None or len(np.unique(y)) < 2 or len(np.unique(y[idx])) >= 2:
            return idx
    raise RalifInputError(
        f"no initial labeled set of {n_initial} items with two classes was drawn in 1000 tries"
    )


def round_seed(seed: int, round_: int, strategy: str) -> int:
    """Seed of a strategy's draws in one round: a resumed run repeats the same picks."""
    return int(
        np.random.SeedSequence([seed, round_, zlib.crc32(strategy.encode())]).generate_state(1)[0]
    )


def evaluate(
    model: Any, X_test: np.ndarray, y_test: np.ndarray, metrics: Sequence[str] = ()
) -> dict[str, float]:
    """Accuracy, macro-F1 and the further ``metrics`` of a fitted model on the test set,
    as fractions (:func:`ralif.metrics.scores`)."""
    pred = np.asarray(model.classes_)[model.predict_proba(X_test).argmax(axis=1)]
    return scores(y_test, pred, (*ALWAYS, *metrics))


def strategy_label(strategy: str | Strategy) -> str:
    """The name a strategy's draws are seeded by (and a results store knows it by): a
    spec's ``NAME=`` part, or the spec itself (:func:`ralif.strategies.parse_spec`)."""
    if isinstance(strategy, str):
        return parse_spec(strategy)[0]
    return strategy.name or type(strategy).__qualname__


def _round_strategies(
    strategy: str | Strategy, params: dict, seed: int, label: str, stateful: bool
) -> Callable[[int], Strategy]:
    """The strategy that picks in round ``r``: a fresh one seeded for the round, or, for a
    strategy that learns across rounds, one object for the whole run, reseeded each round."""
    kept: list[Strategy] = []

    def for_round(r: int) -> Strategy:
        seed_r = round_seed(seed, r, label)
        if not stateful:
            return make_strategy(strategy, random_state=seed_r, **params)
        if not kept:
            kept.append(make_strategy(strategy, **params))
        return kept[0].set_params(random_state=seed_r)

    return for_round


def _check_replay(label: str, r: int, picks: np.ndarray, stored: np.ndarray) -> None:
    """Refuse a replayed round whose picks differ from the stored ones."""
    if not np.array_equal(np.sort(picks), np.sort(stored)):
        raise RalifInputError(
            f"{label}: replaying round {r} to resume gave other picks than the stored ones; "
            "the results folder was written by other code or data"
        )


def run_rounds(
    X: np.ndarray | StreamedFeatures,
    y_true: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    strategy: str | Strategy,
    initial: np.ndarray,
    budget: int,
    n_rounds: int,
    *,
    seed: int = 0,
    l2: float | str = "auto",
    params: dict | None = None,
    done: Sequence[np.ndarray] = (),
    on_phase: Callable[[str], None] | None = None,
    model: object = None,
    scenario: Scenario | None = None,
    metrics: Sequence[str] = (),
) -> Iterator[RoundResult]:
    """Simulate ``n_rounds`` rounds of labeling with the ground truth as the oracle.

    Parameters
    ----------
    X : ndarray or StreamedFeatures
        The pool's features (or what ``scenario`` reads); :class:`StreamedFeatures` for
        rows of a pool source, whose queries are streamed.
    y_true : ndarray
        The pool's true labels.
    X_test, y_test : ndarray
        The fixed test set.
    strategy : str or Strategy
        A name of ``ralif.STRATEGIES``, ``"module:Class"``, or a strategy object
        (cloned and seeded every round).
    initial : ndarray
        Indices labeled before round 1.
    budget : int
        Items labeled per round.
    n_rounds : int
        Rounds after the initial one.
    seed : int
        Seeds each round's strategy (see :func:`round_seed`).
    l2 : float or "auto"
        Ridge rule of the default model, ``LinearHead(l2=l2)``.
    params : dict, optional
        Extra strategy parameters. With ``l2`` among them the strategy fits its own
        model with that ridge instead of receiving the evaluated one.
    done : sequence of ndarray
        Picks of rounds already finished (for resuming); those rounds are replayed
        without selecting, and only later rounds are yielded.
    on_phase : callable, optional
        Told "fit" or "select" when a phase starts (for progress displays).
    model : classifier, optional
        The model evaluated each round and handed to the strategy, unfitted (cloned and
        fitted on the labeled items once per round). Default ``LinearHead(l2=l2)``.
    scenario : Scenario, optional
        Where each round's features come from; default :class:`FixedFeatures` over
        ``X`` and ``X_test``.
    metrics : sequence of str
        Metrics of :data:`ralif.metrics.METRICS` to record besides accuracy and
        macro-F1 (:attr:`RoundResult.extra`).

    Yields
    ------
    RoundResult
        One per round not in ``done`` (round 0 included when ``done`` is empty).
    """
    scenario = scenario if scenario is not None else FixedFeatures(X, X_test)
    cls, label = _checked_strategy(strategy, scenario)
    run = _Run(scenario, y_true, model if model is not None else LinearHead(l2=l2), initial, seed)
    # A strategy given its own ridge fits its own model; any other gets the evaluated one.
    run.shared = "l2" not in (params or {})
    strategy_for = _round_strategies(strategy, dict(params or {}), seed, label, cls.stateful)
    metrics = check_metrics(metrics)
    yield from run.rounds(strategy_for, label, cls.stateful, budget, n_rounds, done,
                          y_test, metrics, on_phase)  # fmt: skip


def _checked_strategy(strategy: str | Strategy, scenario: Scenario) -> tuple[type[Strategy], str]:
    """The strategy's class and label, refused where it needs a network the scenario lacks."""
    cls = type(strategy) if isinstance(strategy, Strategy) else strategy_class(strategy)[0]
    label = strategy_label(strategy)
    if cls.needs_network and not scenario.provides_network:
        raise RalifInputError(
            f"{label} needs a network: use a scenario that trains one (scratch-cnn, scratch-resnet18)"
        )
    return cls, label


class _Run:
    """One run's state between rounds: the labels, the fitted model and the stop set.

    The stop set (pool items drawn once per seed, :func:`ralif.stopping.stop_set`) is
    predicted by every round's model for the stopping signals.
    """

    def __init__(
        self,
        scenario: Scenario,
        y_true: np.ndarray,
        template: object,
        initial: np.ndarray,
        seed: int,
    ) -> None:
        self.scenario, self.y_true, self.template = scenario, y_true, template
        self.labeled = np.zeros(len(y_true), dtype=bool)
        self.labeled[initial] = True
        self.y = np.where(self.labeled, y_true, -1)
        self.stop = stop_set(np.setdiff1d(np.arange(len(y_true)), initial), seed)
        self.feats: RoundFeatures  # set by fit, before anything reads it
        self.fitted: Any = None
        self.X_fit: np.ndarray | None = None
        self.predicted: np.ndarray | None = None
        self.shared = True  # hand the fitted model to the strategy

    def rounds(
        self, strategy_for: Callable[[int], Strategy], label: str, stateful: bool,
        budget: int, n_rounds: int, done: Sequence[np.ndarray], y_test: np.ndarray,
        metrics: Sequence[str], on_phase: Callable[[str], None] | None,
    ) -> Iterator[RoundResult]:  # fmt: skip
        """The rounds of :func:`run_rounds` not in ``done``."""
        # A strategy that learns across rounds is one object for the whole run; resumed,
        # it selects its finished rounds again (checked against the stored picks) to
        # rebuild what it learned, and only later rounds are yielded.
        replay = list(done) if stateful else []
        start = 0 if stateful else len(done)
        if start > 0:  # resumed: the labels and the model of the last finished round
            for picks in done[1:]:
                self.add(picks)
            self.fit(start - 1)
            self.signals(None)
        for r in range(start, n_rounds + 1):
            select_s, picks, strat = 0.0, np.empty(0, dtype=np.intp), None
            if r > 0:
                if on_phase:
                    on_phase("select")
                strat = strategy_for(r)
                picks, select_s = self.select(r, strat, budget)
                if r < len(replay):
                    _check_replay(label, r, picks, replay[r])
                self.add(picks)
            if on_phase:
                on_phase("fit")
            fit_s = self.fit(r)
            signals = self.signals((strat, picks) if r > 0 else None)
            if r >= len(replay):  # a replayed round (rebuilding a stateful strategy) is stored
                measured = evaluate(self.fitted, self.feats.X_test, y_test, metrics)
                yield self.result(r, picks, select_s, fit_s, signals, measured)

    def add(self, picks: np.ndarray) -> None:
        """Label the items ``picks`` with their true labels."""
        self.labeled[picks] = True
        self.y[picks] = self.y_true[picks]

    def select(self, r: int, strat: Strategy, budget: int) -> tuple[np.ndarray, float]:
        """Round ``r``'s picks by ``strat`` (handed the fitted model where shared), and
        the seconds the query took."""
        left = int((~self.labeled).sum())
        if budget > left:
            raise RalifInputError(
                f"round {r}: budget {budget} exceeds the {left} unlabeled items left"
            )
        t = time.perf_counter()
        given = self.fitted if self.shared else None
        X = self.feats.X
        if isinstance(X, StreamedFeatures):
            # The rows the model was fitted on are those labeled now: not read again.
            picks = X.select(strat, self.y, budget, model=given, X_labeled=self.X_fit)
        else:
            picks = strat.select(X, self.y, budget, model=given, network=self.feats.network)
        return picks, time.perf_counter() - t

    def fit(self, r: int) -> float:
        """Fit round ``r``'s model on the labeled items; the seconds it took, with the
        scenario's training and extraction."""
        self.feats = self.scenario.features(r, self.labeled)
        t = time.perf_counter()
        self.X_fit = labeled_features(self.feats.X, self.labeled)
        self.fitted = clone(self.template).fit(self.X_fit, self.y_true[self.labeled])
        seconds = time.perf_counter() - t
        extra = (self.feats.train_seconds, self.feats.extract_seconds)
        return seconds + sum(v for v in extra if not math.isnan(v))

    def result(
        self, r: int, picks: np.ndarray, select_s: float, fit_s: float,
        signals: RoundSignals, measured: dict[str, float],
    ) -> RoundResult:  # fmt: skip
        """Round ``r``'s :class:`RoundResult`, ``measured`` by :func:`evaluate`."""
        extra = {k: v for k, v in measured.items() if k not in ALWAYS}
        feats = self.feats
        return RoundResult(
            r, int(self.labeled.sum()), measured["accuracy"], measured["macro_f1"], select_s,
            fit_s, picks, float(getattr(self.fitted, "l2_", float("nan"))),
            net_accuracy=feats.net_accuracy, train_seconds=feats.train_seconds,
            extract_seconds=feats.extract_seconds, signals=signals, extra=extra,
        )  # fmt: skip

    def signals(self, query: tuple | None) -> RoundSignals:
        """The stopping signals of the model just fitted (``query``: the round's
        strategy and picks, None for round 0)."""
        signals, self.predicted = _signals(
            self.fitted, self.feats.X, self.stop, self.predicted, query
        )
        return signals


def _signals(
    model: Any, X: object, stop: np.ndarray, previous: np.ndarray | None, query: tuple | None
) -> tuple[RoundSignals, np.ndarray]:
    """The round's stopping signals: ``model`` on the stop set, and for a strategy whose
    scores predict the change of the target loss, their mean over its picks."""
    if isinstance(X, StreamedFeatures):  # fixed rows of a pool source: read once
        cached = getattr(X, "_stop_rows", None)
        if cached is None or not np.array_equal(cached[0], stop):
            cached = (stop, X.take(stop))
            vars(X)["_stop_rows"] = cached
        rows = cached[1]
    else:
        rows = np.asarray(X)[stop]
    change = float("nan")
    if query is not None:
        strat, picks = query
        scores, pool = getattr(strat, "scores_", None), getattr(strat, "pool_index_", None)
        if strat.score_is_loss_change and scores is not None and pool is not None:
            change = float(np.mean(scores[np.searchsorted(pool, picks)]))
    return round_signals(model.predict_proba(rows), model.classes_, previous, change)
