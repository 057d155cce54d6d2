"""Pools read in blocks, never whole: memory-mapped ``.npy`` shards, Parquet, array-likes.

A streamed query (:mod:`ralif.pools.streaming`) reads the pool twice, block by block, and then
a few rows by index (the labeled items, the candidates). A :class:`PoolSource` offers
exactly that, and checks what it reads: every block is refused with a message naming
its shard when it holds NaN or inf, shards must share one width, and a pool that changes
between the passes (a shard rewritten, grown, removed) is refused by comparing each
shard's size, modification time and inode with those seen when it was opened.

Sources
-------
* a path to one ``.npy`` file (memory-mapped), a folder of ``.npy`` shards, or a glob
  such as ``'shards/*.npy'``: shards are taken in series order (part-2 before part-10);
* a ``.parquet`` file or a folder of them (numeric columns, or one fixed-size list
  column), read through ``pyarrow.dataset``;
* in Python, any array-like with ``shape``, ``dtype`` and row slicing (``np.memmap``,
  ``h5py`` datasets, zarr arrays), or a ``dask.array``.
"""

from __future__ import annotations

import glob as _glob
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from ralif._files import _npy_layout, _refuse_pickled, _size, max_array_bytes, os_error
from ralif._validation import RalifInputError, _check_finite

DEFAULT_BLOCK_BYTES = 32 << 20
"""Bytes of pool features read per block unless told otherwise."""

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Shard:
    """One file of a sharded pool: where it is, its rows in the pool, how it looked.

    ``stamp`` is ``(size, mtime_ns, inode)`` when the shard was first opened; a later
    read compares it with the file as it is then.
    """

    path: str
    start: int
    stop: int
    stamp: tuple[int, int, int]


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))


def check_shard_unchanged(shard: Shard) -> None:
    """Refuse a shard that is gone or differs from when the pool was opened."""
    with os_error("read", f"pool shard {shard.path}"):
        try:
            now = _stamp(shard.path)
        except FileNotFoundError:
            raise RalifInputError(
                f"pool shard {shard.path} is missing: it was removed after the pool was opened"
            ) from None
    if now != shard.stamp:
        raise RalifInputError(
            f"pool shard {shard.path} changed while the pool was being read (size or "
            "modification time differs from the first pass); run the query again on a "
            "pool that is not being written"
        )


def checked_block(
    block: np.ndarray,
    where: str,
    first_row: int | np.ndarray,
    width: int,
    finite: bool = True,
) -> np.ndarray:
    """A block as float32/float64 rows of ``width`` finite values, else an error naming ``where``.

    Parameters
    ----------
    block : array-like of shape (n, width)
        The rows read.
    where : str
        What they were read from (a shard's path, the array's name), for messages.
    first_row : int or ndarray of shape (n,)
        The row of ``where`` the block starts at, or (rows read by index) the row of
        ``where`` of each block row, so that the message names the rows.
    width : int
        Features per row.
    finite : bool, default=True
        Scan for NaN, inf and values too large to square and sum; ``False`` leaves the
        scan out (a caller that finds them in its own results reads the block again,
        checked). The dtype and the width are always checked.

    Returns
    -------
    ndarray
        The block as float32 or float64 (other numeric types become float64).
    """
    arr = np.asarray(block)
    if arr.dtype.kind not in "fiub":
        raise RalifInputError(f"{where} must be numeric, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise RalifInputError(
            f"{where} has rows of shape {arr.shape[1:]} but the pool has {width} features"
        )
    if finite:
        _check_finite(arr, where, first_row)
    return arr


def finite_results(results: object) -> bool:
    """Whether every number in a block function's results is finite.

    NaN or inf in a block's features reaches every row-wise product with them, so a pass
    that finds its results finite needs no scan of its own over the block.

    Parameters
    ----------
    results : object
        A nest of tuples, lists and dicts of arrays and numbers.

    Returns
    -------
    bool
        False where any floating-point number in it is NaN or infinite.
    """
    if isinstance(results, dict):
        return all(finite_results(v) for v in results.values())
    if isinstance(results, (tuple, list)):
        return all(finite_results(v) for v in results)
    arr = np.asarray(results)
    return arr.dtype.kind not in "fc" or bool(np.isfinite(arr).all())


