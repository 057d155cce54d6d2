"""Selectors: scores or features in, indices out."""

from __future__ import annotations

import math

import numpy as np

from ralif._validation import RalifInputError, check_random_state

_DISTANCE_BLOCK_ENTRIES = 1 << 20


def top_k(scores: np.ndarray, k: int, largest: bool = True) -> np.ndarray:
    """Return the indices of the ``k`` best scores, best first; ties go to the lower index.

    Parameters
    ----------
    scores : ndarray of shape (N,)
        One score per item.
    k : int
        How many, ``0 <= k <= N``.
    largest : bool, default=True
        Whether larger scores are better.

    Returns
    -------
    indices : ndarray of shape (k,)
        Positions in ``scores``, the best first.

    Examples
    --------
    >>> import numpy as np
    >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist()
    [1, 3]
    """
    scores = np.asarray(scores)
    if not 0 <= k <= len(scores):
        raise RalifInputError(f"k must be in [0, {len(scores)}], got {k}")
    key = -scores if largest else scores
    if k == 0:
        return np.empty(0, dtype=np.intp)
    if k < len(scores):
        # Keep everything tied with the k-th score, then break ties by index.
        kth = np.partition(key, k - 1)[k - 1]
        part = np.flatnonzero(key <= kth)
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, key[part]))][:k]


def candidate_set(scores: np.ndarray, fraction: float, budget: int) -> np.ndarray:
    """The ``max(budget, ceil(fraction * N))`` items with the lowest scores, best first.

    Parameters
    ----------
    scores : ndarray of shape (N,)
        Lower is better (e.g. a predicted loss change).
    fraction : float
        ``rho`` in (0, 1].
    budget : int
        The candidate set is never smaller than this.

    Returns
    -------
    indices : ndarray
        Positions in ``scores`` of the candidates, the best first.

    Examples
    --------
    >>> import numpy as np
    >>> candidate_set(np.array([0.3, -0.2, 0.1, -0.5]), 0.5, budget=1).tolist()
    [3, 1]
    """
    n = len(scores)
    m = min(n, max(budget, math.ceil(fraction * n - 1e-9)))
    return top_k(scores, m, largest=False)


def candidate_share(n_candidates: int | float | None, budget: int, n_pool: int) -> float:
    """The share of the pool a candidate-set size stands for (see ``RALIF``).

    Parameters
    ----------
    n_candidates : int, float or None
        A count (int), a share of the pool (float in (0, 1]), or None: twice the budget.
    budget : int
        Items to pick.
    n_pool : int
        Items in the pool.

    Returns
    -------
    float
        In (0, 1]; the candidate set takes ``max(budget, ceil(share * n_pool))`` items.

    Examples
    --------
    >>> candidate_share(None, 10, 1000), candidate_share(50, 10, 1000), candidate_share(0.1, 10, 1000)
    (0.02, 0.05, 0.1)
    """
    if n_candidates is None:
        return min(1.0, 2.0 * budget / n_pool)
    if isinstance(n_candidates, float):
        return n_candidates
    return min(1.0, int(n_candidates) / n_pool)


def uncertain_candidate_set(
    scores: np.ndarray, margins: np.ndarray, fraction: float, budget: int
) -> np.ndarray:
    """The best ``fraction`` by score among the ``2 * fraction`` smallest margins.

    RALIF's default candidate rule: only the most uncertain items (by the top-2
    probability gap) compete on influence, which on its own favours high-leverage
    outliers. Never fewer than ``budget`` items; best first.

    Parameters
    ----------
    scores : ndarray of shape (N,)
        Lower is better.
    margins : ndarray of shape (N,)
        Top-2 probability gaps (lower = more uncertain).
    fraction : float
        ``rho`` in (0, 1].
    budget : int
        The candidate set is never smaller than this.

    Returns
    -------
    indices : ndarray
        Positions in ``scores`` of the candidates, the best first.

    Examples
    --------
    >>> import numpy as np
    >>> scores, margins = np.array([0.3, -0.2, 0.1, -0.5]), np.array([0.1, 0.9, 0.2, 0.8])
    >>> uncertain_candidate_set(scores, margins, 0.25, budget=1).tolist()
    [2]
    """
    uncertain = candidate_set(margins, min(1.0, 2 * fraction), budget)
    ranked = np.full(len(scores), np.inf)
    ranked[uncertain] = scores[uncertain]
    return candidate_set(ranked, fraction, budget)


