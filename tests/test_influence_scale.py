"""Influence on features of extreme scale, and on saturated heads, against exact identities."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import ralif
from ralif import LinearHead, influence_matrix
from ralif._solve import solve_hessian_system
from tests.conftest import gaussian_blobs

# A power of two, so that scaling features and weights by it is exact in floating point.
SCALE = 2.0**27  # about 1.3e8


def _fit(X: np.ndarray, y: np.ndarray, l2: float = 0.1) -> LinearHead:
    """A head fitted on ``X``; at a scale of 1e8 it may stop short of its tolerance
    (and say so), which changes nothing in the identities checked here: they hold at
    any parameters, optimal or not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LinearHead(l2=l2).fit(X, y)


def _split(n: int = 240, d: int = 5, C: int = 3, n_labeled: int = 30, seed: int = 0):
    X, y = gaussian_blobs(n, d, C, seed=seed)
    return X[:n_labeled], y[:n_labeled], X[n_labeled:]


def _rescaled(head: LinearHead, s: float) -> LinearHead:
    """The same head for features multiplied by ``s``: weights ``W / s``, ridge ``l2 s^2``.

    ``(l2/2) ||W||^2 = (l2 s^2 / 2) ||W / s||^2`` and ``(W / s)(s x) = W x``: the objective
    is the same function in other coordinates, its optimum maps to the optimum, and
    influence (a quadratic form in the gradients and the inverse Hessian) is unchanged.
    """
    return _head_at(head, head.coef_ / s, head.l2_ * s**2)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("s", [SCALE, 1.0 / SCALE])
def test_influence_is_the_same_for_features_scaled_with_the_ridge(s, solver):
    Xl, yl, Xp = _split()
    head = LinearHead(l2=0.1).fit(Xl, yl)
    expected = influence_matrix(head, Xl, yl, Xp, solver=solver)
    got = influence_matrix(_rescaled(head, s), Xl * s, yl, Xp * s, solver=solver)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_influence_of_a_saturated_head_is_the_same_in_either_parameterisation(solver):
    # At features of scale 1e8 with the default ridge grid the head is saturated
    # (probabilities within 1e-40 of 0 or 1): the same head over unscaled features,
    # weights times s and ridge over s^2, must give the same influence.
    Xl, yl, Xp = _split()
    big = _fit(Xl * SCALE, yl)
    P = big.predict_proba(Xl * SCALE)
    assert (P * (1 - P)).max(axis=1).min() < 1e-30  # it is saturated
    small = _rescaled(big, 1.0 / SCALE)
    got = influence_matrix(big, Xl * SCALE, yl, Xp * SCALE, solver=solver)
    expected = influence_matrix(small, Xl, yl, Xp, solver=solver)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9 * np.abs(expected).max())


def test_pseudo_label_column_keeps_its_digits_when_the_head_is_sure():
    # Sum_y p_y Delta_y = 0 exactly. For a sure item, p_t Delta_t (the pseudo label's
    # column) is a tiny difference; computed as a - p.a it was rounding noise 1e20
    # times larger than the other side of the identity.
    Xl, yl, Xp = _split()
    head = _fit(Xl * SCALE, yl)
    delta = influence_matrix(head, Xl * SCALE, yl, Xp * SCALE)
    P = head.predict_proba(Xp * SCALE)
    rows = np.arange(len(P))
    top = P.argmax(axis=1)
    others_mass = np.where(np.arange(P.shape[1]) == top[:, None], 0.0, P).sum(axis=1)
    sure = others_mass < 1e-20
    assert sure.sum() > 10
    own = (P * delta)[rows, top]
    others = (P * delta).sum(axis=1) - own
    np.testing.assert_allclose(own[sure], -others[sure], rtol=1e-8)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_hessian_solve_of_a_head_without_curvature_is_exact_on_its_range(solver):
    # Weights so large that probabilities are exactly 0 and 1: no curvature left in
    # the bias, so the Hessian is singular to working precision. A right-hand side in
    # its range must still be solved exactly.
    Xl, yl, _ = _split()
    head = LinearHead(l2=0.1).fit(Xl, yl)
    head.coef_ = head.coef_ * 1e4
    head.intercept_ = head.intercept_ * 1e4
    curv = head.curvature(Xl)
    assert (curv.P * (1 - curv.P)).max() == 0.0
    v = np.random.default_rng(0).normal(size=curv.size)
    g = curv.matvec(v)
    g -= curv.null_projection(g)
    s, _ = solve_hessian_system(curv, g, solver=solver)
    np.testing.assert_allclose(curv.matvec(s), g, atol=1e-9 * np.linalg.norm(g))