class PoolSource:
    """Rows of a pool, read in blocks or by index; never the whole pool at once.

    Attributes
    ----------
    n_rows : int
        Items in the pool.
    n_features : int
        Features per item.
    dtype : numpy.dtype
        The dtype blocks come in (float32 or float64).
    name : str
        What the pool is, for messages.

    Examples
    --------
    >>> import numpy as np
    >>> pool = open_pool(np.arange(12.0).reshape(6, 2))
    >>> pool.shape, pool.read(2, 4).tolist()
    ((6, 2), [[4.0, 5.0], [6.0, 7.0]])
    """

    n_rows: int
    n_features: int
    dtype: np.dtype
    name: str

    @property
    def shape(self) -> tuple[int, int]:
        """The pool's shape, ``(n_rows, n_features)``.

        Examples
        --------
        >>> import numpy as np
        >>> open_pool(np.arange(12.0).reshape(6, 2)).shape
        (6, 2)
        """
        return (self.n_rows, self.n_features)

    def partitions(self, block_rows: int) -> list[tuple[int, int]]:
        """Split the pool into row ranges of at most ``block_rows`` rows, in order.

        A range never crosses a shard boundary.

        Parameters
        ----------
        block_rows : int
            The most rows in one range.

        Returns
        -------
        list of tuple of (int, int)
            The ``(start, stop)`` ranges, covering the pool in order.

        Examples
        --------
        >>> import numpy as np
        >>> open_pool(np.arange(12.0).reshape(6, 2)).partitions(4)
        [(0, 4), (4, 6)]
        """
        out: list[tuple[int, int]] = []
        for lo, hi in self._pieces():
            out.extend((s, min(hi, s + block_rows)) for s in range(lo, hi, block_rows))
        return out

    def _pieces(self) -> list[tuple[int, int]]:
        return [(0, self.n_rows)]

    def read(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        """Read rows ``start:stop`` (within one partition), checked.

        Parameters
        ----------
        start, stop : int
            The rows to read, within one range of :meth:`partitions`.
        check : bool, default=True
            Scan the rows for NaN and inf; ``False`` skips only that scan (dtype and
            width are always checked): for a pass that finds them in its own results and
            then reads the block again, checked, to name the rows.

        Returns
        -------
        ndarray of shape (stop - start, n_features)
            The rows, of the pool's ``dtype``.

        Examples
        --------
        >>> import numpy as np
        >>> open_pool(np.arange(12.0).reshape(6, 2)).read(2, 4)
        array([[4., 5.],
               [6., 7.]])
        """
        raise NotImplementedError

    def blocks(self, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first row, block)`` over the whole pool, in order.

        Parameters
        ----------
        block_rows : int
            The most rows in one block (:meth:`partitions`).

        Yields
        ------
        tuple of (int, ndarray)
            The block's first row in the pool, and its rows, checked.

        Examples
        --------
        >>> import numpy as np
        >>> pool = open_pool(np.arange(12.0).reshape(6, 2))
        >>> [(start, block.shape) for start, block in pool.blocks(4)]
        [(0, (4, 2)), (4, (2, 2))]
        """
        for start, stop in self.partitions(block_rows):
            yield start, self.read(start, stop)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Read the rows at ``rows``, in that order, checked.

        Parameters
        ----------
        rows : array-like of int
            Rows of the pool, in any order (repeats are not needed).

        Returns
        -------
        ndarray of shape (len(rows), n_features)
            The rows, of the pool's ``dtype``.

        Examples
        --------
        >>> import numpy as np
        >>> open_pool(np.arange(12.0).reshape(6, 2)).take(np.array([5, 0]))
        array([[10., 11.],
               [ 0.,  1.]])
        """
        rows = np.asarray(rows, dtype=np.intp)
        out = np.empty((len(rows), self.n_features), dtype=self.dtype)
        if len(rows) == 0:
            return out
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise RalifInputError(f"row indices outside the pool of {self.n_rows} rows")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        for lo, hi in self._pieces():
            a, b = np.searchsorted(sorted_rows, [lo, hi])
            if a < b:
                out[order[a:b]] = self._take_piece(lo, hi, sorted_rows[a:b])
        return out

    def _take_piece(self, lo: int, hi: int, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_unchanged(self) -> None:
        """Refuse a pool that changed since it was opened (nothing to check by default).

        Examples
        --------
        >>> import numpy as np
        >>> open_pool(np.arange(12.0).reshape(6, 2)).check_unchanged()
        """

    def block_rows_for(self, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
        """Compute the rows per block that make one block about ``block_bytes``.

        Parameters
        ----------
        block_bytes : int, default=DEFAULT_BLOCK_BYTES
            Bytes of features in one block.

        Returns
        -------
        int
            Rows per block, at least 1.

        Examples
        --------
        >>> import numpy as np
        >>> open_pool(np.arange(12.0).reshape(6, 2)).block_rows_for(1024)
        64
        """
        return max(1, block_bytes // max(1, self.n_features * self.dtype.itemsize))


class NpyShards(PoolSource):
    """A pool stored as ``.npy`` files with the same width, in series order (:func:`ordered_files`).

    Blocks are read with plain file reads into a buffer of the block's size (no memory
    map: the pages of a pool larger than memory never count against the process), and
    rows by index with one positioned read each.

    Parameters
    ----------
    paths : list of path-like
        The shards, in pool order.
    name : str, optional
        How to call the pool in messages.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> for k in range(2):
    ...     np.save(f"{folder}/part-{k}.npy", np.full((3, 2), k, dtype=np.float32))
    >>> pool = NpyShards([f"{folder}/part-0.npy", f"{folder}/part-1.npy"])
    >>> pool.n_rows, pool.take(np.array([4, 0])).tolist()
    (6, [[1.0, 1.0], [0.0, 0.0]])
    """

    def __init__(self, paths: Sequence[str | os.PathLike], name: str | None = None) -> None:
        if not paths:
            raise RalifInputError(f"no .npy shards found for the pool {name or ''}".strip())
        shards, layouts = [], []
        width = dtype = None
        start = 0
        for raw in paths:
            path = str(raw)
            p = Path(path)
            if not p.exists():
                raise RalifInputError(f"pool shard {path} is missing (file not found)")
            if not p.is_file():
                raise RalifInputError(f"pool shard {path} is not a regular file")
            with os_error("read", f"pool shard {path}"), open(p, "rb") as fh:
                shape, fortran, dt, header = _npy_layout(fh, f"pool shard {path}")
                stamp = _stamp(path)
            _refuse_pickled(dt, f"pool shard {path}")
            if dt.kind not in "fiub":
                raise RalifInputError(f"pool shard {path} must be numeric, got dtype {dt}")
            if len(shape) != 2:
                raise RalifInputError(
                    f"pool shard {path} must be 2-D (rows, features), got shape {shape}"
                )
            if width is None:
                width, dtype = shape[1], dt
            elif shape[1] != width:
                raise RalifInputError(
                    f"pool shard {path} has {shape[1]} features but {shards[0].path} has {width}"
                )
            if shape[1] == 0:
                raise RalifInputError(f"pool shard {path} has no feature columns")
            need = header + shape[0] * shape[1] * dt.itemsize
            if stamp[0] < need:
                raise RalifInputError(
                    f"pool shard {path} is truncated: its header announces {shape} ({dt}) "
                    f"but the file has {stamp[0]} bytes"
                )
            if dt != dtype:
                dtype = np.result_type(dtype, dt)
            shards.append(Shard(path, start, start + shape[0], stamp))
            layouts.append((header, dt, fortran))
            start += shape[0]
        if start == 0:
            raise RalifInputError(f"the pool {name or paths[0]} has no rows")
        self.shards = shards
        self._layouts = layouts
        self._files: dict[int, IO[bytes]] = {}
        self.n_rows = start
        assert width is not None  # set by the first shard; there is at least one
        self.n_features = int(width)
        self.dtype = np.dtype(dtype) if dtype in (np.float32, np.float64) else np.dtype(np.float64)
        self.name = name or (shards[0].path if len(shards) == 1 else f"{len(shards)} .npy shards")

    def __getstate__(self) -> dict:
        # Open files stay behind: a worker process opens the shards itself.
        return {**self.__dict__, "_files": {}}

    def _pieces(self) -> list[tuple[int, int]]:
        return [(s.start, s.stop) for s in self.shards]

    def _shard_of(self, row: int) -> int:
        starts = self.__dict__.get("_starts")
        if starts is None:
            starts = self._starts = np.array([s.start for s in self.shards], dtype=np.int64)
        return int(np.searchsorted(starts, row, side="right") - 1)

    def _file(self, k: int) -> IO[bytes]:
        if k not in self._files:
            shard = self.shards[k]
            check_shard_unchanged(shard)
            with os_error("read", f"pool shard {shard.path}"):
                fh = open(shard.path, "rb")
            if _stamp_of(fh) != shard.stamp:
                fh.close()
                check_shard_unchanged(shard)
            if len(self._files) >= 8:  # a bounded number of open files
                self._files.pop(next(iter(self._files))).close()
            self._files[k] = fh
        return self._files[k]

    def _raw_rows(self, k: int, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of shard ``k`` as stored, read with one file read."""
        shard = self.shards[k]
        header, dt, fortran = self._layouts[k]
        if fortran:  # column-major on disk: rows are strided, let numpy map them
            mm = np.load(shard.path, mmap_mode="r", allow_pickle=False)
            return np.array(mm[lo:hi])
        out = np.empty((hi - lo, self.n_features), dtype=dt)
        fh = self._file(k)
        row_bytes = self.n_features * dt.itemsize
        with os_error("read", f"pool shard {shard.path}"):
            got = os.preadv(fh.fileno(), [out.data.cast("B")], header + lo * row_bytes)
        if got != out.nbytes:
            raise RalifInputError(
                f"pool shard {shard.path} ended early: it was truncated while the pool was read"
            )
        return out

    def read(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        """Read rows ``start:stop`` of one shard with one file read, checked.

        Parameters
        ----------
        start, stop : int
            The rows to read, within one shard (one range of :meth:`partitions`).
        check : bool, default=True
            Scan the rows for NaN and inf; ``False`` skips only that scan.

        Returns
        -------
        ndarray of shape (stop - start, n_features)
            The rows, of the pool's ``dtype``.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> path = f"{tempfile.mkdtemp()}/pool.npy"
        >>> np.save(path, np.arange(12.0).reshape(6, 2))
        >>> NpyShards([path]).read(4, 6)
        array([[ 8.,  9.],
               [10., 11.]])
        """
        k = self._shard_of(start)
        shard = self.shards[k]
        lo = start - shard.start
        block = self._raw_rows(k, lo, stop - shard.start)
        where = f"pool shard {shard.path}"
        block = checked_block(block, where, lo, self.n_features, finite=check)
        return block.astype(self.dtype, copy=False)

    def _take_piece(self, lo: int, hi: int, rows: np.ndarray) -> np.ndarray:
        k = self._shard_of(lo)
        shard = self.shards[k]
        local = rows - shard.start
        # Runs of consecutive rows are read together: one read per run.
        breaks = np.flatnonzero(np.diff(local) != 1) + 1
        parts = [
            self._raw_rows(k, int(run[0]), int(run[-1]) + 1) for run in np.split(local, breaks)
        ]
        block = np.concatenate(parts) if parts else np.empty((0, self.n_features))
        where = f"pool shard {shard.path}"
        return checked_block(block, where, local, self.n_features).astype(self.dtype, copy=False)

    def check_unchanged(self) -> None:
        """Refuse a pool whose shards were removed or changed since it was opened.

        Each shard's size, modification time and inode are compared with those seen
        when the pool was opened.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> path = f"{tempfile.mkdtemp()}/pool.npy"
        >>> np.save(path, np.zeros((3, 2)))
        >>> pool = NpyShards([path])
        >>> pool.check_unchanged()
        >>> np.save(path, np.zeros((4, 2)))
        >>> pool.check_unchanged()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ralif._validation.RalifInputError: pool shard .../pool.npy changed while the pool was being read ...
        """
        for shard in self.shards:
            check_shard_unchanged(shard)

    def release(self) -> None:
        """Close the open shard files (they are opened again when needed).

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> path = f"{tempfile.mkdtemp()}/pool.npy"
        >>> np.save(path, np.arange(12.0).reshape(6, 2))
        >>> pool = NpyShards([path])
        >>> pool.read(0, 1)
        array([[0., 1.]])
        >>> pool.release()
        >>> pool.read(5, 6)
        array([[10., 11.]])
        """
        for fh in self._files.values():
            fh.close()
        self._files = {}


_R = TypeVar("_R")


def checked_results(
    results: _R, reread: Callable[[], object], name: str, start: int, stop: int
) -> _R:
    """A block function's results, refused where they are not finite (:func:`finite_results`).

    The block is then read again, checked (``reread``), so that NaN, inf or values too
    large in the features are an error naming the shard and rows; results that are not
    finite from finite features (a product that overflows) are an error too.
    """
    if not finite_results(results):
        reread()
        raise RalifInputError(
            f"{name}: rows {start} to {stop - 1} give scores that are not finite "
            "though their features are; the features are too large for the model's weights "
            "(rescale them)"
        )
    return results


def _stamp_of(fh: IO[bytes]) -> tuple[int, int, int]:
    st = os.fstat(fh.fileno())
    return (int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))


_DIGITS = re.compile(r"(\d+)")


def _natural_key(path: str) -> tuple:
    """A file's place in a series: its folder, then its name with every run of digits
    compared as a number, so that ``part-2`` comes before ``part-10``."""
    folder, name = os.path.split(path)
    pieces = _DIGITS.split(name)  # text, number, text, ..., text
    return (folder, *(int(x) if i % 2 else x for i, x in enumerate(pieces)))


def ordered_files(paths: list[str], what: str) -> list[str]:
    """``paths`` in series order (:func:`_natural_key`): numbers count as numbers, so
    unpadded and zero-padded numbering give the same order. Two names that differ only in
    the width of a number (``part-1``, ``part-01``) leave the order ambiguous and are
    refused, as is a numbered series with a gap, naming the first missing file.
    """
    ordered = sorted(paths, key=_natural_key)
    for a, b in itertools.pairwise(ordered):
        if _natural_key(a) == _natural_key(b):
            raise RalifInputError(
                f"{what} {a} and {b} carry the same number written two ways, so their order "
                "is ambiguous; number the files one way"
            )
    gap = _numbered_gaps(ordered)
    if gap is not None:
        raise RalifInputError(f"{what} {gap} is missing: the files are numbered with a gap")
    return ordered


def _numbered_gaps(paths: list[str]) -> str | None:
    """The first missing number when every file is named ``<prefix><number><suffix>``
    (``paths`` in series order)."""
    pattern = re.compile(r"^(.*?)(\d+)(\D*)$")
    matches = [pattern.match(os.path.basename(p)) for p in paths]
    parts = [m for m in matches if m is not None]
    if len(paths) < 2 or len(parts) != len(matches):
        return None
    stems = {(m.group(1), m.group(3)) for m in parts}
    if len(stems) != 1:
        return None
    numbers = [int(m.group(2)) for m in parts]
    widths = {len(m.group(2)) for m in parts}
    width = widths.pop() if len(widths) == 1 else 1  # zero-padded, or not
    for a, b in itertools.pairwise(numbers):
        if b != a + 1:
            prefix, suffix = stems.pop()
            folder = os.path.dirname(paths[0])
            return os.path.join(folder, f"{prefix}{a + 1:0{width}d}{suffix}")
    return None


class ParquetPool(PoolSource):
    """A pool in Parquet files, read in bounded slices, one file at a time.

    The features are every column (all numeric), or the one column holding fixed-size
    lists of numbers. Files are taken in series order (:func:`ordered_files`). Every
    file must have the first file's columns: they are matched by name, so a file with
    the same columns in another order gives the same rows, and a file with another
    column (renamed, missing, of text, a list of another width) is refused by name.
    A row group is read in slices of at most :data:`DEFAULT_BLOCK_BYTES` (and of a
    sixteenth of :func:`ralif._files.max_array_bytes`), never whole.

    Parameters
    ----------
    path : path-like
        A ``.parquet`` file or a folder of them.

    Examples
    --------
    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> folder = tempfile.mkdtemp()
    >>> pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3, 4]}), f"{folder}/part-0.parquet")
    >>> pq.write_table(pa.table({"b": [6], "a": [5.0]}), f"{folder}/part-1.parquet")
    >>> ParquetPool(folder).take(np.array([2, 0]))
    array([[5., 6.],
           [1., 3.]])
    """

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise RalifInputError(
                "reading .parquet needs pyarrow: pip install 'ralif[parquet]'"
            ) from None
        self._pa = pa
        p = Path(path)
        if p.is_dir():
            files = [str(f) for f in p.glob("*.parquet")]
        else:
            files = [str(p)]
        if not files:
            raise RalifInputError(f"no .parquet files in {p}")
        files = ordered_files(files, "Parquet file")
        shards: list[Shard] = []
        slices: list[tuple[int, int, int, int]] = []
        kinds: list[list] = []
        start = 0
        for f in files:
            if not Path(f).is_file():
                raise RalifInputError(f"Parquet file {f} is not a regular file")
            try:
                meta = pq.read_metadata(f)
                schema = meta.schema.to_arrow_schema()
            except Exception as exc:  # pyarrow raises several unrelated types for bad files
                raise RalifInputError(f"cannot read Parquet file {f} (corrupt): {exc}") from None
            if not shards:
                self._columns, width, list_column = _parquet_layout(schema, f)
                self._list_column = list_column
            kinds.append(
                _parquet_check_schema(schema, f, self._columns, width, list_column, files[0])
            )
            first = start
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if n:
                    slices.append((start, start + n, len(shards), g))
                start += n
            shards.append(Shard(f, first, start, _stamp(f)))
        self.shards = shards
        self.n_rows = start
        self.n_features = int(width)
        all_f32 = all(pa.types.is_float32(t) for ts in kinds for t in ts)
        self.dtype = np.dtype(np.float32 if all_f32 else np.float64)
        self.name = str(p)
        if self.n_rows == 0:
            raise RalifInputError(f"the Parquet pool {p} has no rows")
        # A row group is read in slices no larger than a block (and a sixteenth of the
        # memory cap): blocks never cross a slice, and each slice is read once.
        budget = DEFAULT_BLOCK_BYTES
        cap = max_array_bytes()
        if cap is not None:
            budget = min(budget, cap // 16)
        self._slice_rows = max(1, budget // (self.n_features * self.dtype.itemsize))
        self._slices = [
            (s, min(hi, s + self._slice_rows), k, g, s - lo)
            for lo, hi, k, g in slices
            for s in range(lo, hi, self._slice_rows)
        ]
        self._slice_starts = np.array([s[0] for s in self._slices], dtype=np.int64)
        self._local = threading.local()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_pa", "_local")}

    def __setstate__(self, state: dict) -> None:
        import pyarrow as pa

        self.__dict__.update(state)
        self._pa = pa
        self._local = threading.local()

    def _pieces(self) -> list[tuple[int, int]]:
        return [(lo, hi) for lo, hi, _, _, _ in self._slices]

    def _slice(self, row: int) -> tuple[int, np.ndarray, Shard]:
        """``(first row, rows, shard)`` of the slice holding pool row ``row``, unchecked.

        Each thread reads a row group front to back through its own batch iterator,
        restarting it only to go back.
        """
        i = int(np.searchsorted(self._slice_starts, row, side="right") - 1)
        lo, hi, k, g, offset = self._slices[i]
        shard = self.shards[k]
        state = self._local
        cached = getattr(state, "slice", None)
        if cached is not None and cached[0] == i:
            return lo, cached[1], shard
        state.slice = None  # the slice read before is let go before this one is read
        stream = getattr(state, "stream", None)
        if stream is None or stream[0] != (k, g) or stream[2] > offset:
            check_shard_unchanged(shard)
            try:
                import pyarrow.parquet as pq

                # Buffered: a column chunk is read a page at a time, not whole.
                reader = pq.ParquetFile(shard.path, buffer_size=1 << 20, pre_buffer=False)
                batches = reader.iter_batches(
                    batch_size=self._slice_rows, row_groups=[g], columns=self._columns
                )
            except Exception as exc:  # pyarrow raises several unrelated types
                raise RalifInputError(f"cannot read Parquet file {shard.path}: {exc}") from None
            stream = [(k, g), batches, 0, None]  # rows passed, the batch being read
        state.stream = None  # a failure below leaves no half-read iterator behind
        _, batches, pos, pending = stream  # rows of the group before ``pending``
        parts, at, need = [], offset, hi - lo
        try:
            while need:
                if pending is None or pending.num_rows == 0:
                    pending = next(batches)
                if pos + pending.num_rows <= at:  # wholly before the slice: passed over
                    pos, pending = pos + pending.num_rows, None
                    continue
                skip = at - pos
                take = min(pending.num_rows - skip, need)
                parts.append(pending.slice(skip, take))
                pos, pending = pos + skip + take, pending.slice(skip + take)
                if pending.num_rows == 0:
                    pending = None  # its buffers are let go before the next batch
                at, need = at + take, need - take
        except StopIteration:
            raise RalifInputError(
                f"Parquet file {shard.path} has fewer rows than its metadata says"
            ) from None
        except RalifInputError:
            raise
        except Exception as exc:  # pyarrow raises several unrelated types
            raise RalifInputError(f"cannot read Parquet file {shard.path}: {exc}") from None
        state.stream = [(k, g), batches, pos, pending]
        arr = self._to_numpy(parts, shard)
        state.slice = (i, arr)
        return lo, arr, shard

    def _to_numpy(self, batches: list, shard: Shard) -> np.ndarray:
        where = f"Parquet file {shard.path}"
        n = sum(b.num_rows for b in batches)
        out = np.empty((n, self.n_features), dtype=self.dtype)
        at = 0
        for b in batches:
            m = b.num_rows
            if self._list_column is not None:
                col = b.column(0)
                if col.null_count:
                    raise RalifInputError(f"{where} has missing feature lists")
                flat = col.flatten().to_numpy(zero_copy_only=False)
                out[at : at + m] = flat.reshape(m, self.n_features)
            else:
                for j, name in enumerate(self._columns):
                    out[at : at + m, j] = b.column(name).to_numpy(zero_copy_only=False)
            at += m
        return out

    def read(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        """Read rows ``start:stop`` of one slice of a row group, checked.

        Parameters
        ----------
        start, stop : int
            The rows to read, within one range of :meth:`partitions`.
        check : bool, default=True
            Scan the rows for NaN and inf; ``False`` skips only that scan.

        Returns
        -------
        ndarray of shape (stop - start, n_features)
            The rows, of the pool's ``dtype``.

        Examples
        --------
        >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
        >>> path = f"{tempfile.mkdtemp()}/pool.parquet"
        >>> pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]}), path)
        >>> ParquetPool(path).read(1, 3)
        array([[2., 5.],
               [3., 6.]])
        """
        lo, arr, shard = self._slice(start)
        where = f"Parquet file {shard.path}"
        block = arr[start - lo : stop - lo]
        return checked_block(block, where, start - shard.start, self.n_features, finite=check)

    def _take_piece(self, lo: int, hi: int, rows: np.ndarray) -> np.ndarray:
        first, arr, shard = self._slice(lo)
        where = f"Parquet file {shard.path}"
        return checked_block(arr[rows - first], where, rows - shard.start, self.n_features)

    def check_unchanged(self) -> None:
        """Refuse a pool whose files were removed or changed since it was opened.

        Each file's size, modification time and inode are compared with those seen
        when the pool was opened.

        Examples
        --------
        >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq
        >>> path = f"{tempfile.mkdtemp()}/pool.parquet"
        >>> pq.write_table(pa.table({"a": [1.0, 2.0]}), path)
        >>> pool = ParquetPool(path)
        >>> pool.check_unchanged()
        >>> os.remove(path)
        >>> pool.check_unchanged()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ralif._validation.RalifInputError: pool shard .../pool.parquet is missing: ...
        """
        for shard in self.shards:
            check_shard_unchanged(shard)


def _numeric_arrow(pa: Any, t: Any) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _parquet_layout(schema: Any, where: str) -> tuple[list[str], int, str | None]:
    """``(columns, width, list column)`` of a pool's first Parquet file."""
    import pyarrow as pa

    names = list(schema.names)
    if len(names) != len(set(names)):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise RalifInputError(f"Parquet file {where} has columns named twice: {dup}")
    if len(names) == 1 and pa.types.is_fixed_size_list(schema.field(0).type):
        return names, int(schema.field(0).type.list_size), names[0]
    return names, len(names), None


