"""Streamed queries: a pool read in blocks, twice, never held whole.

A RALIF query needs little state (design notes, section 6). Pass 1 over the pool gives
the gradient of the target loss (a C x (d+1) sum) and each item's uncertainty; the
influence system is solved once; pass 2 gives each item's row of Delta and its score;
the candidates are chosen from those N scalars exactly as the in-memory query chooses
them, and only their features are read again, by index, for the diversity step. Memory
is O(block + candidates + N scalars).

The same block functions run in this process or, with a ``dask.distributed`` client,
as tasks on its workers: each pass is a map over blocks whose small results are summed
on the client in block order, so a cluster returns the same picks as one process.

Streamable strategies: :class:`~ralif.RALIF` with any of its parameters (score,
candidate rule, diversity, target, weighting...), ``random``, ``margin``, ``entropy``,
``least_confidence``, ``badge`` and ``coreset``.

The candidate cap
-----------------
The diversity step reads the candidates' features: ``rho * N`` rows, 3 GB for a pool of
a million 768-dimensional items, and k-means++ costs ``budget x candidates x d``
multiply-adds (with 100,000 candidates and a budget of 1,000, 77 G; the candidates are
read once per 64 picks). A streamed query therefore keeps at most ``max_candidates``
candidates (default :data:`DEFAULT_MAX_CANDIDATES`, 61 MB of float32 features at
d = 768; never fewer than the budget):

* RALIF keeps the best ``max_candidates`` by its score (its candidate rule is applied
  first, then truncated: the candidates are ordered best first);
* BADGE and core-set, whose diversity step runs over the whole pool, run it over a
  uniform random sample of ``max_candidates`` pool items, drawn with the query's seed.

Where the cap is not reached (``rho * N`` or the pool at most ``max_candidates``) a
streamed query returns exactly the in-memory query's picks; with the default cap that
holds for every pool of up to 200,000 items at RALIF's ``rho = 0.1``, and for every
data set of the benchmark suite. Past it, the candidates are the best by score among the
same uncertain items; the diversity step draws from fewer of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np

from ralif._params import POSITIVE_INT, Either, Options, validate_params
from ralif._softmax import logits, softmax_inplace, split_params
from ralif._validation import RalifInputError, check_budget, check_labels, check_random_state
from ralif.head import LinearHead
from ralif.influence import (
    InfluenceSettings,
    PoolInfluence,
    _centered,
    class_balance_weights,
    gradient_sum,
    solve_target_direction,
    target_terms,
)
from ralif.scores import entropy, least_confidence, margin
from ralif.selectors import (
    gradient_kmeans_pp_select,
    k_center_greedy,
    top_k,
)
from ralif.sources import PoolSource, checked_results, open_pool
from ralif.strategies import RALIF, Strategy, make_strategy
from ralif.strategies.base import random_picks
from ralif.strategies.baselines import (
    BADGE,
    CoreSet,
    Entropy,
    LeastConfidence,
    Margin,
    Random,
    pool_proba,
)

DEFAULT_MAX_CANDIDATES = 20_000
"""Candidates kept by a streamed query unless told otherwise (see the module notes)."""

STREAMABLE = ("ralif", "random", "margin", "entropy", "least_confidence", "badge", "coreset")

_MEASURES: dict[type, Callable[[np.ndarray], np.ndarray]] = {
    Margin: margin,
    Entropy: entropy,
    LeastConfidence: least_confidence,
}
_KNOWN_SETTINGS = {
    "target",
    "damping",
    "solver",
    "rescale_ridge",
    "weighting",
    "tol",
}


# ----------------------------------------------------------------------------- devices
class _NumpyDevice:
    """Block products on the CPU, exactly as the in-memory query computes them."""

    name = "cpu"

    def proba(self, block: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return softmax_inplace(logits(block, W, b)).astype(np.float64, copy=False)

    def product(self, block: np.ndarray, M: np.ndarray) -> np.ndarray:
        """``block @ M.T`` in the block's dtype."""
        return block @ M.T.astype(block.dtype, copy=False)

    def gradient(self, G: np.ndarray, block: np.ndarray) -> np.ndarray:
        """``G.T @ block`` in the block's precision, as float64 (as in memory)."""
        return gradient_sum(G, block)

    def proba_and_product(
        self, block: np.ndarray, W: np.ndarray, b: np.ndarray | None, M: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities and ``block @ M.T`` (float64) from one product with ``[W; M]``.

        One read of the block instead of two; each column is the same number as from its
        own product.
        """
        C = W.shape[0]
        Z = self.product(block, np.concatenate([W, M.astype(W.dtype, copy=False)]))
        Zw = Z[:, :C]
        if b is not None:
            Zw += b.astype(Zw.dtype, copy=False)
        P = softmax_inplace(Zw).astype(np.float64, copy=False)
        return P, Z[:, C:].astype(np.float64)


class _TorchDevice(_NumpyDevice):
    """The same products on a torch device (a GPU); results come back as NumPy."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.name = device
        self.device = torch.device(device)

    def _put(self, block: np.ndarray):
        # The passes ask for two products of the same block: send it to the device once.
        if block is not getattr(self, "_last_block", None):
            self._last_block = block
            self._last = self.torch.from_numpy(np.ascontiguousarray(block)).to(self.device)
        return self._last

    def proba(self, block, W, b):
        return softmax_inplace(self.product(block, W) + (0.0 if b is None else b)).astype(
            np.float64, copy=False
        )

    def product(self, block, M):
        t = self._put(block)
        m = self.torch.as_tensor(np.ascontiguousarray(M), device=self.device, dtype=t.dtype)
        return (t @ m.T).cpu().numpy()

    def gradient(self, G, block):
        t = self._put(block)
        g = self.torch.as_tensor(np.ascontiguousarray(G), device=self.device, dtype=t.dtype)
        return (g.T @ t).double().cpu().numpy()


def check_device(device: str) -> str:
    """``"cpu"``, or a torch device that exists here (``"cuda"``, ``"cuda:1"``)."""
    device = str(device)
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        try:
            import torch
        except ImportError:
            raise RalifInputError("--device cuda needs torch: pip install 'ralif[torch]'") from None
        if not torch.cuda.is_available():
            raise RalifInputError(f"device {device!r} asked for, but torch sees no CUDA GPU")
        try:
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise RalifInputError(f"device {device!r} cannot be used: {exc}") from None
        return device
    raise RalifInputError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")


def _device(name: str) -> _NumpyDevice:
    return _NumpyDevice() if name == "cpu" else _TorchDevice(name)


# ----------------------------------------------------------------------- block functions
# Each returns (per-item arrays, sums); both are small. They run here or on a worker.
def _measure_block(block, device, model, measure):
    if isinstance(model, LinearHead):
        b = model.intercept_ if model.fit_intercept else None
        P = _device(device).proba(block, model.coef_, b)
    else:
        P = np.asarray(model.predict_proba(block), dtype=np.float64)
    return {"score": measure(P)}, {}


def _ralif_pass1(block, device, W, b, settings: InfluenceSettings):
    """Probabilities' margins, and the target loss and gradient sums of the block."""
    dev = _device(device)
    P = dev.proba(block, W, b)
    n, C = P.shape
    idx = np.arange(n)
    top = P.argmax(axis=1)
    p_top = P[idx, top]
    per_item = {"margin": margin(P)}
    item_loss, G = target_terms(P, expected=settings.target == "entropy")
    if settings.weighting == "balanced":
        # The weights (inverse pseudo-class frequency) are known only after the pass:
        # keep one sum per pseudo class and weigh them then.
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
        item_loss = item_loss * p_top
        G *= p_top[:, None]
        weight = float(p_top.sum())
    sums = {
        "gW": dev.gradient(G, block),
        "gb": G.sum(axis=0),
        "loss": float(item_loss.sum()),
        "weight": weight,
    }
    return per_item, sums


def _ralif_pass2(block, device, W, b, S_W, s_b, n, shift, target_loss, strategy):
    """Each item's score under the strategy's own scoring rule."""
    P, A = _device(device).proba_and_product(block, W, b, S_W)
    if s_b is not None:
        A += s_b
    delta = _centered(A, P) / n
    if shift:
        delta -= shift
    infl = PoolInfluence(delta, P, target_loss, np.empty(0), None)
    return {"score": strategy._score(infl)}, {}


def _proba_block(block, device, model):
    if isinstance(model, LinearHead):
        b = model.intercept_ if model.fit_intercept else None
        return _device(device).proba(block, model.coef_, b)
    return np.asarray(model.predict_proba(block), dtype=np.float64)


def _badge_norms_block(block, device, model):
    R = _proba_block(block, device, model)
    R[np.arange(len(R)), R.argmax(axis=1)] -= 1.0
    x_sq = (block.astype(np.float64) ** 2).sum(axis=1)
    return {"score": np.sqrt((R * R).sum(axis=1) * (x_sq + 1.0))}, {}


# ------------------------------------------------------------------------------ runners
def _run_partition(source, start, stop, local, fn, args, check=True):
    block = source.read(start, stop, check=check)
    if local is not None:
        block = block[local]
    return checked_results(
        fn(block, *args), lambda: source.read(start, stop), source.name, start, stop
    )


def _add(total: dict, part: dict) -> dict:
    if not total:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in part.items()}
    for k, v in part.items():
        total[k] = total[k] + v
    return total


