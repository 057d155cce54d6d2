"""Strategies that need the network itself: MC-dropout BALD and entropy.

They get their probability samples from a ``sampler``: a callable from the indices of
the items to score to an array (T, n, C) of probabilities under T dropout masks (see
:func:`ralif.models.mc_dropout_proba`). Without one they use the ``network`` handed to
:meth:`~ralif.strategies.base.Strategy.select`: any object with ``mc_proba(indices, seed)``
giving those samples (and ``proba(indices)``, the mean-field probabilities, which BADGE
uses), such as the per-round network of the deep scenarios of ``ralif bench``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.random import Generator

from ralif._params import CallableOrNone, Constraint, RandomState
from ralif._validation import RalifInputError
from ralif.scores import entropy, mutual_information
from ralif.selectors import top_k
from ralif.strategies.base import Strategy

Sampler = Callable[[np.ndarray], np.ndarray]


class Network(Protocol):
    """A trained network seen through the items it scores (indices into ``X``)."""

    def proba(self, indices: np.ndarray) -> np.ndarray:
        """``(n, C)`` probabilities of the items ``indices``."""
        ...

    def mc_proba(self, indices: np.ndarray, seed: int) -> np.ndarray:
        """``(T, n, C)`` probabilities under ``T`` dropout masks drawn from ``seed``."""
        ...


class _MCDropout(Strategy):
    needs_network = True
    score_direction = "higher"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "sampler": CallableOrNone(),
        "random_state": RandomState(),
    }

    def __init__(self, sampler: Sampler | None = None, random_state: object = None) -> None:
        self.sampler = sampler
        self.random_state = random_state

    def _samples(self, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sampler = self.sampler
        if sampler is None and getattr(self, "network_", None) is not None:
            # An integer seed is used as it is, so a resumed run draws the same masks.
            seed = self.random_state
            if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
                seed = int(rng.integers(2**31 - 1))
            network = self.network_

            def sampler(indices: np.ndarray) -> np.ndarray:
                return network.mc_proba(indices, seed=int(seed))

        if sampler is None:
            raise RalifInputError(
                f"{self.name} needs a network to sample from: use a scratch-* scenario, "
                "or pass sampler=callable(indices) -> (T, n, C) probabilities"
            )
        P = np.asarray(sampler(pool))
        if P.ndim != 3 or P.shape[1] != len(pool):
            raise RalifInputError(
                f"{self.name}: sampler returned shape {P.shape}, expected (T, {len(pool)}, C)"
            )
        return P

    def _measure(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def query(
        self,
        model: Any,
        X: np.ndarray,
        y: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self._measure(self._samples(pool, rng))
        return pool[top_k(scores, budget)], scores


class MCDropoutBALD(_MCDropout):
    """BALD with Monte-Carlo dropout over the network (Gal et al., ICML 2017).

    Parameters
    ----------
    sampler : callable
        ``indices -> (T, n, C)`` probabilities under dropout.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import MCDropoutBALD
    >>> P = np.random.default_rng(0).dirichlet(np.ones(3), size=(8, 100))  # 8 passes, 100 items
    >>> y = np.full(100, -1); y[:5] = [0, 1, 2, 0, 1]
    >>> MCDropoutBALD(sampler=lambda items: P[:, items], random_state=0).select(np.zeros((100, 2)), y, 4).shape
    (4,)
    """

    name = "bald_mc"
    score_meaning = "mutual information under MC dropout (higher = picked first)"

    def _measure(self, P: np.ndarray) -> np.ndarray:
        return mutual_information(P)


class MCDropoutEntropy(_MCDropout):
    """Entropy of the MC-dropout mean prediction.

    Parameters
    ----------
    sampler : callable
        ``indices -> (T, n, C)`` probabilities under dropout.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import MCDropoutEntropy
    >>> P = np.random.default_rng(0).dirichlet(np.ones(3), size=(8, 100))  # 8 passes, 100 items
    >>> y = np.full(100, -1); y[:5] = [0, 1, 2, 0, 1]
    >>> MCDropoutEntropy(sampler=lambda items: P[:, items], random_state=0).select(np.zeros((100, 2)), y, 4).shape
    (4,)
    """

    name = "entropy_mc"
    score_meaning = "entropy of the mean MC-dropout prediction (higher = picked first)"

    def _measure(self, P: np.ndarray) -> np.ndarray:
        return entropy(P.mean(axis=0))
