"""Influence against independent truth: refitting, dense solves, autograd."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from ralif import LinearHead, RalifInputError, influence_matrix
from ralif._solve import solve_hessian_system
from ralif.influence import InfluenceSettings, pool_influence
from tests.conftest import gaussian_blobs, require, standardized_digits


def _target_loss(head, X_target, labels):
    col = np.searchsorted(head.classes_, labels)
    p = head.predict_proba(X_target)
    return -np.log(p[np.arange(len(labels)), col]).mean()


def _retraining_check(X, y, n_labeled, n_pool, l2, target, n_pairs=40, seed=0, fit_intercept=True):
    """Refit with each (item, label) added; compare with the predicted change."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    L, U = perm[:n_labeled], perm[n_labeled : n_labeled + n_pool]
    head = LinearHead(l2=l2, fit_intercept=fit_intercept).fit(X[L], y[L])
    pseudo = head.predict(X[U])
    if target == "all":
        X_t, t_labels = np.vstack([X[L], X[U]]), np.r_[y[L], pseudo]
    elif target == "labeled":
        X_t, t_labels = X[L], y[L]
    else:
        X_t, t_labels = X[U], pseudo
    base = _target_loss(head, X_t, t_labels)
    delta = influence_matrix(head, X[L], y[L], X[U], target=target, rescale_ridge=True)
    predicted, actual = [], []
    items = rng.choice(n_pool, n_pairs, replace=False)
    for i in items:
        c = rng.integers(len(head.classes_))
        refit = LinearHead(l2=l2, fit_intercept=fit_intercept).fit(
            np.vstack([X[L], X[U[i]]]), np.r_[y[L], head.classes_[c]]
        )
        actual.append(_target_loss(refit, X_t, t_labels) - base)
        predicted.append(delta[i, c])
    return np.array(predicted), np.array(actual)


@pytest.mark.parametrize(
    ("dataset", "l2", "target"),
    [
        ("digits", 0.05, "pool"),
        ("digits", 0.05, "all"),
        ("blobs", 0.02, "pool"),
        ("blobs", 0.1, "all"),
    ],
)
def test_influence_predicts_refitting(dataset, l2, target):
    X, y = (
        standardized_digits() if dataset == "digits" else gaussian_blobs(n=900, d=10, C=5, sep=1.0)
    )
    predicted, actual = _retraining_check(X, y, n_labeled=300, n_pool=400, l2=l2, target=target)
    rho = spearmanr(predicted, actual)[0]
    ratio = np.median(predicted / actual)
    assert rho >= 0.9, rho
    assert 0.5 <= ratio <= 2.0, ratio


def test_influence_without_intercept_predicts_refitting():
    X, y = gaussian_blobs(n=900, d=10, C=5, sep=1.0)
    predicted, actual = _retraining_check(
        X, y, n_labeled=300, n_pool=400, l2=0.05, target="pool", fit_intercept=False
    )
    assert spearmanr(predicted, actual)[0] >= 0.9
    assert 0.5 <= np.median(predicted / actual) <= 2.0


@pytest.mark.parametrize("damping", [0.0, 0.25])
def test_cg_and_cholesky_agree(digits, damping):
    X, y = digits
    head = LinearHead(l2=0.01).fit(X[:200], y[:200])
    d_cg = influence_matrix(head, X[:200], y[:200], X[200:], solver="cg", damping=damping)
    d_ch = influence_matrix(head, X[:200], y[:200], X[200:], solver="cholesky", damping=damping)
    assert np.linalg.norm(d_cg - d_ch) / np.linalg.norm(d_ch) <= 1e-6


def test_solution_satisfies_the_hessian_system(blobs):
    X, y = blobs
    head = LinearHead(l2=0.0).fit(X[:300], y[:300])  # singular Hessian: only the null fix helps
    curv = head.curvature(X[:300])
    rng = np.random.default_rng(0)
    g = curv.matvec(rng.normal(size=curv.size))  # in the range of H by construction
    for solver in ("cg", "cholesky"):
        s, info = solve_hessian_system(curv, g, solver=solver)
        np.testing.assert_allclose(curv.matvec(s), g, atol=1e-8)
        assert info.solver == solver


def test_untruncated_expectation_of_influence_is_zero(digits):
    X, y = digits
    head = LinearHead(l2=0.05).fit(X[:200], y[:200])
    delta = influence_matrix(head, X[:200], y[:200], X[200:600])
    p = head.predict_proba(X[200:600])
    np.testing.assert_allclose(
        (p * delta).sum(axis=1), 0.0, atol=1e-12 + 1e-9 * np.abs(delta).max()
    )