class _Runner:
    """Runs a block function over the pool items of every partition, in order.

    Per-item arrays are concatenated (one entry per pool item, in pool order) and sums
    are added in partition order, whether the blocks run here or on dask workers.
    """

    def __init__(self, source: PoolSource, pool: np.ndarray, block_rows: int, client=None):
        self.source, self.pool, self.client = source, pool, client
        self.tasks = []
        for start, stop in source.partitions(block_rows):
            a, b = np.searchsorted(pool, [start, stop])
            if a == b:
                continue
            local = None if b - a == stop - start else pool[a:b] - start
            self.tasks.append((start, stop, local))

    def run(self, fn, *args, check: bool = True) -> tuple[dict, dict]:
        """``fn(block, *args)`` over every block: per-item arrays joined, sums added.

        ``check=False`` reads blocks without the scan for NaN, inf and values too large
        to square (RALIF's second pass: the first pass scanned the same, unchanged
        files); NaN or inf that reach ``fn``'s results are still an error naming the rows.
        """
        per_item: dict[str, list] = {}
        sums: dict = {}
        for items, part in self._results(fn, args, check):
            for k, v in items.items():
                per_item.setdefault(k, []).append(v)
            sums = _add(sums, part)
        return {k: np.concatenate(v) for k, v in per_item.items()}, sums

    def _read(self, task, check: bool) -> np.ndarray:
        start, stop, local = task
        block = self.source.read(start, stop, check=check)
        return block if local is None else block[local]

    def _results(self, fn, args, check):
        if self.client is None:
            # The next block is read by a second thread while this one is computed: file
            # reads release the GIL, so reading and the products overlap (two blocks held).
            with ThreadPoolExecutor(max_workers=1) as reader:
                ahead = None
                for i, task in enumerate(self.tasks):
                    block = (ahead or reader.submit(self._read, task, check)).result()
                    more = i + 1 < len(self.tasks)
                    ahead = reader.submit(self._read, self.tasks[i + 1], check) if more else None
                    start, stop = task[:2]

                    # Read again through the reader: a source is read by one thread at a time.
                    def reread(a=start, b=stop):
                        return reader.submit(self.source.read, a, b).result()

                    yield checked_results(fn(block, *args), reread, self.source.name, start, stop)
            return
        from ralif.cluster import gather_in_order

        yield from gather_in_order(
            self.client, _run_partition, self.source, self.tasks, fn, args, check=check
        )


