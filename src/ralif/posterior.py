"""Samples from the Laplace posterior of the linear head."""

from __future__ import annotations

import numpy as np

from ralif._softmax import split_params
from ralif._solve import HessianSolver
from ralif.head import LinearHead


def laplace_samples(
    head: LinearHead,
    X_labeled: np.ndarray,
    n_samples: int,
    random_state: np.random.Generator,
    solver: str = "auto",
) -> np.ndarray:
    """Draw head parameters from ``N(theta_hat, H^{-1} / n)``.

    ``H`` is the Hessian of the mean objective, so ``n H`` is that of the summed
    log-likelihood plus ridge: the usual Laplace approximation. A sample is
    ``H^{-1} A^T eps / sqrt(n)`` with ``A^T A = H``: for each labeled item the factor of
    ``diag(p) - p p^T`` is ``diag(sqrt p) - sqrt(p) p^T``, so ``A^T eps`` costs one
    matrix product and each sample one solve with the same Hessian; nothing of size
    ``(C(d+1))^2`` is formed unless the dense solver is chosen. Directions that leave
    every probability unchanged (the same vector added to every class) are not sampled.

    Parameters
    ----------
    head : LinearHead
        Fitted on ``X_labeled``.
    X_labeled : ndarray of shape (n, d)
        The labeled features.
    n_samples : int
        Number of samples.
    random_state : Generator
        Source of the normal draws.
    solver : {"auto", "cg", "cholesky"}
        Linear solver.

    Returns
    -------
    samples : ndarray of shape (n_samples, n_params)
        Flat parameter vectors laid out as ``LinearHead.params_``.
    """
    curv = head.curvature(X_labeled)
    solver_ = HessianSolver(curv, solver=solver, tol=1e-8)
    n, d = curv.X.shape
    C = curv.n_classes
    sqrt_p = np.sqrt(curv.P)
    theta = head.params_
    out = np.empty((n_samples, theta.size))
    for k in range(n_samples):
        eps = random_state.standard_normal((n, C))
        # B_i^T eps_i = sqrt(p) * eps_i - p (sqrt(p) . eps_i)
        M = sqrt_p * eps - curv.P * (sqrt_p * eps).sum(axis=1, keepdims=True)
        xiW = M.T @ curv.X / np.sqrt(n) + np.sqrt(curv.l2) * random_state.standard_normal((C, d))
        xi = (
            np.concatenate([xiW.ravel(), M.sum(axis=0) / np.sqrt(n)])
            if curv.fit_intercept
            else xiW.ravel()
        )
        step, _ = solver_.solve(xi)
        out[k] = theta + step / np.sqrt(n)
    return out


def sample_heads(
    samples: np.ndarray, head: LinearHead
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``(W, b)`` pairs for each flat sample."""
    C, d = head.coef_.shape
    return [split_params(s, C, d, head.fit_intercept) for s in samples]
