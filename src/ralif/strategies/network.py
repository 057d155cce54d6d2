"""Strategies that need the network itself: MC-dropout BALD and entropy.

They get their probability samples from a ``sampler``: a callable from the indices of
the items to score to an array (T, n, C) of probabilities under T dropout masks (see
:func:`ralif.models.mc_dropout_proba`). The deep scenarios of ``ralif bench`` wire it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ralif._validation import RalifInputError
from ralif.scores import entropy, mutual_information
from ralif.selectors import top_k
from ralif.strategies.base import Strategy

Sampler = Callable[[np.ndarray], np.ndarray]


class _MCDropout(Strategy):
    def __init__(self, sampler: Sampler | None = None, random_state: object = None) -> None:
        self.sampler = sampler
        self.random_state = random_state

    def _samples(self, pool: np.ndarray) -> np.ndarray:
        if self.sampler is None:
            raise RalifInputError(
                f"{self.name} needs a network to sample from: use a scratch-* scenario, "
                "or pass sampler=callable(indices) -> (T, n, C) probabilities"
            )
        P = np.asarray(self.sampler(pool))
        if P.ndim != 3 or P.shape[1] != len(pool):
            raise RalifInputError(
                f"{self.name}: sampler returned shape {P.shape}, expected (T, {len(pool)}, C)"
            )
        return P

    def _measure(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _select(self, X, labeled, y_labeled, pool, budget, rng):
        scores = self._measure(self._samples(pool))
        return top_k(scores, budget), scores


class MCDropoutBALD(_MCDropout):
    """BALD with Monte-Carlo dropout over the network (Gal et al., ICML 2017).

    Parameters
    ----------
    sampler : callable
        ``indices -> (T, n, C)`` probabilities under dropout.
    random_state : None, int or Generator
    """

    name = "bald_mc"
    score_meaning = "mutual information under MC dropout (higher = picked first)"

    def _measure(self, P):
        return mutual_information(P)


class MCDropoutEntropy(_MCDropout):
    """Entropy of the MC-dropout mean prediction.

    Parameters
    ----------
    sampler : callable
        ``indices -> (T, n, C)`` probabilities under dropout.
    random_state : None, int or Generator
    """

    name = "entropy_mc"
    score_meaning = "entropy of the mean MC-dropout prediction (higher = picked first)"

    def _measure(self, P):
        return entropy(P.mean(axis=0))
