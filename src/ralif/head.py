"""The linear softmax head fitted to the exact optimum that influence functions assume."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.optimize
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from ralif._params import (
    BOOLEAN,
    L2,
    Anything,
    Constraint,
    Integer,
    RandomState,
    Real,
    validate_params,
)
from ralif._softmax import Curvature, join_params, objective, predict_proba, split_params
from ralif._solve import DENSE_MAX_PARAMS, solve_hessian_system
from ralif._validation import RalifInputError, check_features, check_labels

DEFAULT_L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Candidate ridge strengths tried by ``l2="auto"``."""

FALLBACK_L2 = 1e-2
"""Ridge strength used by ``l2="auto"`` when the labeled set is too small to cross-validate."""

CV_TOL = 1e-4
"""Gradient norm at which the cross-validation fits of ``l2="auto"`` stop.

They only rank the grid's ridges by validation loss, which needs no Newton polishing
to ``tol``; the final fit is polished. On 60 labeled sets of digits and Fashion-MNIST
(60 to 1,100 items) the chosen ridge, and so the fitted head, was the same as with
polished folds, in a quarter of the time (``benchmarks/bench_main.py``).
"""


class LinearHead(BaseEstimator):
    """Multinomial logistic regression fitted to the optimum of a ridge objective.

    Minimizes ``(1/n) sum_i CE(x_i, y_i) + (l2/2) ||W||^2`` (the bias is not
    penalized) with L-BFGS, then polishes with Newton steps until the gradient norm is
    below ``tol``. Influence functions are only valid at an optimum; a few epochs of SGD
    are not enough, and a fit that stops at its iteration cap above ``tol`` says so with
    a :class:`sklearn.exceptions.ConvergenceWarning`.

    It is a scikit-learn estimator (``clone``, ``get_params``, ``set_params``) and the
    model that influence-based strategies need (see :mod:`ralif.classifier`).

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength. ``"auto"`` picks it on every fit from ``l2_grid`` by ``cv``-fold
        cross-validated log-loss on the labeled set; with too few labels per class to
        cross-validate, :data:`FALLBACK_L2` is used.
    fit_intercept : bool, default=True
        Whether to learn the (unpenalized) bias ``b``.
    tol : float, default=1e-8
        Target Euclidean norm of the objective's gradient at the returned optimum.
    max_iter : int, default=1000
        L-BFGS iteration cap.
    l2_grid : sequence of float, default=DEFAULT_L2_GRID
        Candidates for ``l2="auto"``.
    cv : int, default=3
        Number of folds for ``l2="auto"``.
    random_state : int, default=0
        Seed of the cross-validation folds.

    Attributes
    ----------
    classes_ : ndarray of shape (C,)
        Labels seen in ``fit``, sorted; column ``c`` of every probability matrix
        belongs to ``classes_[c]``.
    coef_ : ndarray of shape (C, d)
        ``W``.
    intercept_ : ndarray of shape (C,)
        ``b`` (zeros when ``fit_intercept=False``).
    l2_ : float
        The ridge strength used (the chosen one for ``"auto"``).
    n_samples_ : int
        Number of labeled items the head was fitted on (``n`` in the influence formulas).
    n_iter_ : int
        L-BFGS iterations plus Newton steps of the final fit.
    grad_norm_ : float
        Norm of the objective's gradient at ``coef_``, ``intercept_``.
    cv_log_loss_ : dict or None
        Mean validation log-loss per candidate ``l2`` (``"auto"`` only).

    Examples
    --------
    >>> import numpy as np
    >>> from ralif import LinearHead
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 3)); y = (X[:, 0] > 0).astype(int)
    >>> head = LinearHead(l2=0.1).fit(X, y)
    >>> head.predict_proba(X).shape
    (60, 2)
    >>> bool(head.grad_norm_ < 1e-8)
    True
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "l2": L2,
        "fit_intercept": BOOLEAN,
        "tol": Real(0.0, low_open=True),
        "max_iter": Integer(1),
        "l2_grid": Anything(),  # checked when used, by l2="auto"
        "cv": Integer(1),
        "random_state": RandomState(),
    }

    def __init__(
        self,
        l2: float | str = "auto",
        fit_intercept: bool = True,
        tol: float = 1e-8,
        max_iter: int = 1000,
        l2_grid: Sequence[float] = DEFAULT_L2_GRID,
        cv: int = 3,
        random_state: int = 0,
    ) -> None:
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.l2_grid = l2_grid
        self.cv = cv
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearHead:
        """Fit the head on labeled features.

        Parameters
        ----------
        X : array-like of shape (n, d)
            Features of the labeled items.
        y : array-like of shape (n,)
            Their integer class labels (no -1 here).

        Returns
        -------
        self : LinearHead
            The head, fitted (``coef_``, ``intercept_``, ``l2_``...).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
        >>> head = LinearHead(l2=0.1).fit(X, y)
        >>> head.classes_.tolist(), float(head.l2_)
        ([0, 1], 0.1)
        """
        validate_params(self)
        X = check_features(X, "X", min_rows=1)
        y = check_labels(y, X.shape[0])
        if (y < 0).any():
            raise RalifInputError("y passed to LinearHead.fit must not contain -1 (unlabeled)")
        classes = np.unique(y)
        if len(classes) < 2:
            raise RalifInputError(
                f"the head needs labels of at least two classes, got only {classes.tolist()}"
            )
        self.classes_ = classes
        Xf = np.asarray(X, dtype=np.float64)
        codes = np.searchsorted(self.classes_, y)
        Y = np.eye(len(self.classes_))[codes]
        self.cv_log_loss_ = None
        if isinstance(self.l2, str):
            self.l2_, self.cv_log_loss_ = self._choose_l2(Xf, codes, Y)
        else:
            self.l2_ = float(self.l2)
        theta, self.n_iter_ = self._minimize(Xf, Y, self.l2_, None)
        self._set_params(theta, Xf.shape[1])
        self.n_samples_ = Xf.shape[0]
        self.n_features_in_ = Xf.shape[1]
        self.grad_norm_ = float(
            np.linalg.norm(objective(theta, Xf, Y, self.l2_, self.fit_intercept)[1])
        )
        self._warn_if_not_converged()
        return self

    def _warn_if_not_converged(self) -> None:
        # Influence is a statement about the optimum; a head short of it gives numbers
        # that refitting would not reproduce, so the user must hear of it.
        if self.grad_norm_ > self.tol:
            warnings.warn(
                f"LinearHead stopped after {self.n_iter_} iterations with gradient norm "
                f"{self.grad_norm_:.2g} > tol={self.tol:g}: not at the optimum that influence "
                "assumes; raise max_iter or l2, or standardize the features",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _set_params(self, theta: np.ndarray, d: int) -> None:
        W, b = split_params(theta, len(self.classes_), d, self.fit_intercept)
        self.coef_ = W.copy()
        self.intercept_ = b.copy() if b is not None else np.zeros(len(self.classes_))

    def _minimize(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        l2: float,
        init: np.ndarray | None,
        rough: bool = False,
    ) -> tuple[np.ndarray, int]:
        """L-BFGS to a small gradient, then Newton polishing to ``self.tol``.

        ``rough`` stops at L-BFGS's gradient norm :data:`CV_TOL` (for the folds of the
        cross-validation), without polishing.
        """
        C, d = Y.shape[1], X.shape[1]
        size = C * (d + int(self.fit_intercept))
        theta0 = np.zeros(size) if init is None else init
        fit_b = self.fit_intercept
        # L-BFGS-B's own vector updates call BLAS on tiny vectors; with several BLAS
        # threads their start-up cost dominates (measured: 6x slower on two cores).
        with threadpool_limits(limits=1, user_api="blas"):
            res = scipy.optimize.minimize(
                objective,
                theta0,
                args=(X, Y, l2, fit_b),
                jac=True,
                method="L-BFGS-B",
                options={
                    "maxiter": self.max_iter,
                    "gtol": max(CV_TOL, self.tol * 10) if rough else self.tol * 10,
                    "ftol": 1e-15,
                    "maxcor": 20,
                },
            )
        theta = res.x
        n_iter = int(res.nit)
        for _ in range(0 if rough else 20):
            value, grad = objective(theta, X, Y, l2, fit_b)
            if np.linalg.norm(grad) <= self.tol:
                break
            W, b = split_params(theta, C, d, fit_b)
            curv = Curvature(X, predict_proba(X, W, b), l2, fit_b)
            step, info = solve_hessian_system(curv, grad, solver="cg", tol=1e-3, max_iter=200)
            if info.residual > 1e-3 * np.linalg.norm(grad) and curv.size <= DENSE_MAX_PARAMS:
                # CG stalls on a nearly saturated head (features of a large scale): its
                # bias has almost no curvature beside a ridged W. The dense solve does
                # not care how the spectrum is spread.
                step, _ = solve_hessian_system(curv, grad, solver="cholesky")
            # Backtracking keeps Newton safe when L-BFGS stopped far from the optimum.
            t = 1.0
            while t > 1e-6:
                cand = theta - t * step
                if objective(cand, X, Y, l2, fit_b)[0] <= value:
                    break
                t *= 0.5
            else:
                break
            theta = cand
            n_iter += 1
        return theta, n_iter

    def _choose_l2(
        self, X: np.ndarray, codes: np.ndarray, Y: np.ndarray
    ) -> tuple[float, dict[float, float] | None]:
        """Pick ``l2`` from the grid by cross-validated log-loss."""
        folds = _cv_folds(codes, self.cv, self.random_state)
        grid = sorted((float(v) for v in self.l2_grid), reverse=True)
        if not grid or any(not v >= 0 for v in grid):
            raise RalifInputError(f"l2_grid must hold non-negative numbers; got {self.l2_grid!r}")
        if folds is None:
            return FALLBACK_L2, None
        losses = {v: 0.0 for v in grid}
        for k in range(folds.max() + 1):
            train, val = folds != k, folds == k
            theta = None
            # From strong to weak ridge, each fit starting at the previous optimum.
            for v in grid:
                theta, _ = self._minimize(X[train], Y[train], v, theta, rough=True)
                W, b = split_params(theta, Y.shape[1], X.shape[1], self.fit_intercept)
                p = predict_proba(X[val], W, b)
                losses[v] += -np.log(np.maximum((p * Y[val]).sum(axis=1), 1e-300)).sum()
        n_val = int((folds >= 0).sum())
        losses = {v: s / n_val for v, s in losses.items()}
        best = min(grid, key=lambda v: (losses[v], -v))
        return best, losses

    # ---------------------------------------------------------------- predicting
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return the class probabilities, columns ordered as ``classes_``.

        Computed in the dtype of ``X`` (float32 features stay float32).

        Parameters
        ----------
        X : array-like of shape (n, d)
            Features.

        Returns
        -------
        ndarray of shape (n, n_classes)
            Each row sums to 1.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
        >>> head = LinearHead(l2=0.1).fit(X, y)
        >>> head.predict_proba(np.array([[0.0], [4.0]])).argmax(axis=1).tolist()
        [0, 1]
        """
        self._check_fitted()
        X = check_features(X, "X")
        self._check_width(X)
        return predict_proba(X, self.coef_, self.intercept_ if self.fit_intercept else None)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the most probable class label for each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n, d)
            Features.

        Returns
        -------
        ndarray of shape (n,)
            Labels from ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
        >>> head = LinearHead(l2=0.1).fit(X, y)
        >>> head.predict(np.array([[0.5], [3.5]])).tolist()
        [0, 1]
        """
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def curvature(self, X: np.ndarray) -> Curvature:
        """Return the Hessian of the objective at the fitted optimum, over features ``X``.

        Parameters
        ----------
        X : array-like of shape (n, d)
            The labeled features the head was fitted on.

        Returns
        -------
        Curvature
            Products with the Hessian, its diagonal, or the whole matrix (:mod:`ralif._softmax`).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
        >>> head = LinearHead(l2=0.1).fit(X, y)
        >>> head.curvature(X).dense().shape  # (C (d + 1)) squared: 2 classes, 1 feature
        (4, 4)
        """
        self._check_fitted()
        Xf = np.asarray(X, dtype=np.float64)
        self._check_width(Xf)
        b = self.intercept_ if self.fit_intercept else None
        return Curvature(Xf, predict_proba(Xf, self.coef_, b), self.l2_, self.fit_intercept)

    @property
    def params_(self) -> np.ndarray:
        """``[W.ravel(), b]`` as one flat vector (``b`` left out without an intercept).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
        >>> head = LinearHead(l2=0.1).fit(X, y)
        >>> head.params_.shape
        (4,)
        """
        self._check_fitted()
        return join_params(self.coef_, self.intercept_ if self.fit_intercept else None)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RalifInputError("this LinearHead is not fitted yet; call fit(X, y) first")

    def _check_width(self, X: np.ndarray) -> None:
        if X.shape[1] != self.coef_.shape[1]:
            raise RalifInputError(
                f"X has {X.shape[1]} features but the head was fitted on {self.coef_.shape[1]}"
            )

    # -------------------------------------------------------------- conversions
    @classmethod
    def from_sklearn(cls, estimator: Any, X: np.ndarray, y: np.ndarray) -> LinearHead:
        """Convert a fitted scikit-learn ``LogisticRegression`` into a ``LinearHead``.

        scikit-learn minimizes ``(1/2)||w||^2 + C sum_i CE_i``; dividing by ``n C`` gives
        this head's objective with ``l2 = 1/(n C)`` (``2/(n C)`` for a binary model,
        whose single weight vector ``w`` becomes the symmetric pair ``(-w/2, w/2)``). The
        head is then polished to the exact optimum, starting from the estimator's
        coefficients, since scikit-learn stops at a looser tolerance.

        Parameters
        ----------
        estimator : sklearn.linear_model.LogisticRegression
            Fitted, l2-penalized (or unpenalized), multinomial, without class weights.
        X, y : array-like
            The labeled data it was fitted on.

        Returns
        -------
        LinearHead
            Fitted to the same objective's exact optimum.

        Examples
        --------
        >>> import numpy as np; from sklearn.linear_model import LogisticRegression
        >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 1, 2, 2])
        >>> clf = LogisticRegression(C=2.5).fit(X, y)
        >>> float(LinearHead.from_sklearn(clf, X, y).l2_)  # 1 / (n C)
        0.1
        """
        X = check_features(X, "X", min_rows=1)
        y = check_labels(y, X.shape[0])
        for attr in ("coef_", "intercept_", "classes_", "C"):
            if not hasattr(estimator, attr):
                raise RalifInputError(
                    f"expected a fitted sklearn LogisticRegression; {type(estimator).__name__} "
                    f"has no attribute {attr}"
                )
        penalty = getattr(estimator, "penalty", "l2")
        l1_ratio = getattr(estimator, "l1_ratio", None) or 0.0
        if penalty not in ("l2", "deprecated", None, "none") or l1_ratio != 0:
            raise RalifInputError(
                f"only l2-penalized LogisticRegression is supported (penalty={penalty!r}, l1_ratio={l1_ratio})"
            )
        if getattr(estimator, "class_weight", None) is not None:
            raise RalifInputError("LogisticRegression with class_weight is not supported")
        if getattr(estimator, "multi_class", "auto") == "ovr" or (
            getattr(estimator, "solver", "lbfgs") == "liblinear" and len(estimator.classes_) > 2
        ):
            raise RalifInputError(
                "one-vs-rest LogisticRegression is not supported; use a multinomial solver"
            )
        if not np.array_equal(np.unique(y), np.asarray(estimator.classes_)):
            raise RalifInputError("y does not hold the classes the estimator was fitted on")
        n = X.shape[0]
        Cinv = (
            0.0 if penalty in (None, "none") or not np.isfinite(estimator.C) else 1.0 / estimator.C
        )
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        icpt = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        if coef.shape[0] == 1:
            coef = np.vstack([-coef / 2, coef / 2])
            icpt = np.r_[-icpt / 2, icpt / 2]
            l2 = 2.0 * Cinv / n
        else:
            l2 = Cinv / n
        fit_b = bool(getattr(estimator, "fit_intercept", True))
        head = cls(l2=l2, fit_intercept=fit_b)
        head.classes_ = np.asarray(estimator.classes_)
        head.l2_ = l2
        head.cv_log_loss_ = None
        Xf = np.asarray(X, dtype=np.float64)
        codes = np.searchsorted(head.classes_, y)
        Y = np.eye(len(head.classes_))[codes]
        theta, head.n_iter_ = head._minimize(Xf, Y, l2, join_params(coef, icpt if fit_b else None))
        head._set_params(theta, Xf.shape[1])
        head.n_samples_ = n
        head.n_features_in_ = Xf.shape[1]
        head.grad_norm_ = float(np.linalg.norm(objective(theta, Xf, Y, l2, fit_b)[1]))
        head._warn_if_not_converged()
        return head


def _cv_folds(codes: np.ndarray, n_folds: int, seed: int) -> np.ndarray | None:
    """Stratified fold ids; items of classes too rare to split get -1 (always trained on).

    Returns None when no class has at least ``n_folds`` items, or fewer than two
    classes could be validated.
    """
    counts = np.bincount(codes)
    splittable = counts >= n_folds
    if n_folds < 2 or splittable.sum() < 2:
        return None
    rng = np.random.default_rng(seed)
    folds = np.full(len(codes), -1)
    for c in np.flatnonzero(splittable):
        idx = rng.permutation(np.flatnonzero(codes == c))
        folds[idx] = np.arange(len(idx)) % n_folds
    return folds