def _parquet_check_schema(
    schema: Any, where: str, columns: list[str], width: int, list_column: str | None, first: str
) -> list:
    """The value types of one Parquet file, refused unless it has the pool's columns."""
    import pyarrow as pa

    names = list(schema.names)
    if sorted(names) != sorted(columns) or len(set(names)) != len(names):
        raise RalifInputError(
            f"Parquet file {where} has columns {names} but the first file {first} has "
            f"{columns}: the files of a pool must have the same columns (matched by name)"
        )
    if list_column is not None:
        t = schema.field(list_column).type
        if not pa.types.is_fixed_size_list(t) or t.list_size != width:
            got = f"lists of {t.list_size} values" if pa.types.is_fixed_size_list(t) else str(t)
            raise RalifInputError(
                f"Parquet file {where}: column {list_column!r} holds {got}, but the first "
                f"file {first} holds lists of {width}"
            )
        kinds = [(list_column, t.value_type)]
    else:
        kinds = [(n, schema.field(n).type) for n in columns]
    for name, t in kinds:
        if not _numeric_arrow(pa, t):
            raise RalifInputError(
                f"Parquet file {where}: column {name!r} is not numeric ({t}); the features "
                "must be numeric columns or one fixed-size list column"
            )
    if width == 0:
        raise RalifInputError(f"Parquet file {where} has no feature columns")
    return [t for _, t in kinds]


