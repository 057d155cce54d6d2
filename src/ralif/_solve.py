"""Solving ``(H + damping I) s = g`` for the head's Hessian.

Two exact routes: a dense Cholesky factorisation for small heads, and preconditioned
conjugate gradients with exact Hessian-vector products for the rest. Both add the
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


def _null_weight(curv: Curvature) -> float:
    # Scale the null-space term like the rest of the spectrum so CG's conditioning
    # does not suffer; any positive value gives the same solution.
    return float(curv.diagonal().mean())


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
            H = curv.dense(shift=damping, null_weight=self.mu)
            self._factor = scipy.linalg.cho_factor(
                H, lower=True, overwrite_a=True, check_finite=False
            )

    def solve(self, g: np.ndarray) -> tuple[np.ndarray, SolveInfo]:
        """Solve for one right-hand side (its null-direction part is removed first)."""
        g = g - self.curv.null_projection(g)
        if self._factor is not None:
            s = scipy.linalg.cho_solve(self._factor, g, check_finite=False)
            r = self.curv.matvec(s, shift=self.damping, null_weight=self.mu) - g
            return s, SolveInfo("cholesky", 1, float(np.linalg.norm(r)))
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
    curv: Curvature, g: np.ndarray, damping: float, mu: float, tol: float, max_iter: int
) -> tuple[np.ndarray, SolveInfo]:
    """Jacobi-preconditioned conjugate gradients, starting from zero."""
    inv_diag = 1.0 / curv.diagonal(shift=damping, null_weight=mu)
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
        alpha = rz / float(p @ Hp)
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
