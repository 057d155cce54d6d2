"""Solving ``(H + damping I) s = g`` for the head's Hessian.

Two exact routes: a dense Cholesky factorisation for small heads (of the matrix scaled
to a unit diagonal, with an eigendecomposition where it is singular to working
precision), and preconditioned conjugate gradients with exact Hessian-vector products
for the rest. Both add the
projector onto the softmax null directions (see :mod:`ralif._softmax`), which leaves the
solution unchanged for gradients of the objective and makes the matrix definite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ralif._softmax import Curvature

# Above this many parameters, building the dense Hessian costs more than CG.
DENSE_MAX_PARAMS = 1200


@dataclass(frozen=True)
class SolveInfo:
    """How a Hessian system was solved."""

    solver: str
    n_iter: int
    residual: float


def _null_weight(curv: Curvature) -> np.ndarray:
    """A weight per feature (bias last) for the null-space term.

    Any positive weights give the same solution. Each feature's null direction is
    weighted like that feature's own curvature, so that features (or a bias) of very
    different scales do not meet in one badly conditioned block: one weight for all
    left the bias of a saturated head 1e67 times weaker than its null term.
    """
    C, d = curv.n_classes, curv.n_features
    diag = curv.diagonal()
    mu = diag[: C * d].reshape(C, d).mean(axis=0)
    if curv.fit_intercept:
        mu = np.r_[mu, diag[C * d :].mean()]
    positive = mu[mu > 0]
    fill = float(positive.mean()) if positive.size else 1.0
    return np.where(mu > 0, mu, fill)


class _DenseFactor:
    """``A^{-1}`` of a symmetric positive semi-definite ``A``, exact on its range.

    The matrix is first scaled to a unit diagonal (features of any scale then give the
    same numbers), then factored by Cholesky. Where Cholesky finds it singular to
    working precision (curvature that underflowed in a saturated head), the inverse is
    the pseudo-inverse from the eigendecomposition: exact on the range of ``A``, zero on
    the directions it cannot resolve (where a gradient of the objective is zero too).
    """

    def __init__(self, A: np.ndarray) -> None:
        diag = np.diag(A).copy()
        self.scale = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
        As = A * self.scale[:, None] * self.scale[None, :]
        self.cho: tuple[np.ndarray, bool] | None = None
        self.eig: tuple[np.ndarray, np.ndarray] | None = None
        try:
            self.cho = scipy.linalg.cho_factor(As, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(As)
            cutoff = max(w.max(initial=0.0), 0.0) * A.shape[0] * np.finfo(np.float64).eps
            keep = w > cutoff
            self.eig = (V[:, keep], w[keep])

    @property
    def method(self) -> str:
        return "cholesky" if self.cho is not None else "eigh"

    def solve(self, g: np.ndarray) -> np.ndarray:
        b = self.scale * g
        if self.eig is None:  # Cholesky succeeded
            x = scipy.linalg.cho_solve(self.cho, b, check_finite=False)
        else:
            V, w = self.eig
            x = V @ ((V.T @ b) / w)
        return self.scale * x


class HessianSolver:
    """``(H + damping I)^{-1}`` applied to vectors, set up once and reused.

    Parameters
    ----------
    curv : Curvature
        The Hessian at the head's optimum.
    damping : float
        ``delta >= 0`` added to the diagonal.
    solver : {"auto", "cg", "cholesky"}
        ``"auto"`` takes Cholesky up to ``DENSE_MAX_PARAMS`` parameters, else CG.
    tol : float
        CG stops when ``||r|| <= tol * ||g||``.
    max_iter : int, optional
        CG iteration cap (default ``10 * n_params``).
    """

    def __init__(
        self,
        curv: Curvature,
        damping: float = 0.0,
        solver: str = "auto",
        tol: float = 1e-10,
        max_iter: int | None = None,
    ) -> None:
        if solver == "auto":
            solver = "cholesky" if curv.size <= DENSE_MAX_PARAMS else "cg"
        if solver not in ("cg", "cholesky"):
            raise ValueError(f"solver must be 'auto', 'cg' or 'cholesky'; got {solver!r}")
        self.curv, self.damping, self.solver = curv, damping, solver
        self.tol, self.max_iter = tol, max_iter or 10 * curv.size
        self.mu = _null_weight(curv)
        self._factor = None
        if solver == "cholesky":
            self._factor = _DenseFactor(curv.dense(shift=damping, null_weight=self.mu))

    def solve(self, g: np.ndarray) -> tuple[np.ndarray, SolveInfo]:
        """Solve for one right-hand side (its null-direction part is removed first)."""
        g = g - self.curv.null_projection(g)
        if self._factor is not None:
            s = self._factor.solve(g)
            r = self.curv.matvec(s, shift=self.damping, null_weight=self.mu) - g
            return s, SolveInfo(self._factor.method, 1, float(np.linalg.norm(r)))
        return _pcg(self.curv, g, self.damping, self.mu, self.tol, self.max_iter)


def solve_hessian_system(
    curv: Curvature,
    g: np.ndarray,
    damping: float = 0.0,
    solver: str = "auto",
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> tuple[np.ndarray, SolveInfo]:
    """Solve ``(H + damping I) s = g`` on the complement of the null directions.

    Parameters
    ----------
    curv : Curvature
        The Hessian at the head's optimum.
    g : ndarray of shape (n_params,)
        Right-hand side; its null-direction component is removed first.
    damping, solver, tol, max_iter
        As for :class:`HessianSolver`.

    Returns
    -------
    s : ndarray of shape (n_params,)
    info : SolveInfo
    """
    return HessianSolver(curv, damping, solver, tol, max_iter).solve(g)


def _pcg(
    curv: Curvature,
    g: np.ndarray,
    damping: float,
    mu: float | np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, SolveInfo]:
    """Jacobi-preconditioned conjugate gradients, starting from zero."""
    diag = curv.diagonal(shift=damping, null_weight=mu)
    # A zero diagonal entry is a direction without curvature (saturated head, no
    # ridge); the preconditioner leaves it alone rather than dividing by zero.
    inv_diag = 1.0 / np.where(diag > 0, diag, 1.0)
    s = np.zeros_like(g)
    r = g.copy()
    z = inv_diag * r
    p = z.copy()
    rz = float(r @ z)
    g_norm = float(np.linalg.norm(g))
    if g_norm == 0.0:
        return s, SolveInfo("cg", 0, 0.0)
    target = tol * g_norm
    it = 0
    r_norm = g_norm
    while it < max_iter:
        Hp = curv.matvec(p, shift=damping, null_weight=mu)
        pHp = float(p @ Hp)
        if not pHp > 0.0:
            # No curvature left along p: the rest of g lies outside the range of H.
            break
        alpha = rz / pHp
        s += alpha * p
        r -= alpha * Hp
        it += 1
        r_norm = float(np.linalg.norm(r))
        if r_norm <= target:
            break
        z = inv_diag * r
        rz_new = float(r @ z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return s, SolveInfo("cg", it, r_norm)