def _select_quietly(X, y, budget, strategy, **params):
    # Nothing may overflow or divide by zero; a head that cannot reach its tolerance
    # at this scale says so with a ConvergenceWarning, which is the message we want.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ralif.select(X, y, budget, strategy=strategy, random_state=0, **params)


@pytest.mark.parametrize(
    "strategy", ["ralif", "isal", 'ralif_expected=ralif:{"n_candidates": 0.1}']
)
@pytest.mark.parametrize("scale", [1e8, 1e-8])
def test_influence_strategies_select_on_features_of_extreme_scale(strategy, scale):
    X, y = gaussian_blobs(240, 5, 3, seed=0)
    labels = np.full(240, -1)
    labels[:30] = y[:30]
    picks = _select_quietly(X * scale, labels, 6, strategy)
    assert len(set(picks.tolist())) == 6
    assert (labels[picks] == -1).all()
    np.testing.assert_array_equal(picks, _select_quietly(X * scale, labels, 6, strategy))


def test_duplicate_pool_rows_get_identical_influence():
    Xl, yl, Xp = _split()
    Xp = np.vstack([Xp, Xp[:20]])
    head = LinearHead(l2=0.1).fit(Xl, yl)
    delta = influence_matrix(head, Xl, yl, Xp)
    np.testing.assert_array_equal(delta[-20:], delta[:20])


def _head_at(head: LinearHead, coef: np.ndarray, l2: float) -> LinearHead:
    out = LinearHead(l2=l2)
    out.classes_, out.l2_ = head.classes_, l2
    out.coef_, out.intercept_ = coef, head.intercept_.copy()
    out.n_samples_, out.n_features_in_ = head.n_samples_, coef.shape[1]
    return out


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_constant_column_without_ridge_gives_the_influence_of_the_head_without_it(solver):
    # A constant column c duplicates the bias: without a ridge the Hessian is singular
    # along (e_j, -c) in every class. The gradients have no part there, so influence is
    # still defined, and it is that of the same head without the column.
    Xl, yl, Xp = _split()
    head = LinearHead(l2=1e-3).fit(Xl, yl)
    expected = influence_matrix(_head_at(head, head.coef_, 0.0), Xl, yl, Xp, solver=solver)
    with_col = _head_at(head, np.c_[head.coef_, np.zeros(len(head.classes_))], 0.0)
    got = influence_matrix(
        with_col,
        np.c_[Xl, np.full(len(Xl), 3.0)],
        yl,
        np.c_[Xp, np.full(len(Xp), 3.0)],
        solver=solver,
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())


def test_pool_of_one_item_is_picked():
    X, y = gaussian_blobs(40, 4, 2, seed=0)
    labels = y.copy()
    labels[17] = -1
    np.testing.assert_array_equal(_select_quietly(X, labels, 1, "ralif", l2=0.1), [17])


def test_head_on_features_of_scale_1e8_polishes_to_near_its_optimum():
    # Conjugate gradients stall on this nearly saturated head (a ridged W beside a bias
    # with almost no curvature), which left Newton polishing at a gradient of 5e-4;
    # dense Newton steps bring it within rounding of the target.
    Xl, yl, _ = _split()
    head = _fit(Xl * SCALE, yl)
    assert head.grad_norm_ < 1e-6
