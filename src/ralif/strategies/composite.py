"""Strategies made of strategies: a random share of each batch, a switch by budget, an
online choice among strategies (Active Learning by Learning), and the candidate cap.

Each takes its parts as strategy objects (any :class:`~ralif.Strategy`, a user's own
too), calls their public :meth:`~ralif.Strategy.select` with the model it was given, and
is itself a scikit-learn estimator: ``get_params(deep=True)`` shows the parts' parameters
(``strategy__l2``), and ``clone`` copies them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.random import Generator
from sklearn.base import clone

from ralif._params import POSITIVE_INT, Anything, Constraint, RandomState, Real
from ralif._validation import RalifInputError
from ralif.pools.query import PoolQuery
from ralif.strategies.base import Strategy

__all__ = ["ALBL", "BudgetSwitch", "RandomShare", "SubSample"]


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _part(strategy: object, default: type[Strategy], what: str) -> Strategy:
    """A fresh copy of a part (its default when None), refused unless a Strategy without
    state of its own (a copy would forget what it learned)."""
    if strategy is None:
        return default()
    if not isinstance(strategy, Strategy):
        raise RalifInputError(f"{what} must be a ralif Strategy, got {type(strategy).__name__}")
    if strategy.stateful:
        raise RalifInputError(
            f"{what} must be a strategy without state of its own, got {type(strategy).__name__}"
        )
    return clone(strategy)


def _run(
    part: Strategy,
    X: np.ndarray,
    y: np.ndarray,
    budget: int,
    model: Any,
    rng: Generator,
    network: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A part's picks and scores (over the pool, in pool order), seeded from ``rng``."""
    part.set_params(random_state=_seed(rng))
    picks = part.select(X, y, budget, model=model if part.needs_model else None, network=network)
    return picks, part.scores_


def _default_ralif() -> type[Strategy]:
    from ralif.strategies.ralif import RALIF

    return RALIF