def min_sq_distances(X: np.ndarray, Y: np.ndarray, x_sq: np.ndarray | None = None) -> np.ndarray:
    """``min_j ||x_i - y_j||^2`` for every row of ``X``, in blocks of ``Y`` (never |X| x |Y|).

    ``x_sq``, the squared row norms of ``X``, may be passed when already computed.
    """
    out = np.full(X.shape[0], np.inf, dtype=np.float64)
    if Y.shape[0] == 0:
        return out
    if x_sq is None:
        x_sq = _sq_norms(X)
    step = max(1, _DISTANCE_BLOCK_ENTRIES // max(1, X.shape[0]))
    for start in range(0, Y.shape[0], step):
        block = np.asarray(Y[start : start + step], dtype=X.dtype)
        y_sq = _sq_norms(block)
        G = X @ block.T
        G *= -2.0
        G += y_sq.astype(G.dtype)
        np.minimum(out, G.min(axis=1) + x_sq, out=out)
    return np.maximum(out, 0.0, out=out)


def kmeans_pp_select(
    X: np.ndarray,
    n_select: int,
    *,
    first: int | None = None,
    X_reference: np.ndarray | None = None,
    random_state: object = None,
) -> np.ndarray:
    """Pick ``n_select`` rows by k-means++ seeding, each with probability in ``D^2``.

    ``D^2(x)`` is the squared distance from ``x`` to the nearest of the reference points
    (e.g. the labeled items) and the picks so far. It is updated incrementally, never
    recomputed: a batch of picks at a time, with one matrix product (see
    :func:`_d2_sampling` for how each draw stays exact in between).

    Parameters
    ----------
    X : ndarray of shape (M, d)
        Points to choose from.
    n_select : int
        How many to choose, ``1 <= n_select <= M``.
    first : int, optional
        Index of the first pick (RALIF: the best candidate). By default it is drawn
        like the others (uniformly when there are no reference points).
    X_reference : ndarray of shape (R, d), optional
        Points already chosen (the labeled set); ``D^2`` starts from them.
    random_state : None, int or Generator
        Seed of the draws.

    Returns
    -------
    indices : ndarray of shape (n_select,)
        Distinct row indices into ``X``, in the order picked.

    References
    ----------
    Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> picks = kmeans_pp_select(X, 2, first=0, random_state=0)
    >>> sorted(int(i >= 2) for i in picks)  # one from each cluster
    [0, 1]
    """
    _check_n_select(n_select, X.shape[0], first)
    x_sq = _sq_norms(X)
    d2 = _initial_d2(X, X_reference, x_sq)
    return _d2_sampling(d2, n_select, _Euclidean(X, x_sq), first, check_random_state(random_state))


def k_center_greedy(
    X: np.ndarray,
    n_select: int,
    *,
    X_reference: np.ndarray | None = None,
    random_state: object = None,
) -> np.ndarray:
    """Greedy k-center: each next pick is the point farthest from all chosen so far.

    The core-set strategy of Sener & Savarese (ICLR 2018). Distances start from the
    reference points (the labeled set); without any, the first pick is drawn uniformly.

    Parameters
    ----------
    X : ndarray of shape (M, d)
        Points to choose from.
    n_select : int
        How many to choose.
    X_reference : ndarray of shape (R, d), optional
        Points already chosen.
    random_state : None, int or Generator
        Seed of the first pick when there are no reference points.

    Returns
    -------
    indices : ndarray of shape (n_select,)
    """
    _check_n_select(n_select, X.shape[0])
    x_sq = _sq_norms(X)
    d2 = _initial_d2(X, X_reference, x_sq)
    rng = check_random_state(random_state)
    first = int(rng.integers(X.shape[0])) if np.isinf(d2).all() else None
    return _farthest_first(d2, n_select, _Euclidean(X, x_sq), first)


def gradient_kmeans_pp_select(
    residuals: np.ndarray, X: np.ndarray, n_select: int, *, random_state: object = None
) -> np.ndarray:
    """k-means++ over gradient embeddings ``g(z) = r(z) (x) [x(z), 1]`` without forming them.

    BADGE (Ash et al., ICLR 2020) seeds k-means++ on the last-layer gradients of the
    loss under the predicted label, ``r = p - e_yhat``. Those embeddings have
    ``C (d + 1)`` dimensions, but ``<g(z), g(z')> = <r, r'> <x~, x~'>``, so each distance
    row costs two matrix-vector products. The first pick is the largest gradient.

    Parameters
    ----------
    residuals : ndarray of shape (M, C)
        ``p(z) - e_yhat(z)``.
    X : ndarray of shape (M, d)
        Features.
    n_select : int
        How many to choose.
    random_state : None, int or Generator

    Returns
    -------
    indices : ndarray of shape (n_select,)
    """
    _check_n_select(n_select, X.shape[0])
    R = np.asarray(residuals, dtype=np.float64)
    r_sq = _sq_norms(R)
    x_sq = _sq_norms(X) + 1.0
    g_sq = r_sq * x_sq

    first = int(np.argmax(g_sq))
    return _d2_sampling(
        np.full(X.shape[0], np.inf),
        n_select,
        _GradientEmbedding(R, X, g_sq),
        first,
        check_random_state(random_state),
    )


def _check_n_select(n_select: int, M: int, first: int | None = None) -> None:
    if not 1 <= n_select <= M:
        raise RalifInputError(f"n_select must be in [1, {M}], got {n_select}")
    if first is not None and not (
        isinstance(first, (int, np.integer)) and not isinstance(first, bool) and 0 <= first < M
    ):
        raise RalifInputError(f"first must be a row index in [0, {M}), got {first!r}")


def _sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of every row, accumulated in float64."""
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


def _initial_d2(X: np.ndarray, X_reference: np.ndarray | None, x_sq: np.ndarray) -> np.ndarray:
    if X_reference is not None and len(X_reference):
        return min_sq_distances(X, X_reference, x_sq)
    return np.full(X.shape[0], np.inf)


class _Distances:
    """Squared distances between the points of a k-means++ loop, by rows of centers.

    A subclass gives :meth:`to_point` and :meth:`_block` (the ``(rows, centers)``
    distances of a slice of the points); :meth:`nearest` runs over the points in blocks.
    """

    n: int

    def to_point(self, centers: np.ndarray, i: int) -> np.ndarray:
        """Squared distance from point ``i`` to each point indexed by ``centers``."""
        raise NotImplementedError

    def _block(self, rows: slice, centers: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def nearest(self, centers: np.ndarray) -> np.ndarray:
        """``min_c D(x_j, x_c)`` for every point ``j``: matrix products, by row blocks."""
        out = np.empty(self.n)
        step = max(1, _DISTANCE_BLOCK_ENTRIES // max(1, len(centers)))
        for a in range(0, self.n, step):
            self._block(slice(a, a + step), centers).min(axis=1, out=out[a : a + step])
        return out


class _Euclidean(_Distances):
    """Squared Euclidean distances between the rows of ``X`` (``x_sq``: their norms)."""

    def __init__(self, X: np.ndarray, x_sq: np.ndarray) -> None:
        self.X, self.x_sq, self.n = X, x_sq, len(x_sq)

    def to_point(self, centers: np.ndarray, i: int) -> np.ndarray:
        X, x_sq = self.X, self.x_sq
        return x_sq[centers] + x_sq[i] - 2.0 * (X[centers] @ X[i])

    def _block(self, rows: slice, centers: np.ndarray) -> np.ndarray:
        X, x_sq = self.X, self.x_sq
        return (x_sq[rows, None] + x_sq[centers]) - 2.0 * (X[rows] @ X[centers].T)


class _GradientEmbedding(_Distances):
    """Squared distances between gradient embeddings ``r (x) [x, 1]`` (BADGE), never formed:
    ``<g, g'> = <r, r'> (<x, x'> + 1)``; ``g_sq`` holds their squared norms."""

    def __init__(self, R: np.ndarray, X: np.ndarray, g_sq: np.ndarray) -> None:
        self.R, self.X, self.g_sq, self.n = R, X, g_sq, len(g_sq)

    def to_point(self, centers: np.ndarray, i: int) -> np.ndarray:
        R, X, g_sq = self.R, self.X, self.g_sq
        inner = (R[centers] @ R[i]) * ((X[centers] @ X[i]).astype(np.float64) + 1.0)
        return g_sq[centers] + g_sq[i] - 2.0 * inner

    def _block(self, rows: slice, centers: np.ndarray) -> np.ndarray:
        R, X, g_sq = self.R, self.X, self.g_sq
        inner = (R[rows] @ R[centers].T) * ((X[rows] @ X[centers].T).astype(np.float64) + 1.0)
        return (g_sq[rows, None] + g_sq[centers]) - 2.0 * inner


_BATCH = 64
"""Picks folded into ``D^2`` at a time by :func:`_d2_sampling` (one matrix product)."""


def _d2_sampling(
    d2: np.ndarray,
    n_select: int,
    dist: _Distances,
    first: int | None,
    rng: np.random.Generator,
    batch: int = _BATCH,
) -> np.ndarray:
    """The k-means++ loop, given the initial ``D^2`` and a distance object.

    Updating ``D^2`` after every pick reads every point once per pick (a matrix-vector
    product, bound by memory bandwidth). Here the picks are folded into ``D^2`` a batch at
    a time, with one matrix product, and each draw in between is exact by rejection:
    ``D^2`` as last updated, ``U``, bounds the current value from above (distances only
    shrink), so an index drawn with probability proportional to ``U`` and kept with
    probability ``D^2 / U`` (its current ``D^2`` computed against the picks not yet
    folded in) is drawn with probability proportional to ``D^2``. A pick's own ``D^2`` is
    0, so it is never kept again. After a few rejections in a row the batch is folded in
    early, which makes ``U`` exact.
    """
    picks = np.empty(n_select, dtype=np.intp)
    chosen = np.zeros(len(d2), dtype=bool)
    pending: list[int] = []
    cum = None  # cumulative sums of D^2 as last folded (the proposal), None when stale

    def fold() -> None:
        nonlocal cum
        if pending:
            np.minimum(d2, dist.nearest(np.array(pending)), out=d2)
            np.maximum(d2, 0.0, out=d2)
            d2[pending] = 0.0
            pending.clear()
        cum = None

    def draw() -> int:
        nonlocal cum
        rejected = 0
        while True:
            if cum is None:
                w = np.where(chosen, 0.0, d2)
                if w[np.argmax(w)] == np.inf:  # no reference points
                    if pending:  # D^2 is finite once a pick is folded in
                        fold()
                        continue
                    free = np.flatnonzero(np.isinf(w))
                    return int(free[rng.integers(len(free))])
                cum = np.cumsum(w, out=w)
            total = cum[-1]
            if not total > 0:
                if pending:
                    fold()
                    continue
                free = np.flatnonzero(~chosen)
                return int(free[rng.integers(len(free))])
            # cum[j-1] <= u < cum[j] implies U[j] > 0: a point of zero weight is never hit.
            j = int(np.searchsorted(cum, rng.random() * total, side="right"))
            if not pending:
                return j
            now = 0.0 if chosen[j] else min(d2[j], float(dist.to_point(np.array(pending), j).min()))
            if rng.random() * d2[j] < now:
                return j
            rejected += 1
            if rejected >= 8:
                fold()
                rejected = 0

    for t in range(n_select):
        i = int(first) if t == 0 and first is not None else draw()
        picks[t] = i
        chosen[i] = True
        pending.append(i)
        if len(pending) >= batch and t + 1 < n_select:
            fold()
    return picks


def _farthest_first(
    d2: np.ndarray, n_select: int, dist: _Distances, first: int | None
) -> np.ndarray:
    """The k-center greedy loop: always the unchosen point with the largest ``D^2``."""
    picks = np.empty(n_select, dtype=np.intp)
    chosen = np.zeros(len(d2), dtype=bool)
    for t in range(n_select):
        if t == 0 and first is not None:
            i = int(first)
        else:
            i = int(np.argmax(np.where(chosen, -1.0, d2)))
        picks[t] = i
        chosen[i] = True
        if t + 1 < n_select:
            np.minimum(d2, dist.nearest(np.array([i])), out=d2)
            np.maximum(d2, 0.0, out=d2)
            d2[i] = 0.0
    return picks


def cluster_best_select(
    X: np.ndarray, scores: np.ndarray, n_select: int, random_state: object = None
) -> np.ndarray:
    """One item per k-means cluster: the best-scoring member of each of ``n_select`` clusters.

    A diversity step that cannot be pulled to outliers the way ``D^2`` sampling is: the
    clusters follow the points' density, and within each the score decides.

    Parameters
    ----------
    X : ndarray of shape (M, d)
        Points to choose from.
    scores : ndarray of shape (M,)
        Lower is better.
    n_select : int
        How many to choose, ``1 <= n_select <= M``.
    random_state : None, int or Generator
        Seed of the k-means initialization.

    Returns
    -------
    indices : ndarray of shape (n_select,)
        Row indices into ``X``, best score first.
    """
    from sklearn.cluster import KMeans

    _check_n_select(n_select, X.shape[0])
    scores = np.asarray(scores, dtype=np.float64)
    if n_select == X.shape[0]:
        return top_k(scores, n_select, largest=False)
    seed = int(check_random_state(random_state).integers(2**31 - 1))
    labels = KMeans(n_clusters=n_select, n_init=1, random_state=seed).fit_predict(X)
    order = np.lexsort((scores, labels))  # by cluster, then by score
    first_of_cluster = np.r_[True, labels[order][1:] != labels[order][:-1]]
    best = order[first_of_cluster]
    if len(best) < n_select:  # k-means left clusters empty: fill with the next best scores
        rest = np.setdiff1d(top_k(scores, X.shape[0], largest=False), best, assume_unique=True)
        rest = rest[np.argsort(scores[rest], kind="stable")]
        best = np.concatenate([best, rest[: n_select - len(best)]])
    return best[np.argsort(scores[best], kind="stable")]


def cluster_round_robin_select(
    X: np.ndarray, n_select: int, n_clusters: int, random_state: object = None
) -> np.ndarray:
    """Cluster-Margin's batch step: round-robin over clusters, smallest first.

    The points (the most uncertain items) are grouped by average-linkage
    agglomerative clustering; clusters are visited from the smallest to the largest,
    each giving one random member per visit, until ``n_select`` are chosen.

    Parameters
    ----------
    X : ndarray of shape (M, d)
    n_select : int
        ``1 <= n_select <= M``.
    n_clusters : int
        Number of clusters, ``1 <= n_clusters <= M``.
    random_state : None, int or Generator

    Returns
    -------
    indices : ndarray of shape (n_select,)

    References
    ----------
    Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021.
    """
    from sklearn.cluster import AgglomerativeClustering

    _check_n_select(n_select, X.shape[0])
    rng = check_random_state(random_state)
    n_clusters = max(1, min(int(n_clusters), X.shape[0]))
    if n_clusters == 1:
        labels = np.zeros(X.shape[0], dtype=np.intp)
    else:
        labels = AgglomerativeClustering(n_clusters=n_clusters, linkage="average").fit_predict(X)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_clusters)]
    members.sort(key=len)
    picks: list[int] = []
    depth = 0
    while len(picks) < n_select:
        for m in members:
            if depth < len(m):
                picks.append(int(m[depth]))
                if len(picks) == n_select:
                    break
        depth += 1
    return np.asarray(picks, dtype=np.intp)
