"""The interface every query strategy shares."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ralif._validation import check_budget, check_features, check_labels, check_random_state


class Strategy(ABC):
    """A query strategy: features and partial labels in, the indices to label next out.

    Subclasses implement :meth:`_select` on clean arrays; :meth:`select` validates
    the input once and does the bookkeeping.

    Attributes
    ----------
    pool_index_ : ndarray
        Indices into ``X`` of the unlabeled items seen by the last call.
    scores_ : ndarray
        The strategy's score for each of those items (NaN where it has none).
    picks_ : ndarray
        The indices returned by the last call.
    """

    name: str = ""
    score_meaning: str = ""

    def __init__(self, random_state: object = None) -> None:
        self.random_state = random_state

    def select(self, X: np.ndarray, y: np.ndarray, budget: int) -> np.ndarray:
        """Choose ``budget`` unlabeled items to label next.

        Parameters
        ----------
        X : array-like of shape (N, d)
            Features of every item, labeled or not.
        y : array-like of shape (N,)
            Integer labels, ``-1`` for unlabeled items.
        budget : int
            How many items to pick, ``1 <= budget <= (y == -1).sum()``.

        Returns
        -------
        indices : ndarray of shape (budget,)
            Distinct indices into ``X`` of unlabeled items, in the order picked.
        """
        X = check_features(X, "X")
        y = check_labels(y, X.shape[0])
        labeled = np.flatnonzero(y >= 0)
        pool = np.flatnonzero(y < 0)
        budget = check_budget(budget, len(pool))
        rng = check_random_state(self.random_state)
        positions, scores = self._select(X, labeled, y[labeled], pool, budget, rng)
        self.pool_index_ = pool
        self.scores_ = scores
        self.picks_ = pool[positions]
        return self.picks_

    @abstractmethod
    def _select(
        self,
        X: np.ndarray,
        labeled: np.ndarray,
        y_labeled: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (positions into ``pool``, one score per pool item); inputs are clean."""

    def get_params(self) -> dict[str, object]:
        """Constructor arguments, as given."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
