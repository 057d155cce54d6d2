"""When to stop labeling: rules over signals each round gives, judged against hindsight.

A practitioner with a budget asks when more labels stop paying. Each round of labeling
gives a few signals, measured on a fixed *stop set* of unlabeled items (Bloodgood &
Vijay-Shanker 2009 draw it once and keep it):

* ``agreement``: Cohen's kappa between this round's and the previous round's predicted
  classes on the stop set (NaN in the first round);
* ``max_uncertainty`` and ``mean_uncertainty``: the largest and the mean least confidence
  over the stop set, ``(1 - max p) / (1 - 1/C)``: 0 for a certain prediction, 1 for a
  uniform one, whatever the number of classes ``C``;
* ``expected_change``: the change of the mean target loss that RALIF's influence
  predicts from labeling one item of the batch just picked (the mean of its picks'
  scores; negative is a drop), NaN for strategies without it.

A :class:`StoppingRule` reads these signals round by round and says in which round it
would first have stopped. :func:`hindsight` then says what stopping there saved (labels)
and cost (accuracy against the last round).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ralif._validation import RalifInputError

STOP_SET_SIZE = 1000
"""Unlabeled items drawn once as the stop set (all of them in a smaller pool)."""


@dataclass(frozen=True)
class RoundSignals:
    """What one round says about whether to go on (see the module's description).

    Parameters
    ----------
    agreement : float
        Cohen's kappa between this round's and the last round's predictions on the
        stop set (NaN in round 0).
    max_uncertainty : float
        The largest least confidence on the stop set, scaled to [0, 1].
    mean_uncertainty : float
        The mean least confidence on the stop set, scaled to [0, 1].
    expected_change : float
        The change of the target loss the strategy's scores predict per label of the
        batch (RALIF; NaN for other strategies).

    Examples
    --------
    >>> RoundSignals(agreement=0.995).agreement
    0.995
    """

    agreement: float = math.nan
    max_uncertainty: float = math.nan
    mean_uncertainty: float = math.nan
    expected_change: float = math.nan


def stop_set(pool: np.ndarray, seed: int, size: int = STOP_SET_SIZE) -> np.ndarray:
    """Draw the stop set: ``size`` items of ``pool`` (all, where it is smaller), once.

    Parameters
    ----------
    pool : ndarray of int
        The items to draw from.
    seed : int
        Seed of the draw: one stop set per seed, every round.
    size : int, default=STOP_SET_SIZE
        How many.

    Returns
    -------
    ndarray of int
        The items drawn, ascending.

    Examples
    --------
    >>> stop_set(np.arange(10), seed=0, size=3).tolist()
    [5, 6, 9]
    """
    pool = np.asarray(pool)
    if len(pool) <= size:
        return np.sort(pool)
    return np.sort(np.random.default_rng(seed).choice(pool, size, replace=False))


def kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Return Cohen's kappa between two labelings of the same items.

    It is 1 where both are constant and equal, as agreement cannot be told from chance
    there.

    Parameters
    ----------
    a, b : ndarray
        The two labelings, one label per item.

    Returns
    -------
    float
        Kappa, at most 1 (0: agreement as by chance).

    Examples
    --------
    >>> kappa(np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]))
    1.0
    >>> round(kappa(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])), 3)
    0.5
    """
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b) or len(a) == 0:
        raise RalifInputError("kappa needs two labelings of the same items")
    observed = float((a == b).mean())
    labels = np.union1d(a, b)
    expected = float(sum((a == c).mean() * (b == c).mean() for c in labels))
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def round_signals(
    proba: np.ndarray,
    classes: np.ndarray,
    previous: np.ndarray | None,
    expected_change: float = math.nan,
) -> tuple[RoundSignals, np.ndarray]:
    """The signals of a round from the model's probabilities on the stop set.

    Parameters
    ----------
    proba : ndarray of shape (n, C)
        ``predict_proba`` of this round's model on the stop set.
    classes : ndarray of shape (C,)
        The model's ``classes_``.
    previous : ndarray of shape (n,) or None
        The previous round's predicted classes on the same items (None in the first).
    expected_change : float
        RALIF's predicted change of the mean target loss per label of the batch (NaN
        if none).

    Returns
    -------
    (RoundSignals, ndarray)
        The signals, and this round's predicted classes (the next round's ``previous``).

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> s, pred = round_signals(p, np.array([0, 1]), np.array([0, 1]))
    >>> s.agreement, round(s.max_uncertainty, 2), pred.tolist()
    (1.0, 0.4, [0, 1])
    """
    proba = np.asarray(proba, dtype=np.float64)
    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    # Least confidence reaches 1 - 1/C at most: scaled to [0, 1], one threshold serves
    # two classes and ten alike.
    n_classes = max(proba.shape[1], 2)
    uncertainty = (1.0 - proba.max(axis=1)) / (1.0 - 1.0 / n_classes)
    agreement = math.nan if previous is None else kappa(previous, predicted)
    signals = RoundSignals(
        agreement=agreement,
        max_uncertainty=float(uncertainty.max()),
        mean_uncertainty=float(uncertainty.mean()),
        expected_change=float(expected_change),
    )
    return signals, predicted