class ArrayPool(PoolSource):
    """Any array-like with ``shape``, ``dtype`` and row slicing (``np.memmap``, h5py...).

    Parameters
    ----------
    array : array-like of shape (N, d)
        The features, read a block or a few rows at a time.
    name : str, default="X"
        How to call the pool in messages.

    Examples
    --------
    >>> import numpy as np
    >>> ArrayPool(np.ones((4, 3), dtype=np.float32)).dtype
    dtype('float32')
    """

    def __init__(self, array: Any, name: str = "X") -> None:
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", None)
        if shape is None or dtype is None or len(shape) != 2:
            raise RalifInputError(
                f"{name} must be a 2-D array-like (rows, features), got {type(array).__name__}"
                + (f" of shape {tuple(shape)}" if shape is not None else "")
            )
        dt = np.dtype(dtype)
        if dt.kind not in "fiub":
            raise RalifInputError(f"{name} must be numeric, got dtype {dt}")
        if shape[1] == 0:
            raise RalifInputError(f"{name} has no feature columns (shape {tuple(shape)})")
        self.array = array
        self.n_rows, self.n_features = int(shape[0]), int(shape[1])
        self.dtype = dt if dt in (np.float32, np.float64) else np.dtype(np.float64)
        self.name = name

    def read(self, start: int, stop: int, check: bool = True) -> np.ndarray:
        """Read rows ``start:stop`` of the array (a dask array's are computed), checked.

        Parameters
        ----------
        start, stop : int
            The rows to read, within one range of :meth:`partitions`.
        check : bool, default=True
            Scan the rows for NaN and inf; ``False`` skips only that scan.

        Returns
        -------
        ndarray of shape (stop - start, n_features)
            The rows, of the pool's ``dtype``.

        Examples
        --------
        >>> import numpy as np
        >>> ArrayPool(np.arange(12, dtype=np.int64).reshape(6, 2)).read(0, 2)
        array([[0., 1.],
               [2., 3.]])
        """
        block = self.array[start:stop]
        if hasattr(block, "compute"):
            block = block.compute()
        return checked_block(block, self.name, start, self.n_features, finite=check)

    def _take_piece(self, lo: int, hi: int, rows: np.ndarray) -> np.ndarray:
        block = self.array[rows]
        if hasattr(block, "compute"):
            block = block.compute()
        return checked_block(block, self.name, rows, self.n_features)


