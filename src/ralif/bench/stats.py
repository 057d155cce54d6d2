"""Paired statistics of benchmark results: is a strategy below random, and by how much?

Every strategy of a benchmark starts each seed from the same initial labeled set, so two
strategies' results are paired by seed. The tests here work on the per-seed differences:

- :func:`paired_below` asks, per round, whether a strategy is *significantly* below
  another: a one-sided paired t-test (H1: the mean difference is negative), with the
  one-sided upper confidence bound of the mean difference. A round is called below
  random only when that bound is under zero, so a dip inside the seed-to-seed noise
  is not counted as a failure.
- :func:`bootstrap_interval` gives a percentile bootstrap interval of a mean paired
  difference (seeds resampled with replacement), used for AUBC differences.
- :func:`holm` adjusts a family of p-values (Holm, 1979) where many rounds are tested
  at once: at 5 % per round, a strategy no different from random is flagged in about
  one round of twenty by chance alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

CONFIDENCE = 0.95
"""Confidence of the one-sided bounds and of the bootstrap intervals."""

BOOTSTRAP_RESAMPLES = 10_000
"""Resamples of the seeds per bootstrap interval (seeded: a report is reproducible)."""


@dataclass(frozen=True)
class PairedTest:
    """A one-sided paired t-test of ``mean(a - b) < 0``, per column.

    Attributes
    ----------
    mean : ndarray
        Mean difference over seeds.
    upper : ndarray
        One-sided upper confidence bound of the mean difference (NaN with one seed).
    p : ndarray
        One-sided p-value (H1: the mean difference is below zero; NaN with one seed).
    """

    mean: np.ndarray
    upper: np.ndarray
    p: np.ndarray

    def significant(self, alpha: float = 1 - CONFIDENCE) -> np.ndarray:
        """Where the difference is significantly below zero at level ``alpha``."""
        return np.nan_to_num(self.p, nan=1.0) < alpha


def paired_below(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> PairedTest:
    """One-sided paired t-test, per column, of whether ``a`` is below ``b``.

    Parameters
    ----------
    a, b : ndarray of shape (seeds, ...)
        Paired results (the same seed in the same row).
    confidence : float
        Level of the upper bound.

    Returns
    -------
    PairedTest
        With arrays of shape ``a.shape[1:]``. Seeds whose differences are all equal
        give a bound equal to the mean and p = 0 (below), 1 (above) or 0.5 (equal).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[0.70, 0.80], [0.72, 0.81], [0.69, 0.82]])
    >>> b = np.array([[0.75, 0.79], [0.76, 0.80], [0.74, 0.80]])
    >>> test = paired_below(a, b)
    >>> test.significant().tolist()
    [True, False]
    >>> bool(test.upper[0] < 0 < test.upper[1])
    True
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = d.shape[0]
    mean = d.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return PairedTest(mean, nan, nan)
    se = d.std(axis=0, ddof=1) / np.sqrt(n)
    spread = np.ptp(d, axis=0) > 1e-12 * np.maximum(1.0, np.abs(d).max(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(spread, mean / np.where(spread, se, 1.0), 0.0)
    p = np.where(spread, student_t.cdf(tstat, n - 1), np.sign(mean) * 0.5 + 0.5)
    upper = mean + np.where(spread, student_t.ppf(confidence, n - 1) * se, 0.0)
    return PairedTest(mean, upper, p)


def bootstrap_interval(
    diff: np.ndarray,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-seed paired differences.

    Parameters
    ----------
    diff : array-like of shape (seeds,)
        One difference per seed (for example AUBC of a strategy minus random's).
    confidence : float
        Two-sided coverage of the interval.
    resamples : int
        Bootstrap resamples of the seeds, drawn with replacement.
    seed : int
        Seed of the resampling (the same results give the same interval).

    Returns
    -------
    (low, high) : tuple of float
        NaN for no seeds; the single value for one seed.

    Notes
    -----
    With few seeds the percentile interval is too narrow (it cannot reach beyond the
    observed differences); read it beside the paired t-bounds.

    Examples
    --------
    >>> low, high = bootstrap_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> bool(1.0 <= low < 3.0 < high <= 5.0)
    True
    """
    d = np.asarray(diff, dtype=float).ravel()
    if len(d) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN).

    Examples
    --------
    >>> holm(np.array([0.01, 0.04, 0.03])).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    order = ok[np.argsort(flat[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate(flat[order] * (m - np.arange(m))))
    out.ravel()[order] = adjusted
    return out
