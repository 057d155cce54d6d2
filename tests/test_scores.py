"""Truncated expectation and the authors' score on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from ralif import authors_score, kept_classes, truncated_expectation


def test_threshold_is_tau_over_C_and_top_label_always_kept():
    p = np.array([[0.5, 0.3, 0.15, 0.05], [0.26, 0.25, 0.25, 0.24]])
    # tau = 1.2, C = 4: threshold 0.3 (strict), so 0.3 itself is dropped.
    assert kept_classes(p, tau=1.2).tolist() == [
        [True, False, False, False],
        [True, False, False, False],
    ]
    assert kept_classes(p, tau=0.8).tolist() == [
        [True, True, False, False],
        [True, True, True, True],
    ]


def test_truncated_expectation_renormalizes_over_kept_labels():
    p = np.array([[0.6, 0.3, 0.1]])
    delta = np.array([[-2.0, 4.0, 100.0]])
    # tau = 0.6 -> threshold 0.2: keep labels 0, 1 with weights 2/3, 1/3.
    assert truncated_expectation(delta, p, tau=0.6)[0] == pytest.approx(2 / 3 * -2.0 + 1 / 3 * 4.0)
    # tau = 4 -> threshold 4/3 > 1: only the top label remains.
    assert truncated_expectation(delta, p, tau=4.0)[0] == pytest.approx(-2.0)


def test_untruncated_expectation_is_plain_expectation():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=7)
    delta = rng.normal(size=(7, 5))
    np.testing.assert_allclose(truncated_expectation(delta, p, tau=0.0), (p * delta).sum(axis=1))


def test_authors_score_is_mean_over_kept_of_p_times_loss_plus_delta():
    p = np.array([[0.6, 0.3, 0.1], [0.9, 0.05, 0.05]])
    delta = np.array([[-0.5, 0.2, 9.0], [0.1, 0.0, 0.0]])
    got = authors_score(delta, p, target_loss=2.0, tau=0.6)
    assert got[0] == pytest.approx((0.6 * 1.5 + 0.3 * 2.2) / 2)
    assert got[1] == pytest.approx(0.9 * 2.1)


def test_entropy_and_mutual_information_are_finite_for_float32_one_hot():
    from ralif.scores import entropy, mutual_information

    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    assert np.isfinite(entropy(p)).all()
    assert entropy(p)[0] == 0.0 and entropy(p)[1] == pytest.approx(np.log(2))
    assert np.isfinite(mutual_information(np.stack([p, p[::-1]]))).all()