def is_dask_array(obj: object) -> bool:
    """Whether ``obj`` is a ``dask.array.Array`` (without importing dask)."""
    return type(obj).__module__.startswith("dask.array") and hasattr(obj, "chunks")


class DaskArrayPool(ArrayPool):
    """A ``dask.array`` pool: blocks follow its row chunks.

    An array whose chunk sizes are unknown (after a boolean filter) is measured first,
    with one pass over it (``compute_chunk_sizes``).

    Parameters
    ----------
    array : dask.array.Array of shape (N, d)
        The features; a chunk is computed when it is read.
    name : str, default="X"
        How to call the pool in messages.

    Examples
    --------
    >>> import dask.array as da
    >>> DaskArrayPool(da.ones((10, 3), chunks=4)).partitions(100)
    [(0, 4), (4, 8), (8, 10)]
    """

    def __init__(self, array: Any, name: str = "X") -> None:
        if any(np.isnan(c) for axis in array.chunks for c in axis):
            # After a filter dask no longer knows its chunks' sizes: one pass measures
            # them (each chunk is computed and only its shape kept).
            array = array.compute_chunk_sizes()
        super().__init__(array, name)
        if len(array.chunks[1]) != 1:
            self.array = array.rechunk({1: -1})
        bounds = np.cumsum((0, *self.array.chunks[0]))
        self._bounds = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def _pieces(self) -> list[tuple[int, int]]:
        return self._bounds

    def partitions(self, block_rows: int) -> list[tuple[int, int]]:
        """Split the pool into the array's row chunks: a chunk is computed whole.

        Parameters
        ----------
        block_rows : int
            Not used: the chunks are the ranges, whatever their size.

        Returns
        -------
        list of tuple of (int, int)
            The ``(start, stop)`` rows of each chunk, in order.

        Examples
        --------
        >>> import dask.array as da
        >>> DaskArrayPool(da.ones((10, 3), chunks=4)).partitions(2)
        [(0, 4), (4, 8), (8, 10)]
        """
        return list(self._bounds)


