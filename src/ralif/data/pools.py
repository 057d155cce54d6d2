"""Pool sources as benchmark data: recognizing one, its labels, its split, its fingerprint.

A pool source (a ``.npy`` or ``.parquet`` file, a folder or glob of ``.npy`` shards:
:func:`ralif.pools.sources.open_pool`) is too large for memory. ``ralif bench`` splits its rows
into pool and test rows with a fixed seed, reads the test rows and the labels whole, and
streams the pool rows; this module holds the data part of that, and the runner wraps
the pool rows for streaming.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ralif._validation import RalifInputError, _format_rows

if TYPE_CHECKING:
    from ralif.pools.sources import PoolSource

_NAMED_DATASETS = ("fashion-mnist", "digits")


def is_pool_dataset(name: str) -> bool:
    """Whether ``--dataset`` names a pool source rather than a dataset held in memory.

    A pool source is a ``.npy`` or ``.parquet`` file, a folder of ``.npy`` shards or of
    ``.parquet`` files, or a glob of ``.npy`` shards (:func:`ralif.pools.sources.open_pool`);
    the names of built-in and suite data sets come first.

    Parameters
    ----------
    name : str
        The ``--dataset`` argument.

    Returns
    -------
    bool
        True for a pool source (whether or not it exists; opening it checks that).
    """
    from ralif.data.suite import _LOADERS
    from ralif.pools.sources import is_pool_spec

    name = str(name)
    if name in _NAMED_DATASETS or name in _LOADERS:
        return False
    return is_pool_spec(name) or Path(name).suffix.lower() in (".npy", ".parquet")


def load_pool_labels(path: str | os.PathLike, n_rows: int) -> np.ndarray:
    """The labels of a pool source: a ``.npy`` file of ``n_rows`` integers ``>= 0``.

    The benchmark is the oracle, so every row needs its label. The file is refused by
    its header (length, pickled objects) before it is read.

    Parameters
    ----------
    path : path-like
        A ``.npy`` file.
    n_rows : int
        Rows of the pool source.

    Returns
    -------
    ndarray of int64, shape (n_rows,)
    """
    from ralif.io import load_labels

    if Path(path).suffix.lower() != ".npy":
        raise RalifInputError(f"--labels must be a .npy file of integer labels, got {path}")
    y = load_labels(path, n_rows=n_rows)
    if y.ndim != 1:
        raise RalifInputError(f"labels ({path}) must be 1-D, one per pool row; got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise RalifInputError(
            f"labels ({path}) must hold integer class labels, got dtype {y.dtype}; "
            "save them with np.save(path, y.astype(int))"
        )
    if y.dtype.kind == "u" and y.dtype.itemsize == 8:
        # Checked before the cast: values of 2**63 and more would wrap to negative.
        huge = np.flatnonzero(y > np.iinfo(np.int64).max)
        if len(huge):
            raise RalifInputError(
                f"labels ({path}) must be class ids below 2**63; larger in rows "
                f"{_format_rows(huge)}"
            )
    negative = np.flatnonzero(y < 0)
    if len(negative):
        raise RalifInputError(
            f"labels ({path}) must label every row with a class >= 0 (the benchmark is the "
            f"oracle); negative in rows {_format_rows(negative)}"
        )
    return y.astype(np.int64)


def pool_split(
    n_rows: int,
    test_size: int,
    pool_size: int | None = None,
    y: np.ndarray | None = None,
    imbalance: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pool rows and the test rows of a pool source, drawn with a fixed seed.

    ``test_size`` rows form the test set; the pool is the other rows, long-tailed with
    ``imbalance`` (by the labels ``y``) and then subsampled to ``pool_size`` when given.

    Parameters
    ----------
    n_rows : int
        Rows of the pool source.
    test_size : int
        Rows drawn for the test set, in ``[1, n_rows - 1]``.
    pool_size : int, optional
        Keep a random ``pool_size`` of the pool rows (all when None or larger).
    y : ndarray of int, shape (n_rows,), optional
        The labels of every row; needed with ``imbalance``.
    imbalance : float, optional
        Above 1, the pool is made long-tailed with this ratio of the largest class to
        the smallest (:func:`ralif.data.transforms.long_tailed_indices`).

    Returns
    -------
    pool_rows, test_rows : ndarray of int, ascending and disjoint
    """
    if not 1 <= test_size < n_rows:
        raise RalifInputError(
            f"--test-size must be in [1, {n_rows - 1}] for a pool of {n_rows} rows, got {test_size}"
        )
    rng = np.random.default_rng([0, 0x7E57])
    test = np.sort(rng.choice(n_rows, test_size, replace=False))
    pool = np.setdiff1d(np.arange(n_rows), test, assume_unique=True)
    if imbalance is not None and imbalance > 1:
        from ralif.data.transforms import long_tailed_indices

        assert y is not None, "a long-tailed pool needs the labels y"
        pool = pool[long_tailed_indices(y[pool], imbalance)]
    if pool_size and pool_size < len(pool):
        pool = pool[np.sort(rng.choice(len(pool), pool_size, replace=False))]
    return pool, test