# ---------------------------------------------------------------------------- the query
@dataclass
class StreamedQuery:
    """What a streamed query found: the picks, and every pool item's score.

    Attributes
    ----------
    picks : ndarray
        Indices into the pool source, in the order picked.
    pool_index : ndarray
        Indices of the pool items considered, ascending.
    scores : ndarray
        ``scores[i]`` belongs to ``pool_index[i]`` (NaN where the strategy has none).
    strategy : Strategy
        The strategy object used (with ``model_`` and, for RALIF, ``head_`` set).
    n_candidates : int
        Candidates whose features were read for the diversity step.
    capped : bool
        Whether ``max_candidates`` cut the candidate set (or sampled the pool).
    seconds : dict
        Wall time of each stage: ``"model"`` (fitting), ``"pass 1"``, ``"solve"``,
        ``"pass 2"``, ``"read candidates"``, ``"diversity"`` (those that ran).
    """

    picks: np.ndarray
    pool_index: np.ndarray
    scores: np.ndarray
    strategy: Strategy
    n_candidates: int = 0
    capped: bool = False
    seconds: dict = field(default_factory=dict)


@validate_params(
    {"max_candidates": POSITIVE_INT, "block_rows": Either(Options(None), POSITIVE_INT)}
)
def streamed_select(
    X: object,
    y: np.ndarray,
    budget: int,
    strategy: str | Strategy = "ralif",
    random_state: object = None,
    *,
    model: object = None,
    rows: np.ndarray | None = None,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    block_rows: int | None = None,
    device: str = "cpu",
    client: object = None,
    X_labeled: np.ndarray | None = None,
    **params: object,
) -> StreamedQuery:
    """Choose the next items to label from a pool read in blocks, never whole.

    Parameters
    ----------
    X : path, glob, array-like, dask.array or PoolSource
        The pool (see :func:`ralif.sources.open_pool`): a ``.npy`` file, a folder or
        glob of ``.npy`` shards, Parquet, an ``np.memmap``...
    y : array-like of shape (N,)
        Labels, ``-1`` for unlabeled items.
    budget : int
        How many items to pick.
    strategy : str or Strategy, default="ralif"
        One of :data:`STREAMABLE` (a name, or such a strategy object).
    random_state : None, int or Generator
        Seed; the same seed gives the in-memory query's picks where the candidate cap
        is not reached.
    model : classifier, optional
        As for :meth:`ralif.Strategy.select`.
    rows : array-like of int, optional
        Only these items take part (as if ``X`` were ``X[rows]``); picks still index
        ``X``.
    max_candidates : int, default=DEFAULT_MAX_CANDIDATES
        The candidate cap (see the module notes).
    block_rows : int, optional
        Rows per block; by default about 32 MiB of features.
    device : {"cpu", "cuda", "cuda:N"}, default="cpu"
        Where the block products run (a GPU needs torch).
    client : dask.distributed.Client, optional
        Run the passes on its workers (see :mod:`ralif.cluster`).
    X_labeled : ndarray of shape (n_labeled, d), optional
        The labeled items' features, in row order, where the caller has already read
        them (a benchmark round fits its model on them); by default they are read.
    **params
        Parameters of the strategy.

    Returns
    -------
    StreamedQuery

    Examples
    --------
    >>> import numpy as np, ralif
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 5)); y = np.full(400, -1); y[:20] = X[:20, 0] > 0
    >>> q = streamed_select(X, y, 5, l2=0.1, random_state=0, block_rows=64)
    >>> in_memory = ralif.select(X, y, 5, l2=0.1, random_state=0)
    >>> bool(np.array_equal(q.picks, in_memory))
    True
    """
    strat = make_strategy(strategy, random_state=random_state, **params)
    validate_params(strat)
    kind, device, source = _streamable_kind(strat), check_device(device), open_pool(X)
    y, pool, labeled, budget = _split_rows(source, y, rows, budget)
    runner = _Runner(source, pool, int(block_rows or source.block_rows_for()), client)
    X_labeled = _labeled_rows(source, labeled, X_labeled)
    rng = check_random_state(getattr(strat, "random_state", None))
    query = _Query(strat, source, runner, pool, X_labeled, y[labeled], budget, rng, device)
    query.max_candidates = max(int(max_candidates), budget)
    picks, scores = query.run(kind, model)
    source.check_unchanged()
    strat.pool_index_, strat.scores_, strat.picks_ = pool, scores, picks
    return StreamedQuery(
        picks, pool, scores, strat, query.n_candidates, query.capped, query.seconds
    )


