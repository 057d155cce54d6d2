"""Input checks done once, at the door of every public function.

Each check raises :class:`RalifInputError` (a ``ValueError``) whose message names the
argument and the offending value, so that the CLI can print it as one line.
"""

from __future__ import annotations

import numbers

import numpy as np

UNLABELED = -1

_FINITE_CHECK_ROWS = 16384
# Column sums of squares above this leave too little headroom for the sums over classes
# and items that heads and distances add on top (a millionth of the largest float).
_ENERGY_LIMIT = {np.dtype(t): float(np.finfo(t).max) * 1e-6 for t in (np.float32, np.float64)}


# Control characters a message may carry from its input (a file or array name) are
# written as escapes: a message is one line, whatever the names in it hold.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, 0x85] if c != 0x09}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r"})


class RalifInputError(ValueError):
    """Bad input given to ralif: the message says what is wrong and where, in one line.

    Parameters
    ----------
    message : object, default=""
        What is wrong; control characters in it are shown escaped, so the message
        stays one line.
    *args : object
        Further arguments, as ``ValueError`` takes them.

    Examples
    --------
    >>> str(RalifInputError("no array named 'a\\nb'"))
    "no array named 'a\\\\nb'"
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(str(message).translate(_ESCAPES), *args)


def _format_rows(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f", ... ({len(rows)} rows in all)" if len(rows) > limit else ""
    return f"[{shown}{more}]"


def check_features(X: object, name: str = "X", min_rows: int = 0) -> np.ndarray:
    """Return ``X`` as a 2-D floating array, refusing NaN, inf and bad shapes.

    float32 and float64 arrays are kept as they are (no copy); other numeric types
    are converted to float64.
    """
    if isinstance(X, np.ndarray) and X.dtype == object:
        raise RalifInputError(f"{name} has dtype object; features must be numeric")
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise RalifInputError(f"{name} cannot be read as a numeric array: {exc}") from None
    if arr.dtype.kind not in "fiub":
        raise RalifInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise RalifInputError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise RalifInputError(f"{name} has no feature columns (shape {arr.shape})")
    if arr.shape[0] < min_rows:
        raise RalifInputError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    _check_finite(arr, name)
    return arr


def _check_finite(arr: np.ndarray, name: str, first_row: int | np.ndarray = 0) -> None:
    # Column sums of squares are cheap (no copy) and propagate NaN/inf; they also overflow
    # where the values are finite but too large to square and sum, which every head and
    # distance computed later would do. Only when they flag something do we look row by
    # row (in chunks, so a large pool never gets a full boolean copy). The rows named are
    # counted from ``first_row``, or are ``first_row[r]`` when it is an array of row ids.
    with np.errstate(over="ignore", invalid="ignore"):
        energy = np.einsum("ij,ij->j", arr, arr)
    if np.isfinite(energy).all() and energy.max(initial=0.0) <= _ENERGY_LIMIT[arr.dtype]:
        return
    bad = []
    for start in range(0, arr.shape[0], _FINITE_CHECK_ROWS):
        block = arr[start : start + _FINITE_CHECK_ROWS]
        rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
        bad.append(rows + start)
    bad_rows = np.concatenate(bad)

    def row_id(r: np.ndarray | int) -> np.ndarray | int:
        return np.asarray(first_row)[r] if np.ndim(first_row) else r + int(first_row)

    if len(bad_rows) == 0:
        row, col = np.unravel_index(np.abs(arr).argmax(), arr.shape)
        raise RalifInputError(
            f"{name} has values too large to compute with (e.g. {arr[row, col]:.3g} in row "
            f"{row_id(row)}, column {col}); rescale the features, for example standardize them"
        )
    kinds = []
    sub = arr[bad_rows[:1000]]
    if np.isnan(sub).any():
        kinds.append("NaN")
    if np.isinf(sub).any():
        kinds.append("inf")
    listed = _format_rows(np.asarray(row_id(bad_rows)))
    raise RalifInputError(f"{name} contains {'/'.join(kinds)} in rows {listed}")


def check_labels(y: object, n_samples: int | None = None, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D int64 array where -1 marks an unlabeled item.

    Floats are accepted only when they hold whole numbers (NaN counts as unlabeled).
    """
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise RalifInputError(f"{name} cannot be read as an array: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise RalifInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise RalifInputError(
            f"{name} has {arr.shape[0]} entries but the features have {n_samples} rows"
        )
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise RalifInputError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
        filled = np.where(missing, UNLABELED, arr)
        frac = np.flatnonzero((filled != np.round(filled)) | np.isinf(filled))
        if len(frac):
            raise RalifInputError(
                f"{name} must hold integer class labels; non-integer values in rows "
                f"{_format_rows(frac)} (e.g. {arr[frac[0]]!r})"
            )
        arr = filled.astype(np.int64)
    else:
        arr = arr.astype(np.int64)
    bad = np.flatnonzero(arr < UNLABELED)
    if len(bad):
        raise RalifInputError(
            f"{name} has negative labels other than -1 (unlabeled) in rows "
            f"{_format_rows(bad)} (e.g. {arr[bad[0]]})"
        )
    return arr