def pool_name(spec: str | os.PathLike) -> str:
    """A pool source's name, the same from any folder: that of its file or folder.

    A glob keeps its pattern after the name of its folder (``feats/part-*.npy``).

    Parameters
    ----------
    spec : path-like
        The ``--dataset`` argument.

    Returns
    -------
    str
    """
    path = Path(str(spec))
    if any(c in path.name for c in "*?["):
        return f"{path.parent.resolve().name}/{path.name}"
    return path.resolve().name or str(spec)


FINGERPRINT_FIELDS = {
    "rows": "rows",
    "features": "features per row",
    "labels_sha256": "labels",
    "test_rows_sha256": "features of the test rows",
}
"""The keys of :func:`pool_fingerprint`, and what each stands for in a message."""


def sha256_hex(a: np.ndarray) -> str:
    """The SHA-256 of a contiguous array's bytes, in hex."""
    return hashlib.sha256(a.data.cast("B")).hexdigest()


def pool_fingerprint(n_rows: int, n_features: int, y: np.ndarray, X_test: np.ndarray) -> dict:
    """What makes a pool source's split and its rows the same (:data:`FINGERPRINT_FIELDS`).

    Parameters
    ----------
    n_rows, n_features : int
        The source's shape.
    y : ndarray of int, shape (n_rows,)
        The labels of every row.
    X_test : ndarray, shape (n_test, n_features)
        The test rows' values: they stand for the features, as other shards of the same
        shape give other test rows.

    Returns
    -------
    dict
        JSON-serializable.
    """
    return {
        "rows": int(n_rows),
        "features": int(n_features),
        "labels_sha256": sha256_hex(np.ascontiguousarray(y, dtype=np.int64)),
        "test_rows_sha256": sha256_hex(np.ascontiguousarray(X_test, dtype=np.float64)),
    }


@dataclass
class PoolSplit:
    """A pool source split for a benchmark: its rows stay in the source, read by index."""

    name: str
    """:func:`pool_name` of the source."""
    source: PoolSource
    """The :class:`ralif.pools.sources.PoolSource`."""
    y: np.ndarray
    """The labels of every row of the source."""
    pool: np.ndarray
    """The pool rows (:func:`pool_split`)."""
    test: np.ndarray
    """The test rows."""
    X_test: np.ndarray
    """The test rows' features, read."""
    fingerprint: dict
    """:func:`pool_fingerprint`."""


def split_pool_source(
    spec: str | os.PathLike,
    labels: str | os.PathLike,
    test_size: int,
    pool_size: int | None = None,
    imbalance: float | None = None,
) -> PoolSplit:
    """Open a pool source, read its labels and test rows, and split it (:func:`pool_split`).

    Parameters
    ----------
    spec : path-like
        The pool source (:func:`is_pool_dataset`).
    labels : path-like
        Its labels (:func:`load_pool_labels`).
    test_size, pool_size, imbalance
        As for :func:`pool_split`.

    Returns
    -------
    PoolSplit
    """
    from ralif.pools.sources import open_pool

    source = open_pool(spec)
    y = load_pool_labels(labels, source.n_rows)
    pool, test = pool_split(source.n_rows, test_size, pool_size, y, imbalance)
    X_test = source.take(test)
    fingerprint = pool_fingerprint(source.n_rows, source.n_features, y, X_test)
    return PoolSplit(pool_name(spec), source, y, pool, test, X_test, fingerprint)
