"""Paired statistics of benchmark results against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_1samp, ttest_rel

from ralif.bench.stats import bootstrap_interval, holm, paired_below


def test_paired_test_matches_scipys_one_sided_t_test_and_its_bound():
    rng = np.random.default_rng(0)
    a = rng.normal(0.7, 0.02, size=(7, 5)) - np.linspace(0, 0.03, 5)
    b = rng.normal(0.7, 0.02, size=(7, 5))
    test = paired_below(a, b)
    want = ttest_rel(a, b, axis=0, alternative="less")
    np.testing.assert_allclose(test.p, want.pvalue, rtol=1e-10)
    for j in range(5):
        high = ttest_1samp(a[:, j] - b[:, j], 0.0, alternative="less").confidence_interval(0.95)
        assert test.upper[j] == pytest.approx(high.high, rel=1e-10)
    np.testing.assert_array_equal(test.significant(), want.pvalue < 0.05)
    np.testing.assert_array_equal(test.significant(), test.upper < 0)


def test_constant_differences_are_below_only_when_negative():
    a = np.array([[0.5, 0.6, 0.7], [0.5, 0.6, 0.7]])
    b = a + np.array([0.01, 0.0, -0.01])
    test = paired_below(a, b)
    assert test.significant().tolist() == [True, False, False]
    np.testing.assert_allclose(test.upper, [-0.01, 0.0, 0.01], atol=1e-12)


def test_one_seed_is_never_significant():
    test = paired_below(np.array([[0.1, 0.9]]), np.array([[0.9, 0.1]]))
    assert not test.significant().any() and np.isnan(test.upper).all()


def test_bootstrap_interval_of_two_seeds_spans_them():
    # Resampling two seeds gives the mean of a (1/4), of b (1/4) or their midpoint (1/2):
    # the 2.5 % and 97.5 % quantiles are the two seeds themselves.
    assert bootstrap_interval([-1.0, 3.0]) == (-1.0, 3.0)
    assert bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    low, high = bootstrap_interval(np.arange(10.0))
    assert low < 4.5 < high and (low, high) == bootstrap_interval(np.arange(10.0))


def test_bootstrap_interval_covers_the_mean_at_its_nominal_rate():
    rng = np.random.default_rng(1)
    covered = [
        low <= 0.0 <= high
        for low, high in (bootstrap_interval(rng.normal(size=30), resamples=2000, seed=k)
                          for k in range(300))
    ]  # fmt: skip
    assert 0.9 <= np.mean(covered) <= 0.99


def test_holm_by_hand():
    # Sorted p: 0.01 * 4, 0.02 * 3, 0.03 * 2, 0.5 * 1, made monotone.
    p = np.array([0.5, 0.02, np.nan, 0.01, 0.03])
    np.testing.assert_allclose(holm(p), [0.5, 0.06, np.nan, 0.04, 0.06])