def check_exclude(exclude: object, n_samples: int, name: str = "exclude") -> np.ndarray:
    """The rows that stay in play when ``exclude`` is left out, ascending.

    Parameters
    ----------
    exclude : array-like of bool of shape (n_samples,), or of int
        A mask (True: left out) or the indices of the items left out: never picked,
        never trained on (held-out items, items a person must not see).
    n_samples : int
        Items in all.
    name : str
        What to call ``exclude`` in messages.

    Returns
    -------
    rows : ndarray of int
        The other items' indices.

    Examples
    --------
    >>> check_exclude([1, 3], 5).tolist()
    [0, 2, 4]
    >>> check_exclude([True, False, False], 3).tolist()
    [1, 2]
    """
    try:
        arr = np.asarray(exclude)
    except (TypeError, ValueError) as exc:
        raise RalifInputError(f"{name} cannot be read as an array: {exc}") from None
    if arr.ndim != 1:
        raise RalifInputError(f"{name} must be 1-D (a mask or indices), got shape {arr.shape}")
    if arr.dtype.kind == "b":
        if len(arr) != n_samples:
            raise RalifInputError(
                f"{name} is a mask of {len(arr)} entries but there are {n_samples} items"
            )
        return np.flatnonzero(~arr)
    if len(arr) and arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise RalifInputError(f"{name} must hold item indices (whole numbers) or a boolean mask")
    if len(arr) and arr.dtype.kind not in "iuf":
        raise RalifInputError(f"{name} must hold item indices or a boolean mask, got {arr.dtype}")
    idx = arr.astype(np.int64)
    bad = np.flatnonzero((idx < 0) | (idx >= n_samples))
    if len(bad):
        raise RalifInputError(
            f"{name} holds indices outside 0..{n_samples - 1} (e.g. {arr[bad[0]]!r})"
        )
    keep = np.ones(n_samples, dtype=bool)
    keep[idx] = False
    return np.flatnonzero(keep)


def check_budget(budget: object, pool_size: int) -> int:
    """Return ``budget`` as an int in ``[1, pool_size]``."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise RalifInputError(f"budget must be a positive integer, got {budget!r}")
    budget = int(budget)
    if pool_size == 0:
        raise RalifInputError("the pool is empty: every item is already labeled")
    if budget <= 0:
        raise RalifInputError(f"budget must be a positive integer, got {budget}")
    if budget > pool_size:
        raise RalifInputError(
            f"budget {budget} is larger than the pool ({pool_size} unlabeled items)"
        )
    return budget


def check_random_state(seed: object) -> np.random.Generator:
    """Turn ``None``, an int or a Generator into a :class:`numpy.random.Generator`."""
    if seed is None or isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(seed, bool):
            raise RalifInputError(f"random_state must be None, an int or a Generator, got {seed!r}")
        # numpy's stubs admit int, not every numbers.Integral that default_rng takes.
        return np.random.default_rng(seed)  # type: ignore[arg-type]
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    raise RalifInputError(f"random_state must be None, an int or a Generator, got {seed!r}")