def _split_rows(
    source: PoolSource, y: object, rows: object, budget: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The labels, checked; the unlabeled and the labeled rows among ``rows`` (all rows
    by default); and the budget, checked against the unlabeled ones."""
    y = check_labels(y, source.n_rows)
    items = _checked_rows(rows, source.n_rows)
    pool, labeled = items[y[items] < 0], items[y[items] >= 0]
    return y, pool, labeled, check_budget(budget, len(pool))


def _labeled_rows(source: PoolSource, labeled: np.ndarray, given: np.ndarray | None) -> np.ndarray:
    """The labeled rows' features: ``given`` (checked for shape) or read from ``source``."""
    if given is None:
        return source.take(labeled)
    if np.shape(given) != (len(labeled), source.n_features):
        raise RalifInputError(
            f"X_labeled must hold the {len(labeled)} labeled items' {source.n_features} "
            f"features, got shape {np.shape(given)}"
        )
    return given


@dataclass
class StreamedFeatures:
    """The loop's items as rows of a pool source, read by index or in blocks, never whole.

    Item ``i`` of the loop is row ``rows[i]`` of ``source``: the model is fitted on the
    labeled items' rows (:meth:`take`), and a query reads the pool in blocks
    (:meth:`select`, :func:`streamed_select` over ``rows`` only), so
    the loop's indices, labels and picks are those it would have over ``X[rows]`` held
    in memory.

    Parameters
    ----------
    source : PoolSource
        Where the features are (:func:`ralif.sources.open_pool`).
    rows : ndarray of int
        The source's rows that are items of the loop, distinct and ascending.
    max_candidates : int, optional
        The streamed query's candidate cap (default :data:`DEFAULT_MAX_CANDIDATES`).
    device : str, default="cpu"
        Where the block products run (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
    client : dask.distributed.Client, optional
        Run the passes on its workers.
    """

    source: PoolSource
    rows: np.ndarray
    max_candidates: int | None = None
    device: str = "cpu"
    client: object = None

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, items: np.ndarray) -> np.ndarray:
        """Features of the items ``items``, read by index from the source.

        Parameters
        ----------
        items : ndarray of int or bool
            Indices of the loop's items, or a boolean mask over them (``len(self)``).

        Returns
        -------
        ndarray, shape (n_items, n_features)
            Rows ``rows[items]`` of the source, in the order of ``items``.
        """
        items = np.asarray(items)
        if items.dtype == bool:
            items = np.flatnonzero(items)
        return self.source.take(self.rows[items])

    def select(
        self,
        strategy: Strategy,
        y: np.ndarray,
        budget: int,
        model: object,
        X_labeled: np.ndarray | None = None,
    ) -> np.ndarray:
        """A streamed query of ``strategy`` (seeded) over the items.

        Parameters
        ----------
        strategy : Strategy
            A streamable strategy (:func:`check_streamable`), seeded.
        y : ndarray of int, shape (len(self),)
            The loop's labels of its items, ``-1`` for an unlabeled item.
        budget : int
            Items to pick.
        model : object
            The model fitted on the labeled items.
        X_labeled : ndarray, optional
            The labeled items' features in item order, where already read (the model
            was fitted on them); read again otherwise.

        Returns
        -------
        ndarray of int
            The picked items, indices of the loop's items (not of the source's rows),
            in the order picked.
        """
        y_rows = np.full(self.source.n_rows, -1, dtype=np.int64)
        y_rows[self.rows] = y
        query = streamed_select(
            self.source,
            y_rows,
            budget,
            strategy,
            model=model,
            rows=self.rows,
            max_candidates=self.max_candidates or DEFAULT_MAX_CANDIDATES,
            device=self.device,
            client=self.client,
            X_labeled=X_labeled,
        )
        return np.searchsorted(self.rows, query.picks)


