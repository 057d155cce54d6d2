"""The one query path: a strategy's plan over a pool, in memory or read in blocks.

A built-in strategy writes its query once, as ``plan(query, model)``: maps of block
functions over the pool (:meth:`PoolQuery.map`) and reads of a few rows by position
(:meth:`PoolQuery.take`). :meth:`ralif.Strategy.select` runs the plan over an array
(:meth:`PoolQuery.in_memory`); :func:`ralif.pools.streaming.streamed_select` over a pool source
read twice, block by block, with a candidate cap, on a GPU or on dask workers. Per-item
results are joined in pool order and sums added in block order, so every way of running
gives the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ralif.pools.sources import ArrayPool, PoolSource, checked_results

if TYPE_CHECKING:
    import distributed


BlockFunction = Callable[..., tuple[dict, dict]]
"""A block function: ``fn(block, *args) -> (per-item arrays, sums)``, both by name."""

Task = tuple[int, int, "np.ndarray | None"]
"""A partition's rows ``start:stop`` and the positions of its pool items (None: all)."""


def _run_partition(
    source: PoolSource,
    start: int,
    stop: int,
    local: np.ndarray | None,
    fn: BlockFunction,
    args: tuple,
    check: bool = True,
) -> tuple[dict, dict]:
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


class BlockRunner:
    """Runs a block function over the pool items of every partition, in order.

    Per-item arrays are concatenated (one entry per pool item, in pool order) and sums
    are added in partition order, whether the blocks run here or on dask workers.
    """

    def __init__(
        self,
        source: PoolSource,
        pool: np.ndarray,
        block_rows: int,
        client: distributed.Client | None = None,
        trusted: bool = False,
    ) -> None:
        self.source, self.pool, self.client = source, pool, client
        self.trusted = trusted  # features checked already (an array select validated)
        self.tasks: list[Task] = []
        for start, stop in source.partitions(block_rows):
            a, b = np.searchsorted(pool, [start, stop])
            if a == b:
                continue
            local = None if b - a == stop - start else pool[a:b] - start
            self.tasks.append((start, stop, local))

    def run(self, fn: BlockFunction, *args: object, check: bool = True) -> tuple[dict, dict]:
        """``fn(block, *args)`` over every block: per-item arrays joined, sums added.

        ``check=False`` reads blocks without the scan for NaN, inf and values too large
        to square (RALIF's second pass: the first pass scanned the same, unchanged
        files); NaN or inf that reach ``fn``'s results are still an error naming the rows.
        """
        per_item: dict[str, list] = {}
        sums: dict = {}
        for items, part in self._results(fn, args, check and not self.trusted):
            for k, v in items.items():
                per_item.setdefault(k, []).append(v)
            sums = _add(sums, part)
        return {k: np.concatenate(v) for k, v in per_item.items()}, sums

    def _read(self, task: Task, check: bool) -> np.ndarray:
        start, stop, local = task
        block = self.source.read(start, stop, check=check)
        return block if local is None else block[local]

    def _results(self, fn: BlockFunction, args: tuple, check: bool) -> Iterator[tuple[dict, dict]]:
        if self.client is None:
            # The next block is read by a second thread while this one is computed: file
            # reads release the GIL, so reading and the products overlap (two blocks held).
            with ThreadPoolExecutor(max_workers=1) as reader:
                ahead: Future[np.ndarray] | None = None
                for i, task in enumerate(self.tasks):
                    block = (ahead or reader.submit(self._read, task, check)).result()
                    more = i + 1 < len(self.tasks)
                    ahead = reader.submit(self._read, self.tasks[i + 1], check) if more else None
                    start, stop = task[:2]

                    # Read again through the reader: a source is read by one thread at a time.
                    def reread(a: int = start, b: int = stop) -> np.ndarray:
                        return reader.submit(self.source.read, a, b).result()

                    yield checked_results(fn(block, *args), reread, self.source.name, start, stop)
            return
        from ralif.pools.cluster import gather_in_order

        yield from gather_in_order(
            self.client, _run_partition, self.source, self.tasks, fn, args, check=check
        )


