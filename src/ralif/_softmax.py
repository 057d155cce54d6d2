"""Closed-form calculus of the softmax-linear head.

The head has parameters ``W`` (C x d) and ``b`` (C,), flattened as ``[W.ravel(), b]``
(``b`` left out without an intercept). The objective is

    R(theta) = (1/n) sum_i CE(x_i, y_i; theta) + (l2/2) ||W||^2      (b unpenalized)

Per-sample gradient: ``(p - e_y) x~^T`` with ``x~ = [x, 1]``. Hessian of the data part:
``(1/n) sum_i (diag p_i - p_i p_i^T) (x) x~_i x~_i^T``.

The softmax Hessian is singular along ``1 v^T`` (the same vector added to every class):
probabilities do not change. Every per-sample gradient is orthogonal to these directions
(``1^T (p - e_y) = 0``) and the Hessian maps the orthogonal complement onto itself, so
adding ``mu * Pi`` (``Pi`` the projector onto the null directions) makes the system
positive definite without changing its solution for such right-hand sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


def softmax_inplace(Z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed in place on ``Z`` and returned."""
    Z -= Z.max(axis=-1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=-1, keepdims=True)
    return Z


def complement(P: np.ndarray) -> np.ndarray:
    """``1 - P`` row-wise, accurate also where one class holds almost all the mass.

    For a probability near 1, ``1 - p`` loses every digit below ``1e-16``; the sum of the
    row's other probabilities does not. Saturated heads (features of a large scale, or a
    weak ridge) have exactly such rows, and their curvature is made of these numbers.
    """
    comp = 1.0 - P
    rows = np.arange(P.shape[0])
    top = P.argmax(axis=1)
    dominant = P[rows, top] > 0.5
    if dominant.any():
        rest = P[dominant].copy()
        rest[np.arange(rest.shape[0]), top[dominant]] = 0.0
        comp[rows[dominant], top[dominant]] = rest.sum(axis=1)
    return comp


def log_softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax (a new array)."""
    Z = Z - Z.max(axis=1, keepdims=True)
    return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))


def split_params(
    theta: np.ndarray, n_classes: int, n_features: int, fit_intercept: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """View a flat parameter vector as ``(W, b)``; ``b`` is None without an intercept."""
    k = n_classes * n_features
    W = theta[:k].reshape(n_classes, n_features)
    b = theta[k:] if fit_intercept else None
    return W, b


def join_params(W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Flatten ``(W, b)`` into one vector (the inverse of :func:`split_params`)."""
    if b is None:
        return W.ravel().copy()
    return np.concatenate([W.ravel(), b])


