"""The one-call entry point."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ralif.strategies import Strategy, make_strategy


def select(
    X: np.ndarray,
    y: np.ndarray,
    budget: int,
    strategy: str | Strategy = "ralif",
    random_state: object = None,
    *,
    model: object = None,
    exclude: object = None,
    **params: object,
) -> np.ndarray:
    """Choose which unlabeled items a person should label next.

    Parameters
    ----------
    X : array-like of shape (N, d), or a path
        Features of all items (e.g. embeddings from a frozen encoder). float32 input
        stays float32 throughout. A ``dask.array``, a :class:`ralif.pools.sources.PoolSource`,
        a folder or glob of ``.npy`` shards, or a file too large for memory is streamed
        (:func:`ralif.pools.sources.stream_reason`, the rule every front end follows): read in
        blocks, never whole, on the dask client's workers when one is running (see
        :func:`ralif.pools.streaming.streamed_select` for the candidate cap and the strategies
        that stream). A features file that fits is read whole.
    y : array-like of shape (N,)
        Integer class labels; ``-1`` marks unlabeled items (scikit-learn's
        semi-supervised convention).
    budget : int
        How many items to choose.
    strategy : str or Strategy, default="ralif"
        A name of ``ralif.STRATEGIES``, ``"module:Class"``, or a strategy object, such
        as one of your own (a subclass of :class:`ralif.Strategy`); an object is cloned,
        not changed.
    random_state : None, int or Generator
        Seed; the same seed gives the same picks (None keeps an object's own seed).
    model : classifier, optional
        The model for strategies that need one: fitted on the labeled items (used as
        it is) or unfitted (fitted here); see :meth:`ralif.Strategy.select`.
    exclude : array-like of bool or int, optional
        Items out of play, such as a held-out evaluation set: a mask of ``N`` entries
        or their indices. They are never picked, and neither their features nor their
        labels take part.
    **params
        Passed to the strategy, e.g. ``l2=0.01`` or ``tau=4`` for RALIF.

    Returns
    -------
    indices : ndarray of shape (budget,)
        Distinct indices into ``X`` of unlabeled items, in the order picked.

    Examples
    --------
    >>> import numpy as np, ralif
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); y = np.full(300, -1)
    >>> y[:10] = (X[:10, 0] > 0).astype(int)
    >>> ralif.select(X, y, budget=5, l2=0.1, random_state=0).shape
    (5,)
    """
    from ralif.pools.sources import stream_reason

    if stream_reason(X):
        return _select_streamed(X, y, budget, strategy, random_state, model, exclude, params)
    if isinstance(X, (str, os.PathLike)):  # a features file that fits in memory
        from ralif.io import load_features

        X = load_features(X)
    return make_strategy(strategy, random_state=random_state, **params).select(
        X, y, budget, model=model, exclude=exclude
    )


def _select_streamed(
    X: object,
    y: np.ndarray,
    budget: int,
    strategy: str | Strategy,
    random_state: object,
    model: object,
    exclude: object,
    params: dict[str, Any],
) -> np.ndarray:
    """A pool that may not fit in memory: read in blocks (on the dask client's workers
    when there is one), never whole."""
    from ralif._validation import check_exclude
    from ralif.pools.cluster import default_client
    from ralif.pools.sources import is_dask_array, open_pool
    from ralif.pools.streaming import streamed_select

    source = open_pool(X)
    client = default_client() if is_dask_array(X) else None
    rows = None if exclude is None else check_exclude(exclude, source.n_rows)
    query = streamed_select(
        source, y, budget, strategy, random_state, model=model, client=client, rows=rows, **params
    )
    return query.picks
