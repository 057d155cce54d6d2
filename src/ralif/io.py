"""Reading users' feature and label files, safely.

Nothing here ever unpickles: ``.npy``/``.npz`` are read with ``allow_pickle=False`` and a
file holding pickled objects is refused with a clear error.
"""

from __future__ import annotations

import csv
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError

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
    return p


def _load_numpy(p: Path, what: str) -> object:
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise RalifInputError(
                f"refusing to read {p}: it holds pickled Python objects, which could run code; "
                "save plain numeric arrays instead"
            ) from None
        raise RalifInputError(f"cannot read {what} file {p}: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RalifInputError(
            f"cannot read {what} file {p} (corrupt or not {p.suffix}): {exc}"
        ) from None


class NpzArrays:
    """The arrays of an open ``.npz``, each read on demand with ralif's safety checks."""

    def __init__(self, path: Path, archive: object) -> None:
        self.path, self._archive = path, archive

    @property
    def files(self) -> list[str]:
        return list(self._archive.files)

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._archive[key]
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise RalifInputError(
                    f"refusing to read {self.path}: array {key!r} holds pickled objects"
                ) from None
            raise RalifInputError(f"cannot read array {key!r} from {self.path}: {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise RalifInputError(
                f"cannot read array {key!r} from {self.path} (corrupt file): {exc}"
            ) from None


@contextmanager
def open_npz(path: str | os.PathLike, what: str) -> Iterator[NpzArrays]:
    """Open an ``.npz`` without unpickling; corrupt files and pickled arrays are refused."""
    p = _existing(path, what)
    archive = _load_numpy(p, what)
    if not hasattr(archive, "files"):
        raise RalifInputError(f"{p} is a single .npy array, not an .npz archive")
    try:
        yield NpzArrays(p, archive)
    finally:
        archive.close()


def _pick_npz(p: Path, keys: tuple[str, ...], what: str) -> np.ndarray:
    with open_npz(p, what) as z:
        names = z.files
        if not names:
            raise RalifInputError(f"{p} holds no arrays")
        key = next((k for k in keys if k in names), names[0] if len(names) == 1 else None)
        if key is None:
            raise RalifInputError(
                f"{p} holds several arrays ({', '.join(names)}); name the {what} array "
                f"one of {', '.join(keys)}"
            )
        return z[key]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv_rows(p: Path, what: str) -> tuple[list[str] | None, list[list[str]]]:
    """Rows of a CSV file, and its header when the first row is not numeric."""
    try:
        with open(p, newline="", encoding="utf-8") as fh:
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
        with open(p, encoding="utf-8") as fh:
            first = fh.readline()
    except UnicodeDecodeError:
        raise RalifInputError(
            f"cannot read features file {p}: not UTF-8 text (corrupt or not CSV)"
        ) from None
    if not first.strip():
        raise RalifInputError(f"features file {p} is empty")
    has_header = any(c.strip() and not _is_number(c) for c in first.split(","))
    try:
        X = np.loadtxt(p, delimiter=",", skiprows=int(has_header), ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise RalifInputError(
            f"{p}: features must be numbers in equal-length rows ({exc})"
        ) from None
    if X.shape[0] == 0:
        raise RalifInputError(f"features file {p} has a header but no rows")
    return X


def load_features(path: str | os.PathLike) -> np.ndarray:
    """Read a feature matrix from ``.npy``, ``.npz``, ``.csv`` or ``.parquet``.

    Parameters
    ----------
    path : path-like
        ``.npy``: one 2-D array. ``.npz``: the array named ``X``, ``features`` or
        ``embeddings`` (or the only one). ``.csv``: one row per item, numbers only,
        an optional header line. ``.parquet``: every column numeric (needs pyarrow).

    Returns
    -------
    X : ndarray of shape (N, d)
        As stored (float32 stays float32); not yet checked for NaN.
    """
    p = _existing(path, "features")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return np.asarray(_load_numpy(p, "features"))
    if suffix == ".npz":
        return _pick_npz(p, _NPZ_FEATURE_KEYS, "features")
    if suffix == ".csv":
        return _load_feature_csv(p)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RalifInputError(
                "reading .parquet needs pyarrow: pip install 'ralif[parquet]'"
            ) from None
        try:
            table = pq.read_table(p)
        except Exception as exc:  # pyarrow raises several unrelated types for bad files
            raise RalifInputError(
                f"cannot read features file {p} (corrupt or not parquet): {exc}"
            ) from None
        cols = []
        for name, col in zip(table.column_names, table.columns, strict=True):
            arr = col.to_numpy(zero_copy_only=False)
            if arr.dtype.kind not in "fiub":
                raise RalifInputError(f"{p}: column {name!r} is not numeric ({col.type})")
            cols.append(arr)
        if not cols:
            raise RalifInputError(f"{p} has no columns")
        return np.column_stack(cols)
    raise RalifInputError(
        f"unsupported features file type {suffix or '(none)'} for {p}; use {', '.join(FEATURE_SUFFIXES)}"
    )


def load_labels(path: str | os.PathLike) -> np.ndarray:
    """Read labels from ``.npy`` or ``.csv``; -1 or an empty cell marks an unlabeled item.

    A ``.csv`` has one column, or a header with a column named ``label``.

    Returns
    -------
    y : ndarray of shape (N,)
        Floats (NaN for empty cells) or integers, not yet validated.
    """
    p = _existing(path, "labels")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return np.asarray(_load_numpy(p, "labels"))
    if suffix == ".npz":
        return _pick_npz(p, _NPZ_LABEL_KEYS, "labels")
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
        out = np.empty(len(rows))
        for i, r in enumerate(rows):
            cell = r[col].strip() if col < len(r) else ""
            if not cell:
                out[i] = np.nan
            elif _is_number(cell):
                out[i] = float(cell)
            else:
                raise RalifInputError(f"{p}: label {cell!r} in data row {i} is not a number")
        return out
    raise RalifInputError(
        f"unsupported labels file type {suffix or '(none)'} for {p}; use .npy or .csv"
    )


def read_csv_dicts(path: str | os.PathLike, what: str) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, as dicts; clear errors for missing or bad files."""
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise RalifInputError(f"{what} file not found: {p}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RalifInputError(f"cannot read {what} file {p} as UTF-8 CSV: {exc}") from None


def write_csv_atomic(path: str | os.PathLike, header: list[str], rows: list[tuple]) -> None:
    """Write a CSV file whole or not at all (a temporary file renamed into place)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