def _checked_rows(rows: object, n: int) -> np.ndarray:
    if rows is None:
        return np.arange(n)
    arr = np.asarray(rows)
    if arr.ndim != 1 or (len(arr) and arr.dtype.kind not in "iu"):
        raise RalifInputError("rows must be a 1-D array of item indices")
    arr = arr.astype(np.intp)
    if len(arr) and (arr.min() < 0 or arr.max() >= n):
        raise RalifInputError(f"rows must index the pool of {n} items")
    if len(np.unique(arr)) != len(arr) or np.any(np.diff(arr) < 0):
        raise RalifInputError("rows must be distinct and ascending")
    return arr


def check_streamable(strategy: str | Strategy) -> str:
    """Refuse a strategy whose query cannot be streamed; return how it streams.

    Parameters
    ----------
    strategy : str or Strategy
        A strategy name (``ralif.STRATEGIES``) or object.

    Returns
    -------
    str
        ``"ralif"``, ``"random"``, ``"measure"``, ``"badge"`` or ``"coreset"``.

    Raises
    ------
    RalifInputError
        For a strategy not in :data:`STREAMABLE`, a subclass that rewrites its query
        or score, or a RALIF with an influence setting the passes do not compute.
    """
    strat = make_strategy(strategy) if isinstance(strategy, str) else strategy
    kind = _streamable_kind(strat)
    if kind == "ralif":
        _check_settings(strat.influence_settings())
    return kind