def logits(X: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``X W^T + b`` computed in the dtype of ``X`` (no upcast copy of ``X``)."""
    Z = X @ W.T.astype(X.dtype, copy=False)
    if b is not None:
        Z += b.astype(X.dtype, copy=False)
    return Z


def predict_proba(X: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Class probabilities of the head for the rows of ``X``."""
    return softmax_inplace(logits(X, W, b))


def objective(
    theta: np.ndarray, X: np.ndarray, Y: np.ndarray, l2: float, fit_intercept: bool
) -> tuple[float, np.ndarray]:
    """Value and gradient of R at ``theta``; ``Y`` is the one-hot label matrix."""
    n, d = X.shape
    C = Y.shape[1]
    W, b = split_params(theta, C, d, fit_intercept)
    Z = logits(X, W, b)
    logp = log_softmax(Z)
    value = -(Y * logp).sum() / n + 0.5 * l2 * float(W.ravel() @ W.ravel())
    P = np.exp(logp)
    R = P - Y
    # p_y - 1 as minus the other classes' mass: for a sure head it is below rounding of
    # 1, and the gradient of features of a large scale is made of nothing else.
    sure = Y == 1.0
    R[sure] = -complement(P)[sure]
    gW = R.T @ X / n + l2 * W
    grad = join_params(gW, R.sum(axis=0) / n if fit_intercept else None)
    return float(value), grad


@dataclass
class Curvature:
    """Hessian of the head's objective at one point, ready for products and solves.

    Built once per round (the probabilities of the labeled items are the expensive
    part) and reused by every Hessian-vector product.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Features of the labeled items.
    P : ndarray of shape (n, C)
        The head's probabilities on them.
    l2 : float
        Ridge strength on ``W``.
    fit_intercept : bool
        Whether the parameters include the bias.
    """

    X: np.ndarray
    P: np.ndarray
    l2: float
    fit_intercept: bool

    @property
    def n_classes(self) -> int:
        return self.P.shape[1]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def size(self) -> int:
        """Number of parameters."""
        return self.n_classes * (self.n_features + int(self.fit_intercept))

    @cached_property
    def _dominant(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose top class has probability above 1/2, and that class."""
        top = self.P.argmax(axis=1)
        rows = np.flatnonzero(self.P[np.arange(self.P.shape[0]), top] > 0.5)
        return rows, top[rows]

    def _expand(self, null_weight: float | np.ndarray) -> np.ndarray | float:
        """A weight per feature (bias last) laid out as a flat parameter vector."""
        if np.ndim(null_weight) == 0:
            return float(null_weight)
        mu = np.asarray(null_weight, dtype=np.float64)
        d, C = self.n_features, self.n_classes
        W = np.broadcast_to(mu[:d], (C, d))
        return join_params(
            np.ascontiguousarray(W), np.full(C, mu[d]) if self.fit_intercept else None
        )

    def null_projection(self, v: np.ndarray) -> np.ndarray:
        """Project a flat vector onto the softmax null directions ``1 u^T``."""
        W, b = split_params(v, self.n_classes, self.n_features, self.fit_intercept)
        mW = np.broadcast_to(W.mean(axis=0), W.shape)
        return join_params(
            np.ascontiguousarray(mW), None if b is None else np.full_like(b, b.mean())
        )

    def matvec(
        self, v: np.ndarray, shift: float = 0.0, null_weight: float | np.ndarray = 0.0
    ) -> np.ndarray:
        """``(H + shift I + null_weight Pi) v`` in O(n d C).

        ``null_weight`` is one number, or one per feature with the bias last (the null
        directions ``1 e_j^T`` of each feature weighted apart).
        """
        n = self.X.shape[0]
        VW, vb = split_params(v, self.n_classes, self.n_features, self.fit_intercept)
        U = self.X @ VW.T
        if vb is not None:
            U += vb
        PU = self.P * U
        Q = PU - self.P * PU.sum(axis=1, keepdims=True)
        rows, top = self._dominant
        if len(rows):
            # (diag p - p p^T) u for the dominant class as p_t sum_k p_k (u_t - u_k):
            # the difference of the two products above cancels to nothing there.
            Pd, Ud = self.P[rows], U[rows]
            Ut = Ud[np.arange(len(rows)), top]
            Q[rows, top] = Pd[np.arange(len(rows)), top] * (Pd * (Ut[:, None] - Ud)).sum(axis=1)
        hW = Q.T @ self.X / n + (self.l2 + shift) * VW
        hb = None if vb is None else Q.sum(axis=0) / n + shift * vb
        out = join_params(hW, hb)
        if np.any(null_weight):
            out += self._expand(null_weight) * self.null_projection(v)
        return out

    def diagonal(self, shift: float = 0.0, null_weight: float | np.ndarray = 0.0) -> np.ndarray:
        """Diagonal of ``H + shift I + null_weight Pi`` (a Jacobi preconditioner)."""
        n = self.X.shape[0]
        w = self.P * complement(self.P)
        dW = w.T @ (self.X * self.X) / n + self.l2 + shift
        db = w.sum(axis=0) / n + shift if self.fit_intercept else None
        return join_params(dW, db) + self._expand(null_weight) / self.n_classes

    def dense(self, shift: float = 0.0, null_weight: float | np.ndarray = 0.0) -> np.ndarray:
        """The whole matrix ``H + shift I + null_weight Pi``; O(n (C(d+1))^2) work."""
        n, d = self.X.shape
        C = self.n_classes
        Xt = np.hstack([self.X, np.ones((n, 1))]) if self.fit_intercept else self.X
        dt = Xt.shape[1]
        # Class-major layout [class, feature] matches split_params only for W; build in
        # (class, feature~) order first, then permute the bias columns to the end.
        Z = (self.P[:, :, None] * Xt[:, None, :]).reshape(n, C * dt)
        H = -(Z.T @ Z)
        # Diagonal blocks from p (1 - p) itself, not p - p^2, which cancels to rounding
        # noise (and a matrix that is not positive) where the head is saturated.
        w = self.P * complement(self.P)
        for c in range(C):
            blk = slice(c * dt, (c + 1) * dt)
            H[blk, blk] = (Xt * w[:, c : c + 1]).T @ Xt
        H /= n
        reg = np.tile(np.r_[np.full(d, self.l2), np.zeros(dt - d)], C) + shift
        H[np.diag_indices_from(H)] += reg
        if np.any(null_weight):
            # sum_j mu_j Pi_j with Pi_j = (1/C) 1 1^T (x) e_j e_j^T in the (class, feature~)
            # layout; a scalar mu is the same weight for every feature.
            mu = np.broadcast_to(np.asarray(null_weight, dtype=np.float64), (dt,))
            H += np.kron(np.ones((C, C)) / C, np.diag(mu))
        if self.fit_intercept:
            order = np.r_[
                (np.arange(C)[:, None] * dt + np.arange(d)[None, :]).ravel(),
                np.arange(C) * dt + d,
            ]
            H = H[np.ix_(order, order)]
        return H
