"""Reading users' feature and label files, and writing every output file, safely.

Nothing here ever unpickles: ``.npy``/``.npz`` are read with ``allow_pickle=False`` and a
file holding pickled objects is refused with a clear error. Arrays are judged by their
headers before they are read (:func:`max_array_bytes`). Every file ralif writes goes
through :func:`open_output`.
"""

from __future__ import annotations

import csv
import errno
import io as pyio
import os
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np

from ralif._files import (
    MAX_ARRAY_BYTES_ENV,
    _read_npy_header,
    _refuse_pickled,
    _size,
    max_array_bytes,
    os_error,
)
from ralif._validation import UNLABELED, RalifInputError, check_labels

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

FEATURE_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
LABEL_SUFFIXES = (".npy", ".csv")
_NPZ_FEATURE_KEYS = ("X", "features", "embeddings")
_NPZ_LABEL_KEYS = ("y", "labels")


def _existing(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise RalifInputError(f"{what} file not found: {p}")
    if p.is_dir():
        raise RalifInputError(f"{what} path is a folder, not a file: {p}")
    if not p.is_file():
        # A device or pipe has no size to check and may never end (/dev/zero).
        raise RalifInputError(f"{what} path is not a regular file: {p}")
    return p


def _check_header(
    shape: tuple[int, ...],
    dtype: np.dtype,
    where: str,
    what: str,
    n_rows: int | None,
    as_float: bool,
) -> int:
    """Refuse an array by its header alone; returns the bytes its data take in the file."""
    _refuse_pickled(dtype, where)
    count = 1
    for n in shape:
        count *= n  # Python integers: a forged shape cannot overflow
    stored = count * dtype.itemsize
    if n_rows is not None and shape and shape[0] != n_rows:
        if what == "labels":
            raise RalifInputError(
                f"labels ({where}) has {shape[0]} entries but the features have {n_rows} rows"
            )
        raise RalifInputError(
            f"{what} ({where}) has {shape[0]} rows but the labels have {n_rows} entries"
        )
    # Features that are not float32/float64 become float64 once checked.
    loaded = count * 8 if as_float and dtype not in (np.float32, np.float64) else stored
    cap = max_array_bytes()
    if cap is not None and max(loaded, stored) > cap:
        source = (
            f"the {MAX_ARRAY_BYTES_ENV} limit"
            if os.environ.get(MAX_ARRAY_BYTES_ENV, "").strip()
            else "the memory available"
        )
        raise RalifInputError(
            f"refusing to read {where}: its array of shape {shape} ({dtype}) needs "
            f"{_size(max(loaded, stored))}, more than {source} ({_size(cap)})"
        )
    return stored


def _load_npy(p: Path, what: str, n_rows: int | None = None, as_float: bool = False) -> np.ndarray:
    """A ``.npy`` file's array, refused by its header before anything is allocated."""
    with os_error("read", f"{what} file {p}"), open(p, "rb") as fh:
        shape, dtype, header = _read_npy_header(fh, f"{what} file {p}")
        stored = _check_header(shape, dtype, str(p), what, n_rows, as_float)
        on_disk = os.fstat(fh.fileno()).st_size
    if on_disk < header + stored:
        raise RalifInputError(
            f"cannot read {what} file {p}: its header announces shape {shape} ({dtype}) "
            f"but the file is {_size(on_disk)} (truncated or corrupt)"
        )
    return np.asarray(_load_numpy(p, what))


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _load_numpy(p: Path, what: str) -> Any:
    # numpy takes any file that is neither .npy nor a zip archive for a pickle: only a
    # file that starts as a pickle does is called one.
    with os_error("read", f"{what} file {p}"), open(p, "rb") as fh:
        start = fh.read(6)
    if len(start) >= 2 and start[0] == 0x80 and 2 <= start[1] <= 5:  # PROTO 2 to 5
        raise RalifInputError(
            f"refusing to read {p}: it holds pickled Python objects, which could run code; "
            "save plain numeric arrays instead"
        )
    if not (start.startswith(_ZIP_MAGIC) or start == b"\x93NUMPY"):
        raise RalifInputError(
            f"cannot read {what} file {p}: it is not a .npy or .npz file (corrupt, empty, "
            "or another format)"
        )
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise RalifInputError(
                f"refusing to read {p}: it holds pickled Python objects, which could run code; "
                "save plain numeric arrays instead"
            ) from None
        raise RalifInputError(f"cannot read {what} file {p}: {exc}") from None
    except Exception as exc:  # zipfile raises several unrelated types for a bad archive
        raise RalifInputError(
            f"cannot read {what} file {p} (corrupt or not {p.suffix}): {exc}"
        ) from None


class NpzArrays:
    """The arrays of an open ``.npz``, each read on demand with ralif's safety checks.

    Before an array is read, the header of its member is: an array bigger than
    :func:`max_array_bytes`, one whose rows cannot match, or a member whose size
    declared in the archive disagrees with its header is refused unread.
    """

    def __init__(self, path: Path, archive: Any) -> None:
        self.path, self._archive = path, archive

    @property
    def files(self) -> list[str]:
        return list(self._archive.files)

    def _member(self, key: str) -> str:
        # The same lookup as numpy's NpzFile: a raw member name, or an array name + ".npy".
        names = self._archive.zip.namelist()
        if key in names:
            return key
        if key + ".npy" in names:
            return key + ".npy"
        raise RalifInputError(f"{self.path} holds no array {key!r}")

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of array ``key``, read from its header only."""
        return self._header(key)[0]

    def _header(self, key: str) -> tuple[tuple[int, ...], np.dtype, int, int]:
        where = f"array {key!r} of {self.path}"
        try:
            info = self._archive.zip.getinfo(self._member(key))
            with self._archive.zip.open(info) as fh:
                shape, dtype, header = _read_npy_header(fh, where)
        except RalifInputError:
            raise
        except Exception as exc:  # zipfile raises several unrelated types for a bad archive
            raise RalifInputError(f"cannot read {where} (corrupt file): {exc}") from None
        return shape, dtype, header, info.file_size

    def get(
        self, key: str, what: str = "array", n_rows: int | None = None, as_float: bool = False
    ) -> np.ndarray:
        """Array ``key``, after checking its header (and ``n_rows`` rows, if given)."""
        where = f"array {key!r} of {self.path}"
        shape, dtype, header, declared = self._header(key)
        stored = _check_header(shape, dtype, where, what, n_rows, as_float)
        if declared != header + stored:
            raise RalifInputError(
                f"cannot read {where}: the archive declares {_size(declared)} but its header "
                f"announces shape {shape} ({dtype}) (corrupt or forged archive)"
            )
        try:
            return self._archive[key]
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise RalifInputError(
                    f"refusing to read {self.path}: array {key!r} holds pickled objects"
                ) from None
            raise RalifInputError(f"cannot read array {key!r} from {self.path}: {exc}") from None
        except Exception as exc:  # zipfile raises several unrelated types for a bad archive
            raise RalifInputError(
                f"cannot read array {key!r} from {self.path} (corrupt file): {exc}"
            ) from None

    def __getitem__(self, key: str) -> np.ndarray:
        return self.get(key)


@contextmanager
def open_npz(path: str | os.PathLike, what: str) -> Iterator[NpzArrays]:
    """Open an ``.npz`` without unpickling; corrupt files and pickled arrays are refused."""
    p = _existing(path, what)
    archive = _load_numpy(p, what)
    if not hasattr(archive, "files"):
        raise RalifInputError(f"{p} is a single .npy array, not an .npz archive")
    members = archive.zip.namelist()
    twice = sorted({m for m in members if members.count(m) > 1})
    if twice:
        archive.close()
        raise RalifInputError(
            f"{p} holds several members named {', '.join(map(repr, twice))}: which one is "
            "meant is ambiguous (a corrupt or forged archive)"
        )
    try:
        yield NpzArrays(p, archive)
    finally:
        archive.close()


def _npz_key(z: NpzArrays, keys: tuple[str, ...], what: str) -> str:
    names = z.files
    if not names:
        raise RalifInputError(f"{z.path} holds no arrays")
    key = next((k for k in keys if k in names), names[0] if len(names) == 1 else None)
    if key is None:
        raise RalifInputError(
            f"{z.path} holds several arrays ({', '.join(map(repr, names))}); name the {what} array "
            f"one of {', '.join(keys)}"
        )
    return key


def _pick_npz(
    p: Path, keys: tuple[str, ...], what: str, n_rows: int | None = None, as_float: bool = False
) -> np.ndarray:
    with open_npz(p, what) as z:
        return z.get(_npz_key(z, keys, what), what, n_rows, as_float)


def read_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names saved in an ``.npz`` as its array ``classes`` (text), if any.

    ``ralif embed-text`` saves them when the labels are names; ``classes[k]`` names
    class ``k``. Anything but a 1-D text array is ignored.
    """
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return None
    with open_npz(p, "dataset") as z:
        if "classes" not in z.files:
            return None
        names = z.get("classes", "class names")
    if names.dtype.kind != "U" or names.ndim != 1:
        return None
    return [str(n) for n in names]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv_rows(p: Path, what: str) -> tuple[list[str] | None, list[list[str]]]:
    """Rows of a CSV file, and its header when the first row is not numeric."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            # Blank lines are kept: in a one-column label file they mean "unlabeled",
            # and dropping them would shift every later label onto the wrong item.
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise RalifInputError(
            f"cannot read {what} file {p}: not UTF-8 text (corrupt or not CSV)"
        ) from None
    except csv.Error as exc:
        raise RalifInputError(f"cannot read {what} file {p}: {exc}") from None
    if not rows:
        raise RalifInputError(f"{what} file {p} is empty")
    first = rows[0]
    header = None
    if first and any(cell.strip() and not _is_number(cell) for cell in first):
        header, rows = [c.strip() for c in first], rows[1:]
    return header, rows


def _load_feature_csv(p: Path) -> np.ndarray:
    try:
        with open(p, encoding="utf-8-sig") as fh:
            first = fh.readline()
    except UnicodeDecodeError:
        raise RalifInputError(
            f"cannot read features file {p}: not UTF-8 text (corrupt or not CSV)"
        ) from None
    if not first.strip():
        raise RalifInputError(f"features file {p} is empty")
    has_header = any(c.strip() and not _is_number(c) for c in first.split(","))
    # A number takes at least two characters of text ("0,") and 8 bytes once read.
    cap, size = max_array_bytes(), p.stat().st_size
    if cap is not None and 4 * size > cap:
        raise RalifInputError(
            f"refusing to read features file {p}: {_size(size)} of text may hold up to "
            f"{_size(4 * size)} of numbers, more than the cap ({_size(cap)}); save the "
            "features as .npy, which is read in blocks when it does not fit"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no data": refused below
            X = np.loadtxt(
                p,
                delimiter=",",
                skiprows=int(has_header),
                ndmin=2,
                dtype=np.float64,
                encoding="utf-8-sig",
            )
    except ValueError as exc:
        raise RalifInputError(
            f"{p}: features must be numbers in equal-length rows ({exc})"
        ) from None
    if X.shape[0] == 0:
        raise RalifInputError(f"features file {p} has a header but no rows")
    return X


def feature_rows(path: str | os.PathLike) -> int | None:
    """The number of rows of a features file, from its header alone (None for ``.csv``).

    Lets a caller check the labels against the features before reading a large file.
    """
    p = _existing(path, "features")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            with open(p, "rb") as fh:
                shape, dtype, _ = _read_npy_header(fh, f"features file {p}")
            _refuse_pickled(dtype, str(p))
        elif suffix == ".npz":
            with open_npz(p, "features") as z:
                key = _npz_key(z, _NPZ_FEATURE_KEYS, "features")
                shape, dtype, _, _ = z._header(key)
            _refuse_pickled(dtype, f"array {key!r} of {p}")
        elif suffix == ".parquet":
            from ralif.pools.sources import ParquetPool

            return ParquetPool(p).n_rows
        else:
            return None
    except RalifInputError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise RalifInputError(f"cannot read features file {p} (corrupt): {exc}") from None
    return shape[0] if shape else None


def _load_parquet(p: Path, n_rows: int | None) -> np.ndarray:
    # One reader for Parquet, in memory and streamed: the pool's, read whole here.
    from ralif.pools.sources import ParquetPool

    pool = ParquetPool(p)
    # Columns are compressed on disk: judge the size from the metadata, as for .npz.
    _check_header(pool.shape, pool.dtype, str(p), "features", n_rows, True)
    X = np.empty(pool.shape, dtype=pool.dtype)
    for start, stop in pool.partitions(pool.block_rows_for()):
        X[start:stop] = pool.read(start, stop, check=False)
    return X


def load_features(path: str | os.PathLike, n_rows: int | None = None) -> np.ndarray:
    """Read a feature matrix from ``.npy``, ``.npz``, ``.csv`` or ``.parquet``.

    Parameters
    ----------
    path : path-like
        ``.npy``: one 2-D array. ``.npz``: the array named ``X``, ``features`` or
        ``embeddings`` (or the only one). ``.csv``: one row per item, numbers only,
        an optional header line. ``.parquet``: every column numeric, or one column of
        fixed-size lists of numbers (needs pyarrow).
    n_rows : int, optional
        The number of rows expected (one per label); a ``.npy``/``.npz``/``.parquet``
        file with another number is refused from its header, before it is read.

    Returns
    -------
    X : ndarray of shape (N, d)
        As stored (float32 stays float32); not yet checked for NaN.

    Raises
    ------
    RalifInputError
        Also when the array would need more than :func:`max_array_bytes`.
    """
    p = _existing(path, "features")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        X = _load_npy(p, "features", n_rows, as_float=True)
    elif suffix == ".npz":
        X = _pick_npz(p, _NPZ_FEATURE_KEYS, "features", n_rows, as_float=True)
    elif suffix == ".csv":
        X = _load_feature_csv(p)
    elif suffix == ".parquet":
        X = _load_parquet(p, n_rows)
    else:
        raise RalifInputError(
            f"unsupported features file type {suffix or '(none)'} for {p}; use {', '.join(FEATURE_SUFFIXES)}"
        )
    if n_rows is not None and X.ndim >= 1 and X.shape[0] != n_rows:
        raise RalifInputError(
            f"features ({p}) has {X.shape[0]} rows but the labels have {n_rows} entries"
        )
    return X


def load_labels(
    path: str | os.PathLike, n_rows: int | None = None, classes: Sequence[str] | None = None
) -> np.ndarray:
    """Read labels from ``.npy`` or ``.csv``; -1 or an empty cell marks an unlabeled item.

    A ``.csv`` has one column, or a header with a column named ``label``.

    Parameters
    ----------
    path : path-like
    n_rows : int, optional
        The number of items (feature rows); a ``.npy``/``.npz`` with another number of
        labels is refused from its header, before it is read.
    classes : sequence of str, optional
        The class names in order: a ``.csv`` cell holding one of them is its position
        (as in sessions); other cells must be class numbers.

    Returns
    -------
    y : ndarray of shape (N,)
        Floats (NaN for empty cells) or integers, not yet validated.
    """
    p = _existing(path, "labels")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _load_npy(p, "labels", n_rows)
    if suffix == ".npz":
        return _pick_npz(p, _NPZ_LABEL_KEYS, "labels", n_rows)
    if suffix == ".csv":
        header, rows = _read_csv_rows(p, "labels")
        col = 0
        if header is not None and len(header) > 1:
            if "label" not in header:
                raise RalifInputError(f"{p} has several columns; name the labels column 'label'")
            col = header.index("label")
        elif header is None and rows and len(rows[0]) > 1:
            raise RalifInputError(
                f"{p} has {len(rows[0])} columns; labels need one (or a 'label' column)"
            )
        index = {name: k for k, name in enumerate(classes or ())}
        out = np.empty(len(rows))
        for i, r in enumerate(rows):
            cell = r[col].strip() if col < len(r) else ""
            if not cell:
                out[i] = np.nan
            elif cell in index:
                out[i] = index[cell]
            elif _is_number(cell):
                out[i] = float(cell)
            elif classes:
                raise RalifInputError(
                    f"{p}: label {cell!r} in data row {i} is not one of the classes "
                    f"({', '.join(classes)})"
                )
            else:
                raise RalifInputError(
                    f"{p}: label {cell!r} in data row {i} is not a class number; to label "
                    "by class names, give their order (--classes a,b,c)"
                )
        return out
    raise RalifInputError(
        f"unsupported labels file type {suffix or '(none)'} for {p}; use .npy or .csv"
    )


def load_items(path: str | os.PathLike, what: str = "items") -> np.ndarray:
    """Read a list of item indices (or a boolean mask) from ``.npy`` or ``.csv``.

    A ``.csv`` has one column of item numbers, with an optional header (a column named
    ``item`` where there are several); blank lines are skipped.

    Parameters
    ----------
    path : path-like
    what : str
        What the file holds, for messages.

    Returns
    -------
    ndarray
        As stored: integers, or booleans for a mask (checked by
        :func:`ralif._validation.check_exclude`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "held_out.csv"
    >>> _ = f.write_text("item\\n4\\n7\\n")
    >>> load_items(f).tolist()
    [4, 7]
    """
    p = _existing(path, what)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _load_npy(p, what)
    if suffix not in (".csv", ".txt"):
        raise RalifInputError(
            f"unsupported {what} file type {suffix or '(none)'} for {p}; use .npy or .csv"
        )
    header, rows = _read_csv_rows(p, what)
    col = 0
    if header is not None and len(header) > 1:
        if "item" not in header:
            raise RalifInputError(f"{p} has several columns; name the item column 'item'")
        col = header.index("item")
    out = []
    for i, r in enumerate(rows, start=2 if header is not None else 1):
        cell = r[col].strip() if col < len(r) else ""
        if not cell:
            continue
        if not (cell.isascii() and cell.isdigit()):
            raise RalifInputError(f"{p}: line {i}: {cell!r} is not an item number")
        out.append(int(cell))
    return np.asarray(out, dtype=np.int64)


def labels_from_cells(
    cells: Sequence[str | None], name: str = "labels"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class ids from the label cells of a CSV column, and the class names if any.

    Empty cells mark unlabeled items (-1). When every other cell is a whole number the
    numbers are the class ids; otherwise each distinct text is a class, numbered in
    sorted order, and its name is returned.

    Parameters
    ----------
    cells : sequence of str or None
    name : str
        What the cells are, for error messages.

    Returns
    -------
    y : ndarray of int64, shape (len(cells),)
    classes : ndarray of str, or None
        ``classes[k]`` is the name of class ``k`` (a unicode array, never objects).
    """
    texts = [(c or "").strip() for c in cells]
    given = [t for t in texts if t]
    if all(_is_number(t) for t in given):
        numbers = np.array([float(t) if t else np.nan for t in texts], dtype=float)
        return check_labels(numbers, len(texts), name), None
    names = sorted(set(given))
    index = {n: k for k, n in enumerate(names)}
    y = np.array([index[t] if t else UNLABELED for t in texts], dtype=np.int64)
    return y, np.array(names, dtype=np.str_)


def read_csv_records(
    path: str | os.PathLike, what: str, columns: Sequence[str] = (), any_of: bool = False
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header, as ``(line number, row dict)``.

    UTF-8 with or without a byte-order mark (as spreadsheet programs save it); header
    names are stripped of surrounding spaces. Missing files, folders, devices and text
    that is not UTF-8 CSV are clear errors, and so is a header without ``columns``.

    Parameters
    ----------
    path : path-like
    what : str
        What the file holds, for error messages.
    columns : sequence of str, optional
        Columns the header must name (all of them, or with ``any_of`` one of them). An
        empty file, or a header without them, is refused naming them; a header with no
        rows below it gives an empty list.
    any_of : bool, default=False
        One of ``columns`` is enough.

    Returns
    -------
    list of (int, dict)
        The line each row ends on (the header is line 1), and the row.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = f.write_text("item,label\\n3,cat\\n")
    >>> read_csv_records(f, "labels", ["item", "label"])
    [(2, {'item': '3', 'label': 'cat'})]
    """
    p = _existing(path, what)
    try:
        with os_error("read", f"{what} file {p}"), open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is not None:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
            records = [(reader.line_num, row) for row in reader]
            header = reader.fieldnames
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RalifInputError(f"cannot read {what} file {p} as UTF-8 CSV: {exc}") from None
    if columns:
        joined = (" or " if any_of else " and ").join(repr(c) for c in columns)
        if header is None:
            raise RalifInputError(
                f"{what} file {p} is empty: it needs a header line naming {joined}"
            )
        missing = [c for c in columns if c not in header]
        if len(missing) == len(columns) if any_of else missing:
            named = (
                " or ".join(repr(c) for c in missing) if any_of else ", ".join(map(repr, missing))
            )
            raise RalifInputError(
                f"{what} file {p} has no column {named} in its header "
                f"({', '.join(repr(h) for h in header) or 'nothing'}); it needs {joined}"
            )
    return records


def read_csv_dicts(
    path: str | os.PathLike, what: str, columns: Sequence[str] = (), any_of: bool = False
) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, as dicts (see :func:`read_csv_records`)."""
    return [row for _, row in read_csv_records(path, what, columns, any_of)]


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # os.umask only reads by setting: put it straight back
    os.umask(mask)
    return mask


def _read_only(st: os.stat_result, p: Path) -> bool:
    # No write bit at all counts as read-only even for root, who could write anyway:
    # the owner marked the file (or folder) as not to be changed.
    return not (st.st_mode & 0o222) or not os.access(p, os.W_OK)


def _writable_folder(folder: Path, what: str, path: str | os.PathLike) -> Path:
    """Create ``folder`` (with its parents) and refuse it unless ralif may write into it.

    The one rule for every place ralif writes: a folder whose mode has no write bit is
    read-only even for root (its owner marked it so), as is one the process may not
    write into.
    """
    where = "it" if Path(path) == folder else f"the folder {folder}"
    above = folder
    while not os.path.lexists(above) and above.parent != above:
        above = above.parent  # the folder the first new one would be made in
    if above != folder and above.is_dir() and _read_only(os.stat(above), above):
        raise RalifInputError(f"cannot write {what} {path}: the folder {above} is read-only")
    with os_error("create", f"folder {folder} for {what}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RalifInputError(
                f"cannot write {what} {path}: {folder} (or a folder above it) is a file, "
                "not a folder"
            ) from None
    if not folder.is_dir():
        raise RalifInputError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    if _read_only(os.stat(folder), folder):
        raise RalifInputError(f"cannot write {what} {path}: {where} is read-only")
    return folder


def output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create and check a folder ralif writes files into (``bench --out``, ``extract --out``).

    The same rule as for the folder of every output file (:func:`open_output`): the
    folder and its parents are created; a file in the way, or a read-only folder (no
    write bit in its mode, even for root), is refused.

    Parameters
    ----------
    path : path-like
        The folder.
    what : str
        What it holds, for messages ("results folder"...).

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`, now an existing, writable folder.

    Raises
    ------
    RalifInputError
        If the folder cannot be created or written into.

    Examples
    --------
    >>> import tempfile
    >>> output_folder(Path(tempfile.mkdtemp()) / "runs" / "a", "results folder").is_dir()
    True
    """
    if str(path) == "-":
        raise RalifInputError(f"{what} must be a folder; '-' (standard output) cannot hold files")
    return _writable_folder(Path(path), what, path)


def _output_plan(
    path: str | os.PathLike, what: str, exclusive: bool = False
) -> tuple[Path, bool, int, tuple[int, int] | None]:
    """``(where to write, replace atomically?, mode, owner)`` after checking ``path``.

    The mode and owner (uid, gid) are the old file's, when there is one. ``exclusive``
    refuses an existing file or symlink (a device or FIFO is still written).
    """
    if exclusive and os.path.islink(path):
        raise RalifInputError(f"{path} already exists (a symlink); pick another --out or remove it")
    p = Path(os.path.realpath(path))  # a symlink is followed: its target is written
    with os_error("write", f"{what} {path}"):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise RalifInputError(f"cannot write {what} {path}: it is a folder, not a file")
    if st is not None and stat.S_ISSOCK(st.st_mode):
        raise RalifInputError(f"cannot write {what} {path}: it is a socket")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return p, False, 0, None  # a device or FIFO: written as it is, never replaced
    if st is not None and exclusive:
        raise RalifInputError(f"{path} already exists; pick another --out or remove it")
    if st is not None and _read_only(st, p):
        raise RalifInputError(f"cannot write {what} {path}: the file is read-only")
    _writable_folder(p.parent, what, path)
    if st is None:
        return p, True, 0o666 & ~_umask(), None
    return p, True, stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)


_WRITE_ERRNOS = {
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "EIO", "ENXIO", "ETXTBSY")
    if hasattr(errno, name)
}


class _Stream(pyio.RawIOBase):
    """A binary output that cannot seek, whatever it is.

    ``/dev/null`` claims to seek and always answers position 0, which leads zipfile
    (``.npz``) to write a broken archive or fail; a stream that cannot seek is written
    front to back by every writer used here (zipfile, numpy, pyarrow, matplotlib).
    """

    def __init__(self, fh: IO[bytes]) -> None:
        super().__init__()
        self._fh = fh

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        self._fh.write(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        # The underlying file belongs to open_output (or is standard output): not closed here.
        if not self.closed:
            self.flush()
        pyio.RawIOBase.close(self)


def check_output(path: str | os.PathLike, what: str = "output", exclusive: bool = False) -> None:
    """Refuse now a ``path`` that :func:`open_output` would refuse (before slow work).

    Raises
    ------
    RalifInputError
        If ``path`` cannot be written.
    """
    if str(path) != "-":
        _output_plan(path, what, exclusive)


@contextmanager
def open_output(
    path: str | os.PathLike,
    what: str = "output",
    binary: bool = False,
    exclusive: bool = False,
    mode: int | None = None,
) -> Iterator[IO]:
    """Open ``path`` for writing the way a user expects of ``--out``.

    A regular file (or a new path) is written to a temporary file beside it and renamed
    into place only once complete, so a failure never leaves half a file; the new file
    keeps the old file's mode and owner, or follows the umask. A symlink is followed and
    its target written. A device or FIFO (``/dev/null``, a named pipe) is written
    directly, and ``-`` means standard output. A read-only file or folder is refused.

    Parameters
    ----------
    path : path-like
        Where to write; ``"-"`` for standard output.
    what : str
        What is written, for error messages ("picks", "labels export"...).
    binary : bool
        Yield a binary file instead of a text one (UTF-8, no newline translation).
    exclusive : bool
        Never replace a file: an existing file or symlink at ``path`` is refused, also
        when one appears while writing (a device, a FIFO or ``-`` is still written).
    mode : int, optional
        The permission bits of a new file (``0o600`` for a file holding a secret),
        instead of the umask's.

    Yields
    ------
    file object

    Raises
    ------
    RalifInputError
        If ``path`` cannot be written (a folder, read-only, a socket, no space...).
    """
    if str(path) == "-":
        stream = cast(IO[bytes], _Stream(sys.stdout.buffer)) if binary else sys.stdout
        yield stream
        stream.flush()
        return
    encoding, newline = (None, None) if binary else ("utf-8", "")
    p, atomic, old_mode, owner = _output_plan(path, what, exclusive)
    if mode is None or owner is not None:
        mode = old_mode
    # Only a failure to write (_WRITE_ERRNOS) is reported as such; others (a closed pipe,
    # a network error while copying from a download) reach the caller as they are.
    with os_error("write", f"{what} {path}", errnos=_WRITE_ERRNOS):
        if not atomic:
            with open(p, "wb" if binary else "w", encoding=encoding, newline=newline) as fh:
                yield cast(IO[bytes], _Stream(fh)) if binary else fh
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                try:  # only root may give a file away: others keep their own file anyway
                    os.fchown(fd, *owner)
                except OSError:
                    pass
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb" if binary else "w", encoding=encoding, newline=newline) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            _put_in_place(tmp, p, path, exclusive)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _put_in_place(tmp: str, p: Path, path: str | os.PathLike, exclusive: bool) -> None:
    """Move the finished temporary file ``tmp`` to ``p``; ``exclusive`` never replaces."""
    if not exclusive:
        os.replace(tmp, p)
        return
    try:  # a hard link never replaces a file that appeared meanwhile
        os.link(tmp, p)
    except FileExistsError:
        raise RalifInputError(f"{path} already exists; pick another --out or remove it") from None
    Path(tmp).unlink()


def write_csv(
    path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence], what: str = "CSV"
) -> None:
    """Write a CSV file through :func:`open_output` (whole or not at all)."""
    with open_output(path, what) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_text(path: str | os.PathLike, text: str, what: str = "text") -> None:
    """Write a UTF-8 text file through :func:`open_output`."""
    with open_output(path, what) as fh:
        fh.write(text)


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], what: str = ".npz") -> None:
    """Write arrays to an ``.npz`` through :func:`open_output` (no pickled objects)."""
    with open_output(path, what, binary=True) as fh:
        np.savez(fh, allow_pickle=False, **arrays)


# Former name, kept for callers outside the package.
write_csv_atomic = write_csv