def _streamable_kind(strat: Strategy) -> str:
    """Which streamed plan a strategy follows; refused when its query is not ralif's own."""
    cls = type(strat)
    owners = {RALIF: "ralif", Random: "random", BADGE: "badge", CoreSet: "coreset"}
    owners.update({m: "measure" for m in _MEASURES})
    for base, kind in owners.items():
        # A subclass that rewrites query() or the score would be streamed wrongly.
        if isinstance(strat, base) and cls.query is base.query:
            if kind == "ralif" and cls._score is not RALIF._score:
                break
            if kind == "measure" and cls.measure is not base.measure:
                break
            return kind
    raise RalifInputError(
        f"strategy {strat.name or cls.__name__} cannot be streamed; streamable: "
        f"{', '.join(STREAMABLE)}"
    )


class _Query:
    """One streamed query's plans, one method per kind of strategy."""

    def __init__(self, strat, source, runner, pool, X_labeled, y_labeled, budget, rng, device):
        self.strat, self.source, self.runner, self.pool = strat, source, runner, pool
        self.X_labeled, self.y_labeled = X_labeled, y_labeled
        self.budget, self.rng, self.device = budget, rng, device
        self.max_candidates = budget
        self.n_candidates = 0
        self.capped = False
        self.seconds: dict[str, float] = {}

    def run(self, kind: str, model: object) -> tuple[np.ndarray, np.ndarray]:
        """``(picks, scores)`` of the plan ``kind``, the strategy's model fitted first
        (or ``model`` taken) where it needs one."""
        strat = self.strat
        strat.model_ = strat.network_ = None
        if strat.needs_model and len(np.unique(self.y_labeled)) < 2:
            return self.too_few_classes()
        if strat.needs_model:
            with self.timed("model"):
                strat.model_ = strat._fitted_model(model, self.X_labeled, self.y_labeled)
        return getattr(self, kind)(strat.model_)

    @contextmanager
    def timed(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t

    def _read_pool_rows(self, positions: np.ndarray) -> np.ndarray:
        self.source.check_unchanged()
        self.n_candidates = len(positions)
        with self.timed("read candidates"):
            return self.source.take(self.pool[positions])

    def _pool_sample(self) -> np.ndarray:
        """Positions of the pool whose features the diversity step reads: all, or a
        uniform sample of ``max_candidates`` (the cap)."""
        n = len(self.pool)
        if n <= self.max_candidates:
            return np.arange(n)
        self.capped = True
        return np.sort(self.rng.choice(n, self.max_candidates, replace=False))

    # -- plans ---------------------------------------------------------------------
    def random(self, model):
        return random_picks(self.pool, self.budget, self.rng)

    def measure(self, model):
        measure = _MEASURES[next(c for c in _MEASURES if isinstance(self.strat, c))]
        per_item, _ = self.runner.run(_measure_block, self.device, model, measure)
        scores = per_item["score"]
        largest = self.strat.score_direction == "higher"
        return self.pool[top_k(scores, self.budget, largest=largest)], scores

    def coreset(self, model):
        sample = self._pool_sample()
        X_sample = self._read_pool_rows(sample)
        rows = k_center_greedy(
            X_sample, self.budget, X_reference=self.X_labeled, random_state=self.rng
        )
        return self.pool[sample[rows]], np.full(len(self.pool), np.nan)

    def badge(self, model):
        if self.strat.network_proba is not None:
            raise RalifInputError("BADGE with network_proba cannot be streamed")
        per_item, _ = self.runner.run(_badge_norms_block, self.device, model)
        sample = self._pool_sample()
        X_sample = self._read_pool_rows(sample)
        P = pool_proba(model, X_sample, np.arange(len(sample)))
        P[np.arange(len(sample)), P.argmax(axis=1)] -= 1.0
        rows = gradient_kmeans_pp_select(P, X_sample, self.budget, random_state=self.rng)
        return self.pool[sample[rows]], per_item["score"]

    def ralif(self, model):
        strat = self.strat
        XL, yL = self.X_labeled, self.y_labeled
        head = strat.fit_influence_head(model, XL, yL)
        settings = strat.influence_settings()
        _check_settings(settings)
        W = head.coef_
        b = head.intercept_ if head.fit_intercept else None
        n = XL.shape[0]
        # Pass 1: margins, and the target's loss and gradient.
        with self.timed("pass 1"):
            per_item, sums = self.runner.run(_ralif_pass1, self.device, W, b, settings)
        if settings.weighting == "balanced":
            counts = sums["counts"]
            w = class_balance_weights(counts)
            gW = np.tensordot(w, sums["gW"], axes=1)
            gb = w @ sums["gb"]
            loss = float(w @ sums["loss"])
            n_target = float(w @ counts)
        else:
            gW, gb, loss, n_target = sums["gW"], sums["gb"], sums["loss"], sums["weight"]
        solve_started = time.perf_counter()
        s, _, loss, n_target = solve_target_direction(
            head, XL, yL, gW, gb, loss, n_target, settings
        )
        S_W, s_b = split_params(s, len(head.classes_), XL.shape[1], head.fit_intercept)
        self.seconds["solve"] = time.perf_counter() - solve_started
        shift = head.l2_ * float((head.coef_ * S_W).sum()) / n if settings.rescale_ridge else 0.0
        # Between the passes the pool must not change: the solve belongs to pass 1's pool.
        self.source.check_unchanged()
        with self.timed("pass 2"):
            scored, _ = self.runner.run(
                _ralif_pass2,
                *(self.device, W, b, S_W, s_b, n, shift, loss / n_target, strat),
                check=False,
            )
        scores = scored["score"]
        cand = strat.candidate_positions(scores, per_item["margin"], self.budget)
        if len(cand) > self.max_candidates:
            cand, self.capped = cand[: self.max_candidates], True
        strat.head_, strat.candidates_ = head, cand
        strat.influence_ = None  # the pool-by-class matrix is never formed
        if strat.diversity == "none":
            return self.pool[cand[: self.budget]], scores
        XC = self._read_pool_rows(cand)
        with self.timed("diversity"):
            rows = strat.diversify(XC, scores[cand], self.budget, XL, self.rng)
        return self.pool[cand[rows]], scores

    def too_few_classes(self):
        """The strategy's own fallback: RALIF's k-means++ over the pool (past the cap, a
        sample of it); random picks for the others, which need no features."""
        if not isinstance(self.strat, RALIF):
            return Strategy._too_few_classes(
                self.strat, None, self.y_labeled, self.pool, self.budget, self.rng
            )
        sample = self._pool_sample()
        X_sample = self._read_pool_rows(sample)
        nL = len(self.y_labeled)
        # The fallback reads X[y >= 0] and X[pool]: hand it just those rows.
        X = np.concatenate([self.X_labeled, X_sample.astype(self.X_labeled.dtype)])
        y = np.concatenate([self.y_labeled, np.full(len(sample), -1)])
        local_pool = np.arange(nL, nL + len(sample))
        picks, sample_scores = self.strat._too_few_classes(X, y, local_pool, self.budget, self.rng)
        scores = np.full(len(self.pool), np.nan)
        scores[sample] = sample_scores
        return self.pool[sample[picks - nL]], scores


def _check_settings(settings: InfluenceSettings) -> None:
    """Refuse an influence setting this module does not compute (it would be ignored)."""
    defaults = InfluenceSettings()
    for f in fields(settings):
        if f.name not in _KNOWN_SETTINGS and getattr(settings, f.name) != getattr(defaults, f.name):
            raise RalifInputError(f"streamed RALIF does not compute the influence setting {f.name}")