class PoolQuery:
    """The pool as a strategy's plan sees it: a map over blocks, rows by position.

    A strategy written once over a pool (a ``plan(query, model)`` method) runs through
    this object whether the pool is an array in memory (:meth:`in_memory`) or a source
    read in blocks, here, on a GPU or on dask workers (:func:`ralif.pools.streaming.streamed_select`).

    Parameters
    ----------
    strat : Strategy
        The strategy whose plan runs.
    source : PoolSource
        Where the rows are.
    runner : BlockRunner
        What maps block functions over the pool's rows.
    pool : ndarray of int
        The unlabeled items (rows of the source), ascending; positions index it.
    labeled : ndarray of int
        The labeled rows, ascending.
    X_labeled, y_labeled : ndarray
        The labeled items' features and labels, in row order.
    budget : int
        Items to pick.
    rng : numpy.random.Generator
        The query's only source of randomness.
    device : str
        Where block products run (:func:`ralif.pools.devices.block_device`).

    Attributes
    ----------
    max_candidates : int or None
        The candidate cap of a streamed query (None: none, as in memory).
    streamed : bool
        The pool is a source read in blocks, not an array held in memory.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import Margin
    >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
    >>> y[:6] = [0, 1] * 3
    >>> pool = np.flatnonzero(y < 0)
    >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
    >>> q.take(np.array([0, 1])).shape, len(q.sample())
    ((2, 3), 44)
    """

    def __init__(
        self,
        strat: Any,
        source: PoolSource,
        runner: BlockRunner,
        pool: np.ndarray,
        labeled: np.ndarray,
        X_labeled: np.ndarray,
        y_labeled: np.ndarray,
        budget: int,
        rng: np.random.Generator,
        device: str,
    ) -> None:
        self.strat, self.source, self.runner, self.pool = strat, source, runner, pool
        self.labeled = labeled
        self.X_labeled, self.y_labeled = X_labeled, y_labeled
        self.budget, self.rng, self.device = budget, rng, device
        self.max_candidates: int | None = None
        self.streamed = False  # a pool source read in blocks (else an array in memory)
        self.n_candidates = 0
        self.capped = False
        self.seconds: dict[str, float] = {}

    @classmethod
    def in_memory(
        cls,
        strat: Any,
        X: np.ndarray,
        y: np.ndarray,
        pool: np.ndarray,
        budget: int,
        rng: np.random.Generator,
    ) -> PoolQuery:
        """Build the query over the rows of an array, already checked, without a cap.

        Parameters
        ----------
        strat : Strategy
            The strategy whose plan runs.
        X : ndarray of shape (N, d)
            The features of every item, labeled or not.
        y : ndarray of shape (N,)
            The labels, -1 for an unlabeled item.
        pool : ndarray of int
            The unlabeled items (rows of ``X``), ascending.
        budget : int
            Items to pick.
        rng : numpy.random.Generator
            The query's only source of randomness.

        Returns
        -------
        PoolQuery
            The query, over ``X`` held in memory, on the CPU.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> q.streamed, q.max_candidates, len(q.pool)
        (False, None, 44)
        """
        source = ArrayPool(X)
        labeled = np.flatnonzero(y >= 0)
        runner = BlockRunner(source, pool, source.block_rows_for(), trusted=True)
        return cls(strat, source, runner, pool, labeled, X[labeled], y[labeled], budget, rng, "cpu")

    def map(self, fn: BlockFunction, *args: object, check: bool = True) -> tuple[dict, dict]:
        """Map a block function over the pool items of every block, in pool order.

        Per-item arrays are joined in pool order and sums added in block order
        (:class:`BlockRunner`).

        Parameters
        ----------
        fn : callable
            ``fn(block, device, *args) -> (per-item arrays, sums)``, both dicts by name;
            ``block`` holds the features of the pool items of one block.
        *args : object
            Passed on to ``fn`` after the device.
        check : bool, default=True
            Scan the blocks for NaN and inf; ``False`` skips that scan (NaN or inf that
            reach ``fn``'s results are still an error naming the rows).

        Returns
        -------
        per_item : dict of str to ndarray
            Each per-item array, one entry per pool item, in pool order.
        sums : dict
            Each sum, added over the blocks.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> def norms(block, device):
        ...     return {"norm": (block**2).sum(axis=1)}, {"n": len(block)}
        >>> per_item, sums = q.map(norms)
        >>> per_item["norm"].shape, sums["n"]
        ((44,), 44)
        """
        return self.runner.run(fn, self.device, *args, check=check)

    def run(self, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """Run the strategy's plan, fitting its model first where it needs one.

        Parameters
        ----------
        model : classifier or None
            The strategy's model: fitted on the labeled items unless it is fitted
            already; None for the strategy's default model.

        Returns
        -------
        picks : ndarray of int
            The picked rows of the source.
        scores : ndarray of shape (len(pool),)
            The strategy's score of every pool item.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> picks, scores = q.run(None)
        >>> len(picks), scores.shape
        (4, (44,))
        """
        strat = self.strat
        strat.model_ = strat.network_ = None
        if strat.needs_model and len(np.unique(self.y_labeled)) < 2:
            return self.too_few_classes()
        if strat.needs_model:
            with self.timed("model"):
                strat.model_ = strat._fitted_model(model, self.X_labeled, self.y_labeled)
        return strat.plan(self, strat.model_)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time the ``with`` block, adding its seconds to ``seconds[stage]``.

        Parameters
        ----------
        stage : str
            The name the seconds are added under.

        Yields
        ------
        None
            Once, while the timed block runs.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> with q.timed("scores"):
        ...     pass
        >>> sorted(q.seconds)
        ['scores']
        """
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t

    def check_unchanged(self) -> None:
        """Refuse a pool whose files changed since the query began.

        A second pass over the pool must read what the first read.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> q.check_unchanged()
        """
        self.source.check_unchanged()

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Read the features of the pool items at ``positions``, in that order.

        Parameters
        ----------
        positions : ndarray of int
            Positions into ``pool`` (not rows of the source).

        Returns
        -------
        ndarray of shape (len(positions), d)
            The items' features.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> bool((q.take(np.array([0, 1])) == X[[6, 7]]).all())
        True
        """
        self.source.check_unchanged()
        self.n_candidates = len(positions)
        with self.timed("read candidates"):
            return self.source.take(self.pool[positions])

    def capped_candidates(self, positions: np.ndarray) -> np.ndarray:
        """Cut candidates ordered best first to the first ``max_candidates`` of them.

        Parameters
        ----------
        positions : ndarray of int
            Candidates' positions into ``pool``, best first.

        Returns
        -------
        ndarray of int
            ``positions``, or its first ``max_candidates`` where it is longer (the query
            is then marked ``capped``).

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> q.max_candidates = 3
        >>> q.capped_candidates(np.array([9, 4, 7, 1, 0])), q.capped
        (array([9, 4, 7]), True)
        """
        if self.max_candidates is not None and len(positions) > self.max_candidates:
            self.capped = True
            return positions[: self.max_candidates]
        return positions

    def sample(self) -> np.ndarray:
        """Choose the positions of the pool whose features the diversity step reads.

        Returns
        -------
        ndarray of int
            Every position, or (past the cap) a uniform sample of ``max_candidates`` of
            them, ascending.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> len(q.sample())
        44
        >>> q.max_candidates = 5
        >>> len(q.sample()), q.capped
        (5, True)
        """
        n = len(self.pool)
        if self.max_candidates is None or n <= self.max_candidates:
            return np.arange(n)
        self.capped = True
        return np.sort(self.rng.choice(n, self.max_candidates, replace=False))

    def gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Gather the labeled rows and the pool's as an array in memory, in row order.

        For a strategy whose query needs every row at once (k-means over the data, as
        TypiClust's): over an array without a cap this is the array itself; past the
        cap, the pool's rows are a sample (:meth:`sample`).

        Returns
        -------
        X : ndarray of shape (n, d)
            The features of the labeled rows and the pool's (sampled) rows.
        y : ndarray of shape (n,)
            Their labels, -1 for the pool's.
        local_pool : ndarray of int
            The pool's rows in ``X``, ascending.
        sample : ndarray of int
            Their positions in ``pool``.

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> Xg, yg, local_pool, sample = q.gathered()
        >>> Xg.shape, bool((Xg == X).all()), bool((local_pool == pool).all())
        ((50, 3), True, True)
        """
        sample = self.sample()
        rows = np.concatenate([self.labeled, self.pool[sample]])
        order = np.argsort(rows, kind="stable")
        X = np.concatenate([self.X_labeled, self.take(sample).astype(self.X_labeled.dtype)])
        y = np.concatenate([self.y_labeled, np.full(len(sample), -1)])
        X, y = X[order], y[order]
        local_pool = np.flatnonzero(y < 0)  # the sampled pool rows, ascending as sample
        return X, y, local_pool, sample

    def run_in_memory(
        self, query: Callable[..., tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a query over arrays in memory on the :meth:`gathered` rows.

        Parameters
        ----------
        query : callable
            ``query(X, y, pool, budget, rng) -> (picks, scores)`` over the gathered
            rows: ``pool`` and ``picks`` are rows of ``X``, ``scores`` one per ``pool``
            item.

        Returns
        -------
        picks : ndarray of int
            The picks as rows of the source.
        scores : ndarray of shape (len(pool),)
            The scores over the whole pool (NaN outside a sample).

        Examples
        --------
        >>> import numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = [0, 1] * 3
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> def first(X, y, pool, budget, rng):
        ...     return pool[:budget], np.zeros(len(pool))
        >>> picks, scores = q.run_in_memory(first)
        >>> picks, scores.shape
        (array([6, 7, 8, 9]), (44,))
        """
        X, y, local_pool, sample = self.gathered()
        picks, sample_scores = query(X, y, local_pool, self.budget, self.rng)
        scores = np.full(len(self.pool), np.nan)
        scores[sample] = sample_scores
        return self.pool[sample[np.searchsorted(local_pool, picks)]], scores

    def too_few_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """Run the strategy's fallback for labels of fewer than two classes.

        A model-based strategy cannot fit its model then; its fallback runs over the
        labeled rows and the pool's (:meth:`run_in_memory`) where it reads features,
        while random picks need none.

        Returns
        -------
        picks : ndarray of int
            The picked rows of the source.
        scores : ndarray of shape (len(pool),)
            The fallback's scores (NaN for random picks).

        Examples
        --------
        >>> import warnings, numpy as np
        >>> from ralif.strategies import Margin
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = np.full(50, -1)
        >>> y[:6] = 0
        >>> pool = np.flatnonzero(y < 0)
        >>> q = PoolQuery.in_memory(Margin(), X, y, pool, 4, np.random.default_rng(0))
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # Margin warns it picks at random
        ...     picks, scores = q.too_few_classes()
        >>> len(picks), bool(np.isnan(scores).all())
        (4, True)
        """
        if not self.strat.fallback_reads_features:
            return self.strat._too_few_classes(
                None, self.y_labeled, self.pool, self.budget, self.rng
            )
        return self.run_in_memory(self.strat._too_few_classes)
