"""Files at the lowest level: the memory cap on arrays read, ``.npy`` headers, OS errors.

Both :mod:`ralif.io` (users' files) and :mod:`ralif.pools.sources` (pools read in blocks)
judge an array by its header before reading it; this is the one place that reads a
header and the one memory cap they compare it with. It is also the one place that
words a failure of the operating system to read or write a file (:func:`os_error`).
"""

from __future__ import annotations

import io as pyio
import os
from collections.abc import Container, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from ralif._validation import RalifInputError

MAX_ARRAY_BYTES_ENV = "RALIF_MAX_ARRAY_BYTES"
"""Environment variable: the largest array (in bytes, once loaded) ralif reads from a file."""


@contextmanager
def os_error(action: str, what: str, errnos: Container[int] | None = None) -> Iterator[None]:
    """Report an ``OSError`` raised in the block as a :class:`RalifInputError`.

    The one wording of such a failure: ``cannot {action} {what}: {reason}``, the reason
    being the system's (``strerror``), or the exception's text where it has none.
    Anything else raised in the block (a ``RalifInputError`` too) passes as it is.

    Parameters
    ----------
    action : str
        What could not be done: ``"read"``, ``"write"``, ``"create"``...
    what : str
        To what, with its path: ``"pool shard parts/part-0.npy"``.
    errnos : container of int, optional
        Translate only an ``OSError`` with one of these ``errno`` values; the others
        reach the caller as they are (all are translated when None).

    Examples
    --------
    >>> with os_error("read", "labels file /nowhere/y.npy"):
    ...     open("/nowhere/y.npy", "rb")
    Traceback (most recent call last):
    ...
    ralif._validation.RalifInputError: cannot read labels file /nowhere/y.npy: No such file or directory
    """
    try:
        yield
    except OSError as exc:
        if errnos is not None and exc.errno not in errnos:
            raise
        raise RalifInputError(f"cannot {action} {what}: {exc.strerror or exc}") from None


def _available_memory() -> int | None:
    """Bytes of memory available now: the system's MemAvailable, within a cgroup limit."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return max(min(found), 0) if found else None


def max_array_bytes() -> int | None:
    """The largest array ralif reads from a ``.npy``/``.npz``/``.parquet`` file, in bytes.

    The value of the environment variable ``RALIF_MAX_ARRAY_BYTES`` when set, else the
    memory available when the file is opened. A file whose header announces a bigger
    array is refused before anything is allocated, so a small compressed file cannot
    expand into all of memory.

    Returns
    -------
    int or None
        None where the available memory cannot be known (no limit then).
    """
    text = os.environ.get(MAX_ARRAY_BYTES_ENV, "").strip()
    if text:
        try:
            value = int(float(text))
        except ValueError:
            raise RalifInputError(
                f"{MAX_ARRAY_BYTES_ENV} must be a number of bytes, got {text!r}"
            ) from None
        if value <= 0:
            raise RalifInputError(f"{MAX_ARRAY_BYTES_ENV} must be positive, got {text!r}")
        return value
    return _available_memory()


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _npy_layout(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran order, dtype, header length)`` of the ``.npy`` stream ``fh``.

    Reads the header alone. The one reader of ``.npy`` headers: files, ``.npz``
    members and pool shards. A header numpy cannot parse, or one giving a negative
    size, is refused as corrupt.
    """
    try:
        # The header's length is checked before its bytes are read: a forged length
        # would have a read allocate that much at once.
        start = _read_exactly(fh, 8)
        if start[:6] != b"\x93NUMPY":
            raise ValueError("the file does not start as a .npy file")
        version = (start[6], start[7])
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        field = _read_exactly(fh, 2 if version == (1, 0) else 4)
        length = int.from_bytes(field, "little")
        if length > _NPY_HEADER_MAX:
            raise ValueError(f"its header claims {length} bytes, more than {_NPY_HEADER_MAX}")
        raw = start + field + _read_exactly(fh, length)
        parse = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        buf = pyio.BytesIO(raw)
        npy_format.read_magic(buf)
        shape, fortran, dtype = parse(buf)
    except Exception as exc:  # numpy's header parser raises whatever Python's tokenizer does
        raise RalifInputError(f"cannot read {where} (corrupt or not .npy): {exc}") from None
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise RalifInputError(f"cannot read {where} (corrupt): its header gives the shape {shape}")
    return shape, bool(fortran), np.dtype(dtype), len(raw)


_NPY_HEADER_MAX = 10_000
"""The longest ``.npy`` header read: numpy's own limit (it writes a few hundred bytes)."""


def _read_exactly(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError(f"the file ends after {len(data)} of {n} bytes of its header")
    return data


def _read_npy_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header length)`` of the ``.npy`` stream ``fh`` (:func:`_npy_layout`)."""
    shape, _, dtype, length = _npy_layout(fh, where)
    return shape, dtype, length


def _refuse_pickled(dtype: np.dtype, where: str) -> None:
    if dtype.hasobject:
        raise RalifInputError(
            f"refusing to read {where}: it holds pickled Python objects, which could run code; "
            "save plain numeric arrays instead"
        )
