"""Stopping rules: the signals against independent truth, the rules on hand-made rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from ralif.stopping import RULES, RoundSignals, StoppingRule, hindsight, kappa, round_signals


@pytest.mark.parametrize("seed", range(5))
def test_kappa_is_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(4, size=200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(4, size=200))
    assert kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_of_two_constant_labelings():
    assert kappa(np.zeros(5), np.zeros(5)) == 1.0
    assert kappa(np.zeros(5), np.ones(5)) == 0.0


def test_round_signals_by_hand():
    proba = np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33]])
    s, pred = round_signals(proba, np.array([2, 5, 7]), np.array([2, 7, 2]), -0.004)
    assert pred.tolist() == [2, 7, 2]
    assert s.agreement == 1.0
    scale = 1 - 1 / 3  # the largest least confidence of three classes
    assert s.max_uncertainty == pytest.approx(0.66 / scale)
    assert s.mean_uncertainty == pytest.approx((0.4 + 0.2 + 0.66) / 3 / scale)
    binary, _ = round_signals(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([0, 1]), None)
    assert binary.max_uncertainty == 1.0 and binary.mean_uncertainty == 0.5
    assert s.expected_change == -0.004
    first, _ = round_signals(proba, np.array([2, 5, 7]), None)
    assert math.isnan(first.agreement)


def test_a_rule_fires_after_its_window_of_passing_rounds():
    rounds = [RoundSignals(agreement=a) for a in (math.nan, 0.995, 0.9, 0.995, 0.999, 0.991)]
    assert StoppingRule("agreement", 0.99, window=3).fires(rounds) == 5
    assert StoppingRule("agreement", 0.99, window=1).fires(rounds) == 1
    assert StoppingRule("agreement", 0.999, window=2).fires(rounds) is None
    drops = [RoundSignals(expected_change=c) for c in (-0.01, -0.0005, 0.0002, -0.01)]
    assert StoppingRule("expected_change", 1e-3, window=2).fires(drops) == 2
    with pytest.raises(ValueError, match="unknown signal"):
        StoppingRule("nope", 1.0).fires(drops)


def test_every_named_rule_reads_a_signal():
    for rule in RULES.values():
        assert rule.signal in RoundSignals.__dataclass_fields__


def test_hindsight_counts_labels_saved_and_accuracy_lost():
    assert hindsight(None, [10, 20, 30], [0.5, 0.6, 0.7]) == (0, 0.0)
    saved, lost = hindsight(0, [10, 20, 30], [0.5, 0.6, 0.7])
    assert saved == 20 and lost == pytest.approx(0.2)