def expand_shards(spec: str) -> list[str]:
    """The ``.npy`` shard paths a folder or glob names, in series order.

    Numbers in the names count as numbers (``part-2`` before ``part-10``); a numbered
    series with a gap (``part-0``, ``part-2``), or a number written two ways
    (``part-1``, ``part-01``), is refused (:func:`ordered_files`).
    """
    if _GLOB_CHARS.search(spec):
        paths = _glob.glob(spec)
        if not paths:
            raise RalifInputError(f"no files match the pool pattern {spec!r}")
    else:
        paths = [str(p) for p in Path(spec).glob("*.npy")]
        if not paths:
            raise RalifInputError(f"no .npy shards in the folder {spec}")
    for p in paths:
        if not Path(p).is_file():
            raise RalifInputError(f"pool shard {p} is not a regular file")
    return ordered_files(paths, "pool shard")


def is_pool_spec(spec: object) -> bool:
    """Whether a features argument names a pool to stream (a folder or a glob pattern)."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    s = str(spec)
    if Path(s).is_file():  # a file whose name has brackets or stars is that file
        return False
    return bool(_GLOB_CHARS.search(s)) or Path(s).is_dir()


def stream_reason(spec: object) -> str | None:
    """Why the features named by ``spec`` are read in blocks, or None to read them whole.

    The one rule every front end follows (:func:`ralif.select`, ``ralif select``,
    sessions): a pool source or a dask array is streamed, a folder or glob of shards too,
    and so is a single ``.npy`` or ``.parquet`` file too large for memory
    (:func:`ralif._files.max_array_bytes`), which would otherwise be refused; an array
    in memory, or a file that fits, is read whole.

    Parameters
    ----------
    spec : object
        Features: a path, a glob, a pool source, or an array-like.

    Returns
    -------
    str or None
        A short reason ("a folder or glob of shards", or the file's size against the
        cap), or None.

    Examples
    --------
    >>> stream_reason("no-such-file.npy") is None
    True
    """
    if isinstance(spec, PoolSource):
        return "a pool source"
    if is_dask_array(spec):
        return "a dask array"
    if is_pool_spec(spec):
        return "a folder or glob of shards"
    if not isinstance(spec, (str, os.PathLike)):
        return None
    p = Path(spec)
    if p.suffix.lower() not in (".npy", ".parquet") or not p.is_file():
        return None
    cap = max_array_bytes()
    if cap is None:
        return None
    try:
        pool = open_pool(p)
    except RalifInputError:
        return None  # reading it whole reports what is wrong
    need = pool.n_rows * pool.n_features * pool.dtype.itemsize
    if need <= cap:
        return None
    return f"{p} needs {_size(need)} in memory, more than the cap ({_size(cap)})"


def open_pool(spec: object, name: str | None = None) -> PoolSource:
    """A :class:`PoolSource` for a path, glob, folder or array-like.

    Parameters
    ----------
    spec : str, path, array-like, dask.array or PoolSource
        A ``.npy`` file (memory-mapped), a folder or glob of ``.npy`` shards, a
        ``.parquet`` file or a folder of them; or an array-like.
    name : str, optional
        How to call an array-like in messages.

    Returns
    -------
    PoolSource
        The pool, not read yet (only headers and schemas).

    Examples
    --------
    >>> import numpy as np
    >>> pool = open_pool(np.zeros((10, 3), dtype=np.float32))
    >>> pool.shape, [start for start, _ in pool.blocks(4)]
    ((10, 3), [0, 4, 8])
    """
    if isinstance(spec, PoolSource):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        p = Path(s)
        if _GLOB_CHARS.search(s) and not p.exists():
            return NpyShards(expand_shards(s), name=s)
        if p.is_dir():
            if any(p.glob("*.parquet")) and not any(p.glob("*.npy")):
                return ParquetPool(p)
            return NpyShards(expand_shards(s), name=s)
        if not p.exists():
            raise RalifInputError(f"features file not found: {s}")
        suffix = p.suffix.lower()
        if suffix == ".npy":
            return NpyShards([s], name=s)
        if suffix == ".parquet":
            return ParquetPool(p)
        raise RalifInputError(
            f"cannot stream {s}: use a .npy file, a folder or glob of .npy shards, or .parquet"
        )
    if is_dask_array(spec):
        return DaskArrayPool(spec, name or "X")
    return ArrayPool(spec, name or "X")
