"""Test-set metrics a benchmark can record and a report can judge by.

Every benchmark records ``accuracy`` and ``macro_f1``; ``ralif bench --metrics`` adds
others from :data:`METRICS`, and ``ralif report --metric`` judges by any metric the
folder recorded. Each is a fraction (kappa and MCC may be negative), computed from the
test set's true and predicted labels, over the classes present in the test set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    cohen_kappa_score,
    f1_score,
    matthews_corrcoef,
    recall_score,
)

from ralif._validation import RalifInputError


@dataclass(frozen=True)
class Metric:
    """One metric: how it is shown, and how it is computed.

    Parameters
    ----------
    label : str
        Its name in tables and plots.
    compute : callable
        ``compute(y_true, y_pred, classes)``: the metric as a float, ``classes`` being
        the classes present in ``y_true``.

    Examples
    --------
    >>> import numpy as np
    >>> METRICS["balanced_accuracy"].label
    'balanced accuracy'
    >>> METRICS["accuracy"].compute(np.array([0, 1]), np.array([0, 0]), np.array([0, 1]))
    0.5
    """

    label: str
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _accuracy(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    return float((pred == y).mean())


def _f1(average: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    def compute(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
        return float(f1_score(y, pred, labels=classes, average=average, zero_division=0))

    return compute


def _recall(reduce: Callable[[np.ndarray], float]) -> Callable[..., float]:
    def compute(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
        recalls = recall_score(y, pred, labels=classes, average=None, zero_division=0)
        return float(reduce(recalls))

    return compute


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", _accuracy),
    "macro_f1": Metric("macro-F1", _f1("macro")),
    "weighted_f1": Metric("weighted F1", _f1("weighted")),
    "balanced_accuracy": Metric("balanced accuracy", _recall(np.mean)),
    "min_recall": Metric("worst-class recall", _recall(np.min)),
    "kappa": Metric("Cohen's kappa", lambda y, p, c: float(cohen_kappa_score(y, p))),
    "mcc": Metric("MCC", lambda y, p, c: float(matthews_corrcoef(y, p))),
}
"""Every metric by name. ``accuracy`` and ``macro_f1`` are always recorded."""

ALWAYS = ("accuracy", "macro_f1")
"""The metrics every benchmark records (columns of its results)."""


def check_metrics(names: Iterable[str]) -> tuple[str, ...]:
    """Check the further metrics to record: known names, each once, without :data:`ALWAYS`.

    They come back in the order of :data:`METRICS`, so one set is written one way.

    Parameters
    ----------
    names : iterable of str
        Names of :data:`METRICS`.

    Returns
    -------
    tuple of str
        The names, in the order of :data:`METRICS`.

    Examples
    --------
    >>> check_metrics(["mcc", "accuracy", "kappa", "mcc"])
    ('kappa', 'mcc')
    """
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise RalifInputError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names and m not in ALWAYS)


def scores(
    y_true: np.ndarray, y_pred: np.ndarray, names: Iterable[str] = ALWAYS
) -> dict[str, float]:
    """The metrics ``names`` of predictions ``y_pred`` against ``y_true``.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n,)
        True and predicted labels.
    names : iterable of str, default ``ALWAYS``
        Names of :data:`METRICS`.

    Returns
    -------
    dict
        Name to value (a fraction), in the order of ``names``.

    Examples
    --------
    >>> y, pred = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    >>> {k: round(v, 3) for k, v in scores(y, pred, ["accuracy", "balanced_accuracy"]).items()}
    {'accuracy': 0.75, 'balanced_accuracy': 0.833}
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    return {name: METRICS[name].compute(y_true, y_pred, classes) for name in names}
