"""The linear head: optimum, scikit-learn equivalence, l2 selection, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ralif import LinearHead, RalifInputError
from ralif._softmax import Curvature, objective, predict_proba
from ralif.head import FALLBACK_L2


@pytest.mark.parametrize("l2", [1e-3, 1e-2, 1.0])
def test_gradient_norm_at_optimum_is_tiny(digits, l2):
    X, y = digits
    head = LinearHead(l2=l2).fit(X[:400], y[:400])
    Y = np.eye(10)[y[:400]]
    _, grad = objective(head.params_, X[:400], Y, l2, True)
    assert np.linalg.norm(grad) < 1e-8
    assert head.grad_norm_ < 1e-8


def test_matches_sklearn_solution_of_same_objective(digits):
    X, y = digits
    n, l2 = 300, 0.05
    head = LinearHead(l2=l2).fit(X[:n], y[:n])
    ref = LogisticRegression(C=1.0 / (n * l2), tol=1e-12, max_iter=20000).fit(X[:n], y[:n])
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def test_float32_features_fit_the_same_optimum(blobs):
    X, y = blobs
    h64 = LinearHead(l2=0.1).fit(X, y)
    h32 = LinearHead(l2=0.1).fit(X.astype(np.float32), y)
    np.testing.assert_allclose(h32.coef_, h64.coef_, atol=1e-5)
    assert h32.predict_proba(X.astype(np.float32)).dtype == np.float32


def test_classes_need_not_be_contiguous(blobs):
    X, y = blobs
    labels = np.array([3, 7, 11, 20])[y]
    head = LinearHead(l2=0.1).fit(X, labels)
    assert head.classes_.tolist() == [3, 7, 11, 20]
    assert set(head.predict(X)) <= {3, 7, 11, 20}


def test_hessian_matvec_matches_finite_differences_of_gradient(blobs):
    X, y = blobs
    head = LinearHead(l2=0.1).fit(X[:200], y[:200])
    Y = np.eye(4)[y[:200]]
    curv = head.curvature(X[:200])
    rng = np.random.default_rng(1)
    v = rng.normal(size=head.params_.size)
    eps = 1e-6
    fd = (
        objective(head.params_ + eps * v, X[:200], Y, 0.1, True)[1]
        - objective(head.params_ - eps * v, X[:200], Y, 0.1, True)[1]
    ) / (2 * eps)
    np.testing.assert_allclose(curv.matvec(v), fd, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(curv.dense() @ v, fd, rtol=1e-5, atol=1e-8)


def test_hessian_null_direction_is_adding_one_vector_to_every_class(blobs):
    X, y = blobs
    head = LinearHead(l2=0.0).fit(X[:200], y[:200])
    curv = head.curvature(X[:200])
    u = np.random.default_rng(0).normal(size=X.shape[1] + 1)
    v = np.concatenate([np.tile(u[:-1], 4), np.full(4, u[-1])])
    np.testing.assert_allclose(curv.matvec(v), 0.0, atol=1e-10)
    W = head.coef_ + u[:-1]
    np.testing.assert_allclose(
        predict_proba(X, W, head.intercept_ + u[-1]), head.predict_proba(X), atol=1e-12
    )
    assert isinstance(curv, Curvature)


@pytest.mark.parametrize("n_classes", [2, 10])
def test_from_sklearn_converts_C_to_l2_and_keeps_predictions(digits, n_classes):
    X, y = digits
    mask = y < n_classes
    X, y = X[mask][:300], y[mask][:300]
    clf = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(X, y)
    head = LinearHead.from_sklearn(clf, X, y)
    factor = 2.0 if n_classes == 2 else 1.0
    assert head.l2_ == pytest.approx(factor / (len(y) * 0.5))
    assert head.grad_norm_ < 1e-8
    np.testing.assert_allclose(head.predict_proba(X), clf.predict_proba(X), atol=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_from_sklearn_refuses_l1_and_class_weights(blobs):
    X, y = blobs
    with pytest.raises(RalifInputError, match="class_weight"):
        LinearHead.from_sklearn(LogisticRegression(class_weight="balanced").fit(X, y), X, y)
    with pytest.raises(RalifInputError, match="l2-penalized"):
        clf = LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=50).fit(X, y)
        LinearHead.from_sklearn(clf, X, y)


def test_auto_l2_prefers_strong_ridge_on_pure_noise_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 20))
    y = rng.integers(3, size=150)
    head = LinearHead().fit(X, y)
    assert head.l2_ == 1.0
    assert set(head.cv_log_loss_) == {1e-4, 1e-3, 1e-2, 1e-1, 1.0}


def test_auto_l2_prefers_weak_ridge_on_clean_separable_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] > 0).astype(int)
    head = LinearHead().fit(X * 3, y)
    assert head.l2_ <= 1e-2
    assert min(head.cv_log_loss_.values()) == head.cv_log_loss_[head.l2_]


def test_auto_l2_falls_back_when_classes_are_too_small_to_split():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    head = LinearHead().fit(X, [0, 0, 1, 1])
    assert head.l2_ == FALLBACK_L2
    assert head.cv_log_loss_ is None


def test_fit_errors_name_the_problem():
    with pytest.raises(RalifInputError, match="at least two classes"):
        LinearHead(l2=0.1).fit(np.zeros((3, 2)), [1, 1, 1])
    with pytest.raises(RalifInputError, match="not fitted"):
        LinearHead().predict_proba(np.zeros((1, 2)))
    with pytest.raises(RalifInputError, match="l2 must be"):
        LinearHead(l2=-1).fit(np.eye(2), [0, 1])
    head = LinearHead(l2=0.1).fit(np.eye(2), [0, 1])
    with pytest.raises(RalifInputError, match="3 features but the head was fitted on 2"):
        head.predict_proba(np.zeros((1, 3)))


def test_without_intercept_matches_sklearn_without_intercept(digits):
    X, y = digits
    n, l2 = 300, 0.05
    head = LinearHead(l2=l2, fit_intercept=False).fit(X[:n], y[:n])
    ref = LogisticRegression(C=1.0 / (n * l2), fit_intercept=False, tol=1e-12, max_iter=20000).fit(
        X[:n], y[:n]
    )
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    assert not head.intercept_.any() and head.params_.size == 10 * X.shape[1]


def test_from_sklearn_keeps_a_model_without_intercept(digits):
    X, y = digits
    n = 200
    ref = LogisticRegression(C=0.5, fit_intercept=False, tol=1e-10, max_iter=20000)
    ref.fit(X[:n], y[:n])
    head = LinearHead.from_sklearn(ref, X[:n], y[:n])
    assert head.fit_intercept is False and head.l2_ == pytest.approx(1.0 / (n * 0.5))
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(X), atol=1e-4)
