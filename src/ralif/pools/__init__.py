"""Pools: the items to choose from, read in blocks or held in memory, and the one query path.

- :mod:`ralif.pools.sources`: pool sources (``.npy`` shards, Parquet, array-likes, dask
  arrays), read in blocks or by index, checked;
- :mod:`ralif.pools.query`: a strategy's plan over a pool (:class:`~ralif.pools.query.PoolQuery`);
- :mod:`ralif.pools.devices`: where block products run (NumPy, or torch on a GPU);
- :mod:`ralif.pools.streaming`: streamed queries over a pool source, the candidate cap;
- :mod:`ralif.pools.cluster`: the passes on a ``dask.distributed`` cluster.

Nothing is imported here: a strategy reads :mod:`ralif.pools.query` without the runner.
"""