def test_float32_pool_matches_float64(digits):
    X, y = digits
    head = LinearHead(l2=0.05).fit(X[:200], y[:200])
    d64 = influence_matrix(head, X[:200], y[:200], X[200:])
    d32 = influence_matrix(head, X[:200], y[:200], X[200:].astype(np.float32))
    assert np.abs(d32 - d64).max() <= 1e-4 * np.abs(d64).max()


@pytest.mark.parametrize("damping", [0.0, 0.25])
@pytest.mark.parametrize(
    ("target", "weighting"),
    [("pool", "none"), ("all", "none"), ("labeled", "none"), ("entropy", "none"),
     ("pool", "balanced"), ("entropy", "balanced"), ("pool", "confidence")],
)  # fmt: skip
def test_vectorized_delta_equals_per_sample_autograd(damping, target, weighting):
    torch = require("torch")
    X, y = gaussian_blobs(n=120, d=5, C=3, sep=1.0, seed=3)
    L, U = np.arange(40), np.arange(40, 120)
    l2 = 0.05
    head = LinearHead(l2=l2).fit(X[L], y[L])
    settings = InfluenceSettings(target=target, damping=damping, weighting=weighting)
    ours = pool_influence(head, X[L], y[L], X[U], settings=settings).delta

    t = torch.float64
    XL, XU = torch.tensor(X[L], dtype=t), torch.tensor(X[U], dtype=t)
    yL = torch.tensor(y[L])
    theta = torch.tensor(np.c_[head.coef_, head.intercept_], dtype=t)  # C x (d+1)

    def logits(th, Xb):
        return Xb @ th[:, :-1].T + th[:, -1]

    def risk(th):
        ce = torch.nn.functional.cross_entropy(logits(th, XL), yL)
        return ce + 0.5 * l2 * (th[:, :-1] ** 2).sum()

    H = torch.autograd.functional.hessian(risk, theta).reshape(theta.numel(), theta.numel())
    pseudo = logits(theta, XU).argmax(dim=1)

    counts = torch.bincount(pseudo, minlength=3).to(t)
    # Item weights, constants of the fitted head: the inverse pseudo-class frequency, or
    # the head's confidence; the target is their weighted mean over the pool.
    w = {
        "none": torch.ones(len(U), dtype=t),
        "balanced": 1.0 / counts[pseudo],
        "confidence": torch.softmax(logits(theta, XU), dim=1).max(dim=1).values,
    }[weighting]

    def target_loss(th):
        if target == "entropy":
            logp = torch.log_softmax(logits(th, XU), dim=1)
            return (w * -(logp.exp() * logp).sum(dim=1)).sum() / w.sum()
        if target == "pool" and weighting != "none":
            ce = torch.nn.functional.cross_entropy(logits(th, XU), pseudo, reduction="none")
            return (w * ce).sum() / w.sum()
        if target == "labeled":
            return torch.nn.functional.cross_entropy(logits(th, XL), yL)
        if target == "all":
            return torch.nn.functional.cross_entropy(
                logits(th, torch.cat([XL, XU])), torch.cat([yL, pseudo])
            )
        return torch.nn.functional.cross_entropy(logits(th, XU), pseudo)

    th = theta.clone().requires_grad_(True)
    g = torch.autograd.grad(target_loss(th), th)[0].reshape(-1)
    # The softmax Hessian is singular; the pseudo-inverse is the minimum-norm answer,
    # the same as ours on gradients (which are orthogonal to the null space).
    s = torch.linalg.pinv(H + damping * torch.eye(H.shape[0], dtype=t), hermitian=True) @ g
    expected = np.empty_like(ours)
    for i in range(len(U)):
        for c in range(3):
            th = theta.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(logits(th, XU[i : i + 1]), torch.tensor([c]))
            grad = torch.autograd.grad(loss, th)[0].reshape(-1)
            expected[i, c] = -(grad @ s).item() / len(L)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-10)


def test_influence_matrix_errors(blobs):
    X, y = blobs
    head = LinearHead(l2=0.1).fit(X[:50], y[:50])
    with pytest.raises(RalifInputError, match="X_pool has 3 features"):
        influence_matrix(head, X[:50], y[:50], X[50:, :3])
    with pytest.raises(RalifInputError, match="target must be one of"):
        influence_matrix(head, X[:50], y[:50], X[50:], target="everything")
    with pytest.raises(RalifInputError, match="damping"):
        influence_matrix(head, X[:50], y[:50], X[50:], damping=-1)
    with pytest.raises(RalifInputError, match="classes the head does not know"):
        influence_matrix(head, X[:50], np.r_[y[:49], 9], X[50:])
