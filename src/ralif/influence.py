"""Influence of labeling a pool item on the model's loss over the target set.

Adding ``(z, y)`` to the labeled set moves the head's optimum by about
``-(1/n) H^{-1} grad l(z, y)`` (Koh & Liang, 2017), so the mean target loss changes by

    Delta(z, y) = -(1/n) grad l(z, y)^T s,    s = H^{-1} grad L_T(theta).

For the softmax-linear head ``grad l(z, y) = (p(z) - e_y) [phi(z), 1]^T``; writing
``s = (S_W, s_b)`` and ``a(z) = S_W phi(z) + s_b`` gives
``Delta(z, y) = -(1/n) (p(z)^T a(z) - a_y(z))``: the whole pool-by-class matrix is one
matrix product over the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ralif._params import BOOLEAN, Constraint, Options, Real, validate_params
from ralif._softmax import Curvature, complement, join_params, split_params
from ralif._solve import SolveInfo, solve_hessian_system
from ralif._validation import (
    RalifInputError,
    check_features,
    check_labels,
)
from ralif.head import LinearHead
from ralif.pools.devices import block_device
from ralif.pools.query import BlockRunner
from ralif.pools.sources import ArrayPool
from ralif.scores import margin

TARGETS = ("pool", "all", "labeled", "entropy")
WEIGHTINGS = ("none", "confidence", "balanced")
SOLVERS = ("auto", "cg", "cholesky")

_BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class InfluenceSettings:
    """How influence is computed, checked once when built.

    Attributes
    ----------
    target : {"pool", "all", "labeled", "entropy"}, default="pool"
        The loss whose change is predicted: the pool's mean cross-entropy under the
        head's pseudo labels, the same over labeled plus pool, the labeled items' (true
        labels, as in ISAL), or the pool's expected log-loss under the head's own
        predictive distribution.
    damping : float, default=0.0
        ``delta`` in ``(H + delta I)^{-1}``; 0 is the exact influence.
    solver : {"auto", "cg", "cholesky"}, default="auto"
        How the Hessian system is solved.
    rescale_ridge : bool, default=False
        Add the constant shift from the ridge being rescaled by ``(n+1)/n`` when the mean
        is refitted over one more item.
    weighting : {"none", "confidence", "balanced"}, default="none"
        Weight of each pool item's loss in the target: none, the head's confidence, or
        the inverse frequency of the item's pseudo class (every predicted class then
        weighs the same).
    tol : float, default=1e-10
        Relative residual at which conjugate gradients stop.
    """

    target: str = "pool"
    damping: float = 0.0
    solver: str = "auto"
    rescale_ridge: bool = False
    weighting: str = "none"
    tol: float = 1e-10

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "target": Options(*TARGETS),
        "damping": Real(0.0),
        "solver": Options(*SOLVERS),
        "rescale_ridge": BOOLEAN,
        "weighting": Options(*WEIGHTINGS),
        "tol": Real(0.0, 1.0, low_open=True),
    }

    def __post_init__(self) -> None:
        validate_params(self)  # the constraints every estimator's parameters go through
        object.__setattr__(self, "damping", float(self.damping))
        object.__setattr__(self, "tol", float(self.tol))
        object.__setattr__(self, "rescale_ridge", bool(self.rescale_ridge))


@dataclass
class PoolInfluence:
    """Everything one influence computation learns about the pool.

    Attributes
    ----------
    delta : ndarray of shape (n_pool, C)
        Predicted change of the mean target loss if (item, class) were labeled.
    proba : ndarray of shape (n_pool, C)
        The head's probabilities on the pool.
    target_loss : float
        Mean cross-entropy over the target set (pseudo labels on the pool).
    s : ndarray of shape (n_params,)
        ``(H + damping I)^{-1} grad L_T``.
    solve : SolveInfo
        How ``s`` was obtained.
    """

    delta: np.ndarray
    proba: np.ndarray
    target_loss: float
    s: np.ndarray
    solve: SolveInfo | None


def row_blocks(X: np.ndarray, rows: np.ndarray | None) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(out_slice, block)`` over ``X[rows]`` a few MB at a time.

    With ``rows=None`` the blocks are views of ``X``; otherwise each block is a small
    gathered copy, so the pool is never copied whole.
    """
    n = X.shape[0] if rows is None else len(rows)
    step = max(1, _BLOCK_BYTES // max(1, X.shape[1] * X.itemsize))
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        yield sl, (X[sl] if rows is None else X[rows[sl]])


def class_balance_weights(counts: np.ndarray) -> np.ndarray:
    """Per pseudo class, the weight that makes every predicted class count the same.

    ``N / (K n_c)`` for a class of ``n_c`` items among ``N`` in ``K`` non-empty classes
    (0 for empty ones), so the weights of all items still sum to ``N``. Shared by the
    in-memory and the streamed query.
    """
    counts = np.asarray(counts, dtype=np.float64)
    w = np.zeros_like(counts)
    present = counts > 0
    w[present] = (counts.sum() / np.count_nonzero(present)) / counts[present]
    return w


def target_sums_block(
    block: np.ndarray,
    device: str,
    W: np.ndarray,
    b: np.ndarray | None,
    settings: InfluenceSettings,
) -> tuple[dict, dict]:
    """Pass 1 of an influence query over one block of pool rows.

    Per item: the head's probabilities' top-2 ``margin``; summed: the target loss and its gradient (``gW``, ``gb``) and the
    target's total weight. Class-balanced weights (``weighting="balanced"``) are known
    only after the pass, so the sums are then kept per pseudo class (with ``counts``)
    and weighed by :func:`target_sums`.

    Returns
    -------
    (dict, dict)
        Per-item arrays and sums, as :meth:`ralif.pools.query.PoolQuery.map` joins them.
    """
    dev = block_device(device)
    P = dev.proba(block, W, b)
    n, C = P.shape
    per_item = {"margin": margin(P)}
    item_loss, G = target_terms(P, expected=settings.target == "entropy")
    if settings.weighting == "balanced":
        top = P.argmax(axis=1)
        gW = np.zeros((C, C, block.shape[1]))
        gb = np.zeros((C, C))
        loss = np.zeros(C)
        for c in np.unique(top):
            m = top == c
            gW[c] = dev.gradient(G[m], block[m])
            gb[c] = G[m].sum(axis=0)
            loss[c] = item_loss[m].sum()
        counts = np.bincount(top, minlength=C).astype(np.float64)
        return per_item, {"gW": gW, "gb": gb, "loss": loss, "counts": counts}
    weight = float(n)
    if settings.weighting == "confidence":
        p_top = P.max(axis=1)
        item_loss = item_loss * p_top
        G *= p_top[:, None]
        weight = float(p_top.sum())
    return per_item, {
        "gW": dev.gradient(G, block),
        "gb": G.sum(axis=0),
        "loss": float(item_loss.sum()),
        "weight": weight,
    }


def target_sums(
    sums: dict, settings: InfluenceSettings
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(gW, gb, loss, total weight)`` of the pool's target from pass 1's sums
    (:func:`target_sums_block`), the class-balanced weights applied where asked."""
    if settings.weighting != "balanced":
        return sums["gW"], sums["gb"], float(sums["loss"]), float(sums["weight"])
    w = class_balance_weights(sums["counts"])
    gW = np.tensordot(w, sums["gW"], axes=1)
    return gW, w @ sums["gb"], float(w @ sums["loss"]), float(w @ sums["counts"])


def delta_block(P: np.ndarray, A: np.ndarray, n: int, shift: float) -> np.ndarray:
    """Pass 2 for a block: every (item, class) influence from the probabilities ``P``
    and the products ``A = X S_W^T + s_b``: ``-(1/n) (p - e_y)^T a`` for every class
    ``y`` at once, less the ridge-rescaling ``shift``."""
    delta = _centered(A, P) / n
    if shift:
        delta -= shift
    return delta


def scores_block(
    block: np.ndarray,
    device: str,
    W: np.ndarray,
    b: np.ndarray | None,
    S_W: np.ndarray,
    s_b: np.ndarray | None,
    n: int,
    shift: float,
    target_loss: float,
    score: Callable[[PoolInfluence], np.ndarray],
) -> tuple[dict, dict]:
    """Pass 2 of an influence query over one block: each item's ``score`` of its row of
    influence (a callable of a :class:`PoolInfluence` over the block)."""
    rows, _ = influence_block(block, device, W, b, S_W, s_b, n, shift)
    infl = PoolInfluence(rows["delta"], rows["proba"], target_loss, np.empty(0), None)
    return {"score": score(infl)}, {}


def influence_block(
    block: np.ndarray,
    device: str,
    W: np.ndarray,
    b: np.ndarray | None,
    S_W: np.ndarray,
    s_b: np.ndarray | None,
    n: int,
    shift: float,
) -> tuple[dict, dict]:
    """Pass 2 over one block: every (item, class) influence, with the probabilities
    (``delta``, ``proba``), from one product of the block with ``[W; S_W]``."""
    P, A = block_device(device).proba_and_product(block, W, b, S_W)
    if s_b is not None:
        A += s_b
    return {"delta": delta_block(P, A, n, shift), "proba": P}, {}


def ridge_shift(head: LinearHead, S_W: np.ndarray, n: int, settings: InfluenceSettings) -> float:
    """The constant shift of every influence when refitting over ``n + 1`` items also
    rescales the ridge by ``(n+1)/n`` (``settings.rescale_ridge``; else 0)."""
    if not settings.rescale_ridge:
        return 0.0
    return head.l2_ * float((head.coef_ * S_W).sum()) / n


def target_terms(P: np.ndarray, expected: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each pool item's target loss and its gradient with respect to the logits.

    The pseudo-label cross-entropy ``-log p_top`` with gradient ``p - e_top`` (``p_top -
    1`` computed as minus the other classes' mass, exact where the head is sure), or with
    ``expected`` the predictive entropy ``H`` with gradient ``-p (log p + H)``. Row-wise,
    so the in-memory and the streamed queries (:mod:`ralif.pools.streaming`) share it.
    """
    if expected:
        logP = np.log(np.maximum(P, 1e-300))
        H = -(P * logP).sum(axis=1)
        return H, -P * (logP + H[:, None])
    idx = np.arange(len(P))
    top = P.argmax(axis=1)
    G = P.copy()
    G[idx, top] = -complement(P)[idx, top]
    return -np.log(np.maximum(P[idx, top], 1e-300)), G


def _labeled_loss_and_gradient(
    curv: Curvature, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Summed cross-entropy and its gradient over the labeled items (true labels)."""
    P = curv.P.copy()
    idx = np.arange(len(codes))
    loss = -np.log(np.maximum(P[idx, codes], 1e-300)).sum()
    P[idx, codes] = -complement(P)[idx, codes]
    return P.T @ curv.X, P.sum(axis=0), float(loss)


def _centered(A: np.ndarray, P: np.ndarray) -> np.ndarray:
    """``a_y - p^T a`` for every class ``y``.

    For a row's dominant class (``p_t > 1/2``) it is ``sum_k p_k (a_t - a_k)``: the plain
    difference cancels there to rounding noise when the head is almost certain, and
    that column is the pseudo label's, which every score reads.
    """
    out = A - (P * A).sum(axis=1, keepdims=True)
    top = P.argmax(axis=1)
    rows = np.flatnonzero(P[np.arange(P.shape[0]), top] > 0.5)
    if len(rows):
        t = top[rows]
        Ar = A[rows]
        At = Ar[np.arange(len(rows)), t]
        out[rows, t] = (P[rows] * (At[:, None] - Ar)).sum(axis=1)
    return out


def solve_target_direction(
    head: LinearHead,
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    gW: np.ndarray,
    gb: np.ndarray,
    loss: float,
    n_target: float,
    settings: InfluenceSettings,
) -> tuple[np.ndarray, SolveInfo, float, float]:
    """``s = (H + damping I)^{-1} grad L_T`` from the pool's target sums.

    The labeled items join the target (``"all"``) or replace it (``"labeled"``) with
    their true labels. Shared by the in-memory and the streamed query.

    Returns
    -------
    s, info, loss, n_target
        The solution, how it was obtained, and the target's summed loss and weight.
    """
    n = X_labeled.shape[0]
    curv = head.curvature(X_labeled)
    if settings.target in ("all", "labeled"):
        codes = np.searchsorted(head.classes_, y_labeled)
        lW, lb, lloss = _labeled_loss_and_gradient(curv, codes)
        if settings.target == "labeled":
            gW, gb, loss, n_target = lW, lb, lloss, n
        else:
            gW, gb, loss, n_target = gW + lW, gb + lb, loss + lloss, n_target + n
    g = join_params(gW / n_target, gb / n_target if head.fit_intercept else None)
    s, info = solve_hessian_system(
        curv, g, damping=settings.damping, solver=settings.solver, tol=settings.tol
    )
    return s, info, float(loss), float(n_target)


def pool_influence(
    head: LinearHead,
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    X: np.ndarray,
    rows: np.ndarray | None = None,
    settings: InfluenceSettings = InfluenceSettings(),
) -> PoolInfluence:
    """Influence of every (pool item, class) pair; inputs are trusted (see :func:`influence_matrix`).

    ``X[rows]`` is the pool (``rows=None``: all of ``X``); it is read in blocks, twice.
    ``settings.weighting="confidence"`` weights each pool item's pseudo-label loss by
    the head's confidence in it (a weighted mean), so that doubtful pseudo labels count
    less; ``"balanced"`` weights it by the inverse frequency of its pseudo class.
    ``target="entropy"`` predicts the change of the pool's expected log-loss under the
    head's own predictive distribution (an expected-error-reduction target, Roy &
    McCallum 2001) instead of the pseudo-label loss.
    """
    n = X_labeled.shape[0]
    W, b = head.coef_, head.intercept_ if head.fit_intercept else None
    pool = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.intp)
    if np.any(np.diff(pool) <= 0):
        raise RalifInputError("the pool's rows must be distinct and ascending")
    # The two passes are the block maps of every query (ralif.pools.query), over X here.
    source = ArrayPool(X)
    runner = BlockRunner(source, pool, source.block_rows_for(), trusted=True)
    _, sums = runner.run(target_sums_block, "cpu", W, b, settings)
    gW, gb, loss, n_target = target_sums(sums, settings)
    s, info, loss, n_target = solve_target_direction(
        head, X_labeled, y_labeled, gW, gb, loss, n_target, settings
    )
    S_W, s_b = split_params(s, len(head.classes_), X.shape[1], head.fit_intercept)
    shift = ridge_shift(head, S_W, n, settings)
    per_item, _ = runner.run(influence_block, "cpu", W, b, S_W, s_b, n, shift)
    return PoolInfluence(per_item["delta"], per_item["proba"], loss / n_target, s, info)


def influence_matrix(
    head: LinearHead,
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    X_pool: np.ndarray,
    *,
    target: str = "pool",
    damping: float = 0.0,
    solver: str = "auto",
    rescale_ridge: bool = False,
) -> np.ndarray:
    """Predicted change of the mean target loss when each (pool item, class) is labeled.

    Parameters
    ----------
    head : LinearHead
        Fitted on ``(X_labeled, y_labeled)``.
    X_labeled : array-like of shape (n, d)
        Features of the labeled items.
    y_labeled : array-like of shape (n,)
        Their labels.
    X_pool : array-like of shape (N, d)
        Features of the unlabeled pool (float32 stays float32).
    target : {"pool", "all", "labeled"}, default="pool"
        The set whose mean cross-entropy is predicted: the pool with the head's pseudo
        labels, the labeled items (true labels) together with the pool, or the labeled
        items alone (as in ISAL).
    damping : float, default=0.0
        ``delta`` in ``(H + delta I)^{-1}``. 0 is the exact influence; 0.25 reproduces
        the ranking of the original authors' LiSSA settings (damping 0.01, scale 25,
        which converge to ``25 (H + 0.25 I)^{-1} g``).
    solver : {"auto", "cg", "cholesky"}, default="auto"
        How to solve for ``s``: dense Cholesky for small heads, else conjugate gradients
        with exact Hessian-vector products.
    rescale_ridge : bool, default=False
        Add the constant shift from the ridge term being rescaled by ``(n+1)/n`` when the
        mean is refitted over one more item (changes no ranking within a column).

    Returns
    -------
    delta : ndarray of shape (N, C)
        Column ``c`` is for label ``head.classes_[c]``; negative values are predicted
        loss drops.

    References
    ----------
    Koh & Liang, "Understanding Black-box Predictions via Influence Functions", ICML 2017.
    Xia & Henao, "Reliable Active Learning via Influence Functions", TMLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif import LinearHead, influence_matrix
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(80, 4)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> head = LinearHead(l2=0.1).fit(X[:20], y[:20])
    >>> influence_matrix(head, X[:20], y[:20], X[20:]).shape
    (60, 2)
    """
    head._check_fitted()
    X_labeled = check_features(X_labeled, "X_labeled", min_rows=1)
    y_labeled = check_labels(y_labeled, X_labeled.shape[0], "y_labeled")
    X_pool = check_features(X_pool, "X_pool", min_rows=1)
    for name, arr in (("X_labeled", X_labeled), ("X_pool", X_pool)):
        if arr.shape[1] != head.coef_.shape[1]:
            raise RalifInputError(
                f"{name} has {arr.shape[1]} features but the head was fitted on {head.coef_.shape[1]}"
            )
    unknown = np.setdiff1d(y_labeled, head.classes_)
    if len(unknown):
        raise RalifInputError(f"y_labeled holds classes the head does not know: {unknown.tolist()}")
    settings = InfluenceSettings(
        target=target, damping=damping, solver=solver, rescale_ridge=rescale_ridge
    )
    return pool_influence(head, X_labeled, y_labeled, X_pool, None, settings).delta