class _Composite(Strategy):
    """A strategy whose parts pick: the model it is given goes to the parts that need
    one; given none, each part fits its own (with its own ridge)."""

    needs_model = True

    def _fitted_model(self, model: Any, X_labeled: np.ndarray, y_labeled: np.ndarray) -> Any:
        return None if model is None else super()._fitted_model(model, X_labeled, y_labeled)

    def _too_few_classes(
        self, X: np.ndarray, y: np.ndarray, pool: np.ndarray, budget: int, rng: Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        # Each part has its own answer to a model it cannot fit (RALIF: k-means++).
        return self.query(None, X, y, pool, budget, rng)


class RandomShare(_Composite):
    """A strategy's picks with a share of every batch drawn uniformly at random.

    ``round(share * budget)`` of the batch are uniformly random pool items; the rest are
    ``strategy``'s picks. The random share keeps every region of the pool in view, so a
    strategy whose picks have gone wrong still labels a uniform sample each round.

    Parameters
    ----------
    strategy : Strategy or None, default=None
        The strategy that picks the rest (``None``: RALIF with its defaults).
    share : float, default=0.2
        Fraction of each batch drawn at random, in [0, 1].
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import Margin, RandomShare
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = np.full(300, -1); y[:10] = [0, 1] * 5
    >>> picks = RandomShare(Margin(l2=0.1), share=0.5, random_state=0).select(X, y, 10)
    >>> len(set(picks.tolist()))
    10
    """

    name = "random_share"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "strategy": Anything(),
        "share": Real(0.0, 1.0),
        "random_state": RandomState(),
    }

    def __init__(
        self, strategy: Strategy | None = None, share: float = 0.2, random_state: object = None
    ) -> None:
        self.strategy = strategy
        self.share = share
        self.random_state = random_state

    def query(
        self,
        model: Any,
        X: np.ndarray,
        y: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        part = _part(self.strategy, _default_ralif(), "strategy")
        n_random = int(np.floor(self.share * budget + 0.5))
        chosen = np.empty(0, dtype=np.intp)
        scores = np.full(len(pool), np.nan)
        if n_random < budget:
            chosen, scores = _run(part, X, y, budget - n_random, model, rng, self.network_)
        rest = np.setdiff1d(pool, chosen, assume_unique=True)
        drawn = rest[rng.choice(len(rest), n_random, replace=False)]
        self.random_picks_ = drawn
        return np.concatenate([chosen, drawn]).astype(np.intp), scores


class BudgetSwitch(_Composite):
    """One strategy while labels per class are few, another after (Hacohen et al., 2022).

    With few labels per class, picking typical items of uncovered clusters (TypiClust)
    beats uncertainty, which needs a model good enough to be uncertain in the right
    places; with more labels the order reverses. ``low`` picks while the labeled items
    number fewer than ``labels_per_class`` times the classes seen, ``high`` after.

    Parameters
    ----------
    low : Strategy or None, default=None
        The low-budget strategy (``None``: TypiClust).
    high : Strategy or None, default=None
        The strategy once labels suffice (``None``: RALIF with its defaults).
    labels_per_class : float, default=5.0
        The switch: ``high`` picks once ``n_labeled >= labels_per_class * n_classes``.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Attributes
    ----------
    used_ : {"low", "high"}
        Which part picked in the last call.

    References
    ----------
    Hacohen, Dekel and Weinshall, "Active learning on a budget: opposite strategies
    suit high and low budgets", ICML 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import BudgetSwitch, Margin, Random
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = np.full(300, -1); y[:10] = [0, 1] * 5
    >>> s = BudgetSwitch(Random(), Margin(l2=0.1), labels_per_class=4, random_state=0)
    >>> _ = s.select(X, y, 5); s.used_
    'high'
    >>> _ = s.set_params(labels_per_class=6).select(X, y, 5); s.used_
    'low'
    """

    name = "budget_switch"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "low": Anything(),
        "high": Anything(),
        "labels_per_class": Real(0.0),
        "random_state": RandomState(),
    }

    def __init__(
        self,
        low: Strategy | None = None,
        high: Strategy | None = None,
        labels_per_class: float = 5.0,
        random_state: object = None,
    ) -> None:
        self.low = low
        self.high = high
        self.labels_per_class = labels_per_class
        self.random_state = random_state

    def query(
        self,
        model: Any,
        X: np.ndarray,
        y: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        from ralif.strategies.baselines import TypiClust

        labeled = y[y >= 0]
        n_classes = max(len(np.unique(labeled)), 1)
        few = len(labeled) < self.labels_per_class * n_classes
        self.used_ = "low" if few else "high"
        part = (
            _part(self.low, TypiClust, "low") if few else _part(self.high, _default_ralif(), "high")
        )
        self._part_used = part
        return _run(part, X, y, budget, model, rng, self.network_)


class ALBL(_Composite):
    """Active Learning by Learning (Hsu & Lin, AAAI 2015): a bandit over strategies.

    Every call asks each arm for a full batch and labels the batch of one arm, drawn with
    the bandit's probabilities (EXP3 with a floor ``p_min`` per arm). The random arm,
    which must be one of the arms, makes every pool item possible. The reward of the
    last call's arm is the importance-weighted accuracy (IW-ACC) of the model it is given
    now on every item the bandit has picked, each weighted by the inverse of its
    probability of having been picked: an estimate of the pool accuracy that does not
    favour the arm that chose the items. EXP3 credits the drawn arm with the reward over
    its probability, so each arm's estimate is unbiased.

    The bandit learns across calls on the same object: run it round after round on one
    instance (``ralif bench`` does; it replays finished rounds to rebuild the state when
    resumed, which needs rounds that replay identically, so not a network trained with
    nondeterministic kernels). A fresh object, as one ``ralif select`` call makes, starts
    from equal probabilities.

    Parameters
    ----------
    arms : sequence of Strategy or None, default=None
        ``None``: RALIF, margin, TypiClust and random.
    p_min : float, default=0.05
        Least probability of each arm.
    learning_rate : float, default=0.1
        EXP3's step on the importance-weighted reward (IW-ACC lies in [0, 1]).
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Attributes
    ----------
    probabilities_ : ndarray
        The arms' probabilities in the last call.
    arm_ : int
        The arm whose batch the last call returned.
    log_weights_ : ndarray
        The bandit's state.

    References
    ----------
    Hsu and Lin, "Active learning by learning", AAAI 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import ALBL, Margin, Random
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = np.full(300, -1); y[:10] = [0, 1] * 5
    >>> albl = ALBL(arms=[Margin(l2=0.1), Random()], random_state=0)
    >>> len(albl.select(X, y, 10)), albl.probabilities_.round(2).tolist()
    (10, [0.5, 0.5])
    """

    name = "albl"
    stateful = True
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "arms": Anything(),
        "p_min": Real(0.0, 0.5),
        "learning_rate": Real(0.0),
        "random_state": RandomState(),
    }

    def __init__(
        self,
        arms: list[Strategy] | None = None,
        p_min: float = 0.05,
        learning_rate: float = 0.1,
        random_state: object = None,
    ) -> None:
        self.arms = arms
        self.p_min = p_min
        self.learning_rate = learning_rate
        self.random_state = random_state

    def _arms(self) -> list[Strategy]:
        from ralif.strategies.baselines import Margin, Random, TypiClust

        if self.arms is None:
            arms = [_default_ralif()(), Margin(), TypiClust(), Random()]
        else:
            arms = [_part(a, Random, "each arm") for a in self.arms]
        if not any(isinstance(a, Random) for a in arms) or len(arms) < 2:
            raise RalifInputError("ALBL needs at least two arms, one of them Random")
        if self.p_min * len(arms) > 1:
            raise RalifInputError(f"ALBL: p_min {self.p_min} times {len(arms)} arms exceeds 1")
        return arms

    def query(
        self,
        model: Any,
        X: np.ndarray,
        y: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        from ralif.strategies.baselines import Random

        arms = self._arms()
        k = len(arms)
        # With one labeled class no model can be fitted: arms that need one give way.
        fit_ok = len(np.unique(y[y >= 0])) >= 2
        live = np.array([fit_ok or not a.needs_model for a in arms])
        batches = [
            _run(a, X, y, budget, model, rng, self.network_)[0] if ok else None
            for a, ok in zip(arms, live, strict=True)
        ]
        if getattr(self, "log_weights_", np.empty(0)).shape != (k,):
            self.log_weights_ = np.zeros(k)
            self._queried, self._weights = np.empty(0, dtype=np.intp), np.empty(0)
        elif fit_ok and len(self._queried):
            fitted = [a.model_ for a in arms if a.needs_model]
            self._learn(model if model is not None else fitted[0] if fitted else None, X, y)
        w = np.exp(self.log_weights_ - self.log_weights_.max())
        p = (1 - k * self.p_min) * w / w.sum() + self.p_min
        p = np.where(live, p, 0.0) / np.where(live, p, 0.0).sum()
        arm = int(rng.choice(k, p=p))
        picks = batches[arm]
        assert picks is not None  # an arm that gave no batch was drawn with probability 0
        # Each pick's probability of being labeled this round, per slot: an arm's batch
        # holds it or not; random holds any pool item with probability budget / |pool|.
        q = np.zeros(budget)
        for a, batch in enumerate(batches):
            if batch is not None:
                held = (
                    1 / len(pool) if isinstance(arms[a], Random) else np.isin(picks, batch) / budget
                )
                q += p[a] * held
        self._queried = np.concatenate([self._queried, picks])
        self._weights = np.concatenate([self._weights, 1.0 / (len(pool) * q)])
        self.probabilities_, self.arm_ = p, arm
        return picks, np.full(len(pool), np.nan)

    def _learn(self, model: Any, X: np.ndarray, y: np.ndarray) -> None:
        """EXP3's update for the last call's arm, rewarded by IW-ACC of ``model``."""
        if model is None:  # no arm fits a model: nothing to score the picks with
            return
        known = y[self._queried] >= 0
        if not known.any():  # none of its picks labeled yet: nothing to learn from
            return
        items, weights = self._queried[known], self._weights[known]
        pred = np.asarray(model.classes_)[model.predict_proba(X[items]).argmax(axis=1)]
        reward = float(np.sum(weights * (pred == y[items])) / np.sum(weights))
        self.log_weights_ = self.log_weights_.copy()
        self.log_weights_[self.arm_] += self.learning_rate * reward / self.probabilities_[self.arm_]
        self.last_reward_ = reward


class SubSample(_Composite):
    """A strategy whose diversity step reads at most ``max_candidates`` pool items.

    The candidate cap of a query over a pool too large to hold its candidates'
    features, in memory as streamed (:func:`ralif.pools.streaming.streamed_select` applies the
    same cap): RALIF keeps its best ``max_candidates`` candidates by score; BADGE and
    core-set, whose diversity step runs over the whole pool, run it over a uniform
    sample of ``max_candidates`` pool items, drawn with the query's seed. Never fewer
    than the budget. Below the cap the picks are the strategy's own.

    Parameters
    ----------
    strategy : Strategy or None, default=None
        A strategy written as a plan over a pool (:meth:`ralif.Strategy.plan`;
        ``None``: RALIF with its defaults).
    max_candidates : int, default=20000
        The cap.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Attributes
    ----------
    strategy_ : Strategy
        The copy of ``strategy`` that picked (its ``scores_``, ``head_``...).

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import RALIF, SubSample
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 4)); y = np.full(400, -1); y[:20] = [0, 1] * 10
    >>> capped = SubSample(RALIF(l2=0.1), max_candidates=12, random_state=0)
    >>> picks = capped.select(X, y, 10)
    >>> len(capped.strategy_.candidates_)
    12
    """

    name = "subsample"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "strategy": Anything(),
        "max_candidates": POSITIVE_INT,
        "random_state": RandomState(),
    }

    def __init__(
        self,
        strategy: Strategy | None = None,
        max_candidates: int = 20_000,
        random_state: object = None,
    ) -> None:
        self.strategy = strategy
        self.max_candidates = max_candidates
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        part = _part(self.strategy, _default_ralif(), "strategy")
        if type(part).plan is Strategy.plan or type(part).query is not Strategy.query:
            raise RalifInputError(
                f"SubSample caps a strategy written as a plan over a pool; "
                f"{type(part).__name__} writes its own query"
            )
        cap = max(int(self.max_candidates), q.budget)
        q.max_candidates = cap if q.max_candidates is None else min(q.max_candidates, cap)
        part.set_params(random_state=self.random_state)
        q.strat = part  # the part runs as any strategy does: its model, its fallback, its plan
        picks, scores = q.run(model)
        part.pool_index_, part.scores_, part.picks_ = q.pool, scores, picks
        self.strategy_ = part
        return picks, scores
