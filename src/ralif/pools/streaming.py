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

Every strategy written as a plan over a pool (:meth:`ralif.Strategy.plan`) streams, with
all of its parameters: the plan is the code an in-memory query runs too
(:mod:`ralif.pools.query`), here over a source read in blocks (:func:`streamable` names them).

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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ralif._params import POSITIVE_INT, Either, Options, validate_params
from ralif._validation import RalifInputError, check_budget, check_labels, check_random_state
from ralif.pools.devices import check_device
from ralif.pools.query import BlockRunner, PoolQuery
from ralif.pools.sources import PoolSource, open_pool
from ralif.strategies import STRATEGIES, Strategy, make_strategy

if TYPE_CHECKING:
    import distributed

DEFAULT_MAX_CANDIDATES = 20_000
"""Candidates kept by a streamed query unless told otherwise (see the module notes)."""


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
    client: distributed.Client | None = None,
    X_labeled: np.ndarray | None = None,
    **params: object,
) -> StreamedQuery:
    """Choose the next items to label from a pool read in blocks, never whole.

    Parameters
    ----------
    X : path, glob, array-like, dask.array or PoolSource
        The pool (see :func:`ralif.pools.sources.open_pool`): a ``.npy`` file, a folder or
        glob of ``.npy`` shards, Parquet, an ``np.memmap``...
    y : array-like of shape (N,)
        Labels, ``-1`` for unlabeled items.
    budget : int
        How many items to pick.
    strategy : str or Strategy, default="ralif"
        A strategy that streams (:func:`streamable`): a spec or an object.
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
        Run the passes on its workers (see :mod:`ralif.pools.cluster`).
    X_labeled : ndarray of shape (n_labeled, d), optional
        The labeled items' features, in row order, where the caller has already read
        them (a benchmark round fits its model on them); by default they are read.
    **params
        Parameters of the strategy.

    Returns
    -------
    StreamedQuery
        The picks, every pool item's score, the strategy object and the stages' times.

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
    device, source = check_device(check_streamable(strat) and device), open_pool(X)
    y, pool, labeled, budget = _split_rows(source, y, rows, budget)
    runner = BlockRunner(source, pool, int(block_rows or source.block_rows_for()), client)
    XL, rng = _labeled_rows(source, labeled, X_labeled), check_random_state(strat.random_state)
    query = PoolQuery(strat, source, runner, pool, labeled, XL, y[labeled], budget, rng, device)
    query.streamed, query.max_candidates = True, max(int(max_candidates), budget)
    picks, scores = query.run(model)
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
        Where the features are (:func:`ralif.pools.sources.open_pool`).
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
    client: distributed.Client | None = None

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


def streams(cls: type[Strategy]) -> bool:
    """Whether a strategy class's query is a plan over a pool (:meth:`Strategy.plan`),
    which a streamed query runs as it is; a class that rewrites ``query`` does not."""
    return cls.plan is not Strategy.plan and cls.query is Strategy.query


def streamable() -> tuple[str, ...]:
    """List the names of :data:`ralif.STRATEGIES` whose queries stream.

    Returns
    -------
    tuple of str
        Sorted.

    Examples
    --------
    >>> "ralif" in streamable() and "albl" not in streamable()
    True
    """
    return tuple(name for name in sorted(STRATEGIES) if streams(STRATEGIES[name][0]))


def check_streamable(strategy: str | Strategy) -> Strategy:
    """Refuse a strategy whose query cannot be streamed.

    Parameters
    ----------
    strategy : str or Strategy
        A strategy spec (``ralif.STRATEGIES``, ``module:Class``...) or object.

    Returns
    -------
    Strategy
        The strategy (built from a spec).

    Raises
    ------
    RalifInputError
        For a strategy without a plan over a pool (its query reads the whole array).

    Examples
    --------
    >>> check_streamable("margin")
    Margin()
    """
    strat = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if not streams(type(strat)):
        raise RalifInputError(
            f"strategy {strat.name or type(strat).__name__} cannot be streamed; streamable: "
            f"{', '.join(streamable())}"
        )
    return strat
