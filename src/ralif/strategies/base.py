"""The interface every query strategy shares, and the one a user's strategy implements.

A strategy is a scikit-learn estimator (``get_params``, ``set_params``, ``clone``)
whose hyper-parameters are checked, from its ``_parameter_constraints`` table, before
any work. :meth:`Strategy.select` validates the inputs, fits the model when the strategy
needs one and none fitted was given, and calls :meth:`Strategy.query`, the one method
a new strategy writes::

    import numpy as np
    from ralif import Strategy
    from ralif.scores import margin

    class SmallestMargin(Strategy):
        needs_model = True  # query receives a fitted classifier
        score_direction = "lower"  # a smaller margin is wanted first

        def query(self, model, X, y, pool, budget, rng):
            scores = margin(model.predict_proba(X[pool]))
            return pool[np.argsort(scores, kind="stable")[:budget]], scores

``ralif.select(X, y, 10, strategy=SmallestMargin())`` then uses it, and
``ralif bench --strategies my_module:SmallestMargin`` benchmarks it.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
from numpy.random import Generator
from sklearn.base import BaseEstimator, clone

from ralif._params import Constraint, RandomState, validate_params
from ralif._validation import (
    RalifInputError,
    check_budget,
    check_exclude,
    check_features,
    check_labels,
    check_random_state,
)
from ralif.classifier import Classifier, check_fitted_on, check_influence_model, is_fitted
from ralif.pools.query import PoolQuery


class RandomFallbackWarning(UserWarning):
    """A model-based strategy had fewer than two labeled classes and picked at random.


    Examples
    --------
    >>> import warnings, numpy as np
    >>> from ralif.strategies import Margin, RandomFallbackWarning
    >>> X = np.random.default_rng(0).normal(size=(20, 2)); y = np.full(20, -1); y[:3] = 0
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     picks = Margin(l2=0.1, random_state=0).select(X, y, 2)
    >>> caught[0].category is RandomFallbackWarning
    True
    """


class Strategy(BaseEstimator):
    """A query strategy: features and partial labels in, the indices to label next out.

    Write a strategy by subclassing this class and implementing :meth:`query`; declare
    what it needs with the class attributes below. Constructor arguments are stored
    verbatim under their own names (the scikit-learn convention), so ``clone``,
    ``get_params`` and ``set_params`` work without more code.

    The class attributes:

    needs_model : bool
        ``query`` receives a classifier fitted on the labeled items (see
        :mod:`ralif.classifier`); without it ``query`` gets ``model=None``.
    needs_influence : bool
        The model must give exact influence: a :class:`~ralif.LinearHead` or a fitted
        scikit-learn ``LogisticRegression`` (:func:`ralif.classifier.influence_head`).
    needs_network : bool
        The strategy samples from the network that produced the features, which only the
        scenarios that train one provide (``network=`` of :meth:`select`).
    stateful : bool
        The strategy learns from one call to the next on the same object (a bandit):
        a benchmark keeps one object for all rounds of a run instead of a fresh one per
        round.
    score_direction : {"higher", "lower"} or None
        Which end of ``scores_`` the strategy wants first; None when the score does not
        rank the picks (random, diversity-only strategies).
    score_is_loss_change : bool
        Each score predicts the change of the mean target loss from labeling the item
        (RALIF): their sum over a batch is the ``expected_change`` of
        :mod:`ralif.stopping`.
    _parameter_constraints : dict
        One :class:`~ralif._params.Constraint` per constructor argument, checked at the
        start of every :meth:`select`.

    Parameters
    ----------
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Attributes
    ----------
    pool_index_ : ndarray
        Indices into ``X`` of the unlabeled items seen by the last call.
    scores_ : ndarray
        The strategy's score for each of those items (NaN where it has none):
        ``scores_[i]`` belongs to ``X[pool_index_[i]]``.
    picks_ : ndarray
        The indices into ``X`` returned by the last call.
    model_ : object or None
        The fitted model the last call's query received.
    network_ : object or None
        The network handed to the last call (``needs_network`` strategies).

    Examples
    --------
    >>> import numpy as np
    >>> from ralif import Strategy
    >>> class FirstItems(Strategy):  # the first unlabeled items, in index order
    ...     def query(self, model, X, y, pool, budget, rng):
    ...         return pool[:budget], np.arange(len(pool), dtype=float)
    >>> y = np.array([0, -1, 1, -1, -1])
    >>> FirstItems().select(np.zeros((5, 2)), y, 2).tolist()
    [1, 3]
    """

    name: ClassVar[str] = ""
    score_meaning: ClassVar[str] = ""
    score_direction: ClassVar[str | None] = None
    score_is_loss_change: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    needs_influence: ClassVar[bool] = False
    needs_network: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    fallback_reads_features: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {"random_state": RandomState()}
    pool_index_: np.ndarray
    scores_: np.ndarray
    picks_: np.ndarray
    model_: Any
    network_: Any

    def __init__(self, random_state: object = None) -> None:
        self.random_state = random_state

    def select(
        self,
        X: np.ndarray,
        y: np.ndarray,
        budget: int,
        *,
        model: object = None,
        network: object = None,
        exclude: object = None,
    ) -> np.ndarray:
        """Choose ``budget`` unlabeled items to label next.

        Parameters
        ----------
        X : array-like of shape (N, d)
            Features of every item, labeled or not.
        y : array-like of shape (N,)
            Integer labels, ``-1`` for unlabeled items.
        budget : int
            How many items to pick, ``1 <= budget <= (y == -1).sum()``.
        model : classifier, optional
            For strategies that need a model: a classifier already fitted on the
            labeled items of ``(X, y)`` (used as it is: no second fit), or an unfitted
            one (cloned and fitted here). Default: the strategy's own
            (:meth:`default_model`), fitted here.
        network : object, optional
            The trained network behind ``X`` (see :mod:`ralif.strategies.network`).
        exclude : array-like of bool or int, optional
            Items out of play (held out for evaluation, not to be shown): a mask of
            ``N`` entries or their indices. They are never picked, and the strategy sees
            neither their features nor their labels (it runs on the other rows).

        Returns
        -------
        indices : ndarray of shape (budget,)
            Distinct indices into ``X`` of unlabeled items, in the order picked.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(60, 2)); y = np.full(60, -1)
        >>> y[:4] = [0, 1, 0, 1]
        >>> picks = Margin(l2=0.1).select(X, y, 3, exclude=[4, 5])
        >>> len(picks), bool(set(picks.tolist()) & {0, 1, 2, 3, 4, 5})
        (3, False)
        """
        validate_params(self)
        X = check_features(X, "X")
        y = check_labels(y, X.shape[0])
        if exclude is not None:
            rows = check_exclude(exclude, X.shape[0])
            picks = rows[self.select(X[rows], y[rows], budget, model=model, network=network)]
            self.pool_index_ = rows[self.pool_index_]
            self.picks_ = picks
            return picks
        pool = np.flatnonzero(y < 0)
        budget = check_budget(budget, len(pool))
        rng = check_random_state(getattr(self, "random_state", None))
        self.network_ = network
        self.model_ = None
        labeled = np.flatnonzero(y >= 0)
        if self.needs_model and len(np.unique(y[labeled])) < 2:
            picks, scores = self._too_few_classes(X, y, pool, budget, rng)
        else:
            if self.needs_model:
                self.model_ = self._fitted_model(model, X[labeled], y[labeled])
            picks, scores = self.query(self.model_, X, y, pool, budget, rng)
        picks, scores = _checked_result(self, picks, scores, pool, budget)
        self.pool_index_ = pool
        self.scores_ = scores
        self.picks_ = picks
        return picks

    def query(
        self,
        model: Any,
        X: np.ndarray,
        y: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pick ``budget`` items of the pool; the inputs are already checked.

        Parameters
        ----------
        model : classifier or None
            Fitted on the labeled items when ``needs_model`` (it has ``classes_`` and
            ``predict_proba``); else None.
        X : ndarray of shape (N, d)
            Features of every item (float32 or float64, finite).
        y : ndarray of shape (N,)
            Labels, ``-1`` for unlabeled items.
        pool : ndarray of shape (M,)
            Indices into ``X`` of the unlabeled items, ascending.
        budget : int
            ``1 <= budget <= M``.
        rng : numpy.random.Generator
            The only source of randomness, seeded from ``random_state``.

        Returns
        -------
        picks : ndarray of shape (budget,)
            Distinct indices into ``X``, all from ``pool``, in the order picked.
        scores : ndarray of shape (M,)
            ``scores[i]`` scores ``X[pool[i]]`` (NaN where the strategy has none); which
            end is wanted first is ``score_direction``.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Random
        >>> y = np.array([0, -1, 1, -1, -1]); pool = np.flatnonzero(y < 0)
        >>> picks, scores = Random().query(None, np.zeros((5, 2)), y, pool, 2,
        ...                                np.random.default_rng(0))
        >>> set(picks.tolist()) <= {1, 3, 4}, scores.shape
        (True, (3,))
        """
        if type(self).plan is Strategy.plan:
            raise NotImplementedError(f"{type(self).__name__} must implement query() or plan()")
        return self.plan(PoolQuery.in_memory(self, X, y, pool, budget, rng), model)

    def plan(self, query: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pick ``query.budget`` items of the pool, written once over a pool view.

        A strategy that writes ``plan`` instead of :meth:`query` runs the same code on
        an array (:meth:`query` calls it over :meth:`ralif.pools.query.PoolQuery.in_memory`)
        and on a pool read in blocks (:func:`ralif.pools.streaming.streamed_select`): it maps
        block functions over the pool (``query.map``) and reads the few rows it needs
        by position (``query.take``).

        Parameters
        ----------
        query : ralif.pools.query.PoolQuery
            The pool, the labeled rows, the budget and the random generator.
        model : classifier or None
            As for :meth:`query`.

        Returns
        -------
        picks, scores
            As for :meth:`query`.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.pools.query import PoolQuery
        >>> from ralif.strategies import Random
        >>> y = np.array([0, -1, 1, -1, -1]); pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Random(), np.zeros((5, 2)), y, pool, 2,
        ...                         np.random.default_rng(0))
        >>> len(Random().plan(q, None)[0])
        2
        """
        raise NotImplementedError(f"{type(self).__name__} has no plan over a pool")

    def default_model(self) -> object:
        """Return the unfitted classifier fitted when :meth:`select` is given none.

        Returns
        -------
        object
            The linear head, with the strategy's ``l2`` when it has one.

        Examples
        --------
        >>> from ralif.strategies import Margin
        >>> Margin(l2=0.5).default_model()
        LinearHead(l2=0.5)
        """
        from ralif.head import LinearHead

        l2 = getattr(self, "l2", "auto")
        return LinearHead(l2=l2)

    def _fitted_model(self, model: Any, X_labeled: np.ndarray, y_labeled: np.ndarray) -> Any:
        if model is None:
            model = self.default_model()
        if self.needs_influence:
            check_influence_model(model)
        if is_fitted(model):
            check_fitted_on(model, X_labeled, y_labeled)
            return model
        if not isinstance(model, Classifier):
            raise RalifInputError(
                f"model must have fit and predict_proba; got {type(model).__name__}"
            )
        return clone(model).fit(X_labeled, y_labeled)

    def _too_few_classes(
        self, X: np.ndarray, y: np.ndarray, pool: np.ndarray, budget: int, rng: Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """What a model-based strategy does when no model can be fitted: random picks."""
        classes = np.unique(y[y >= 0]).tolist()
        warnings.warn(
            f"{self.name or type(self).__name__} needs labels of at least two classes to fit "
            f"its model (got {classes}); picking at random",
            RandomFallbackWarning,
            stacklevel=3,
        )
        return random_picks(pool, budget, rng)


def random_picks(
    pool: np.ndarray, budget: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``budget`` uniformly random pool items, and no scores."""
    return pool[rng.choice(len(pool), budget, replace=False)], np.full(len(pool), np.nan)


def _checked_result(
    strategy: Strategy, picks: object, scores: object, pool: np.ndarray, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """A strategy's answer, refused with a message naming it when it breaks the contract."""
    who = type(strategy).__name__
    picks = np.asarray(picks)
    scores = np.asarray(scores, dtype=np.float64)
    if picks.shape != (budget,) or (budget and picks.dtype.kind not in "iu"):
        raise RalifInputError(
            f"{who}.query returned picks of shape {picks.shape} and dtype {picks.dtype}; "
            f"expected {budget} integer indices into X"
        )
    if scores.shape != pool.shape:
        raise RalifInputError(
            f"{who}.query returned {scores.shape} scores; expected one per pool item {pool.shape}"
        )
    picks = picks.astype(np.intp, copy=False)
    in_pool = np.isin(picks, pool)
    if not in_pool.all() or len(np.unique(picks)) != budget:
        raise RalifInputError(
            f"{who}.query must return distinct indices of unlabeled items; got "
            f"{picks[~in_pool][:5].tolist() or 'repeated indices'}"
        )
    return picks, scores