@dataclass(frozen=True)
class StoppingRule:
    """Stop once a signal has passed its threshold in ``window`` rounds running.

    Parameters
    ----------
    signal : {"agreement", "max_uncertainty", "mean_uncertainty", "expected_change"}
        Which signal of :class:`RoundSignals` the rule reads.
    threshold : float
        For ``agreement``: stop when kappa is at least this. For the others: stop when
        the signal (for ``expected_change`` its size, the predicted drop) is at most this.
    window : int
        Rounds running in which the signal must pass (stabilizing predictions average
        kappa over 3; here each of the ``window`` rounds must pass).

    Examples
    --------
    >>> rule = StoppingRule("agreement", 0.99, window=2)
    >>> rule.fires([RoundSignals(agreement=a) for a in (math.nan, 0.9, 0.995, 0.999, 1.0)])
    3
    """

    signal: str
    threshold: float
    window: int = 1

    def passes(self, s: RoundSignals) -> bool:
        """Whether one round's signal passes the threshold (NaN never does)."""
        value = getattr(s, self.signal)
        if math.isnan(value):
            return False
        if self.signal == "agreement":
            return value >= self.threshold
        if self.signal == "expected_change":
            return abs(value) <= self.threshold
        return value <= self.threshold

    def fires(self, signals: Sequence[RoundSignals]) -> int | None:
        """The first round (index into ``signals``) at which the rule says stop, or None."""
        if self.signal not in RoundSignals.__dataclass_fields__:
            raise RalifInputError(
                f"unknown signal {self.signal!r}; choose from "
                f"{', '.join(RoundSignals.__dataclass_fields__)}"
            )
        run = 0
        for r, s in enumerate(signals):
            run = run + 1 if self.passes(s) else 0
            if run >= self.window:
                return r
        return None


RULES: dict[str, StoppingRule] = {
    # Bloodgood & Vijay-Shanker (2009): kappa 0.99 between consecutive models, 3 rounds.
    "stabilizing_predictions": StoppingRule("agreement", 0.99, window=3),
    # Zhu, Wang & Hovy (2008): every stop-set item's uncertainty below a threshold.
    "max_uncertainty": StoppingRule("max_uncertainty", 0.5),
    # small-text's overall uncertainty: the stop set's mean uncertainty below a threshold.
    "overall_uncertainty": StoppingRule("mean_uncertainty", 0.05),
    # RALIF's influence: a label of the batch is predicted to lower the target loss by
    # under 0.001 (nats), in 2 rounds running.
    "expected_loss": StoppingRule("expected_change", 1e-3, window=2),
}
"""The stopping rules ralif reports, by name. Their thresholds are those of the papers
(stabilizing predictions) or round numbers (the others), not yet tuned on data."""


def hindsight(
    stop_round: int | None,
    n_labeled: Sequence[int] | np.ndarray,
    score: Sequence[float] | np.ndarray,
) -> tuple[int, float]:
    """What stopping at ``stop_round`` saved and cost, against going on to the last round.

    Parameters
    ----------
    stop_round : int or None
        The round the rule fired in (None: it never did, so nothing was saved).
    n_labeled, score : sequence
        Labels and the test score (accuracy) of every round.

    Returns
    -------
    (labels saved, score lost)
        Against the last round; the score lost is negative where stopping did better.

    Examples
    --------
    >>> hindsight(1, [10, 20, 30], [0.5, 0.7, 0.72])
    (10, 0.02...)
    """
    if stop_round is None:
        return 0, 0.0
    return int(n_labeled[-1] - n_labeled[stop_round]), float(score[-1] - score[stop_round])
