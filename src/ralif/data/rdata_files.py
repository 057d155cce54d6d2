"""Data sets shipped in R packages, read without R.

Debian packages R's data packages (``r-cran-modeldata``, ``r-cran-kernlab``,
``r-cran-caret``) with their data as ``.rda``/``.RData`` files or as one lazy-load
database (``Rdata.rdb`` with its index ``Rdata.rdx``). Both are R's serialization
format, which the PyPI package ``rdata`` parses (``pip install 'ralif[suite]'``); no R
installation is needed and nothing is executed.

A package's ``data`` folder is looked for in ``$RALIF_R_LIBS`` (folders separated by
``:``), ralif's cache (``~/.cache/ralif/r-packages``, where
``scripts/suite_data.sh`` unpacks the Debian packages without installing R), then R's
library folders.
"""

from __future__ import annotations

import bz2
import lzma
import os
import struct
import warnings
import zlib
from pathlib import Path

from ralif._validation import RalifInputError

SYSTEM_LIBS = (
    Path("/usr/lib/R/site-library"),
    Path("/usr/local/lib/R/site-library"),
    Path("/usr/lib/R/library"),
)

_MAX_OBJECT_BYTES = 512 << 20
"""Largest decompressed object accepted from a lazy-load database."""


def cache_dir() -> Path:
    """Where ``scripts/suite_data.sh`` unpacks R data packages."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ralif" / "r-packages"


def library_dirs() -> list[Path]:
    """Folders searched for R packages, in order."""
    env = [Path(p) for p in os.environ.get("RALIF_R_LIBS", "").split(os.pathsep) if p]
    cache = cache_dir()
    # dpkg-deb -x keeps the Debian layout below the cache folder.
    return [*env, cache, cache / "usr/lib/R/site-library", *SYSTEM_LIBS]


def package_data_dir(package: str) -> Path:
    """The ``data`` folder of an installed (or unpacked) R package."""
    for lib in library_dirs():
        d = lib / package / "data"
        if d.is_dir():
            return d
    searched = ", ".join(str(p) for p in library_dirs())
    raise RalifInputError(
        f"the R data package {package!r} was not found (looked in {searched}); install the "
        f"Debian package r-cran-{package.lower()} (apt-get install r-cran-{package.lower()}), "
        "or run scripts/suite_data.sh, or set RALIF_R_LIBS to a folder holding "
        f"{package}/data"
    )


def _rdata():
    try:
        import rdata
    except ImportError:
        raise RalifInputError(
            "reading R data sets needs the suite extra: pip install 'ralif[suite]'"
        ) from None
    return rdata


def _quietly(fn, *args):
    with warnings.catch_warnings():
        # rdata warns about R classes it has no Python counterpart for (e.g. tibble
        # attributes; the columns come through as plain data) and about the lazy-load
        # index's bare gzip stream.
        warnings.simplefilter("ignore")
        return fn(*args)


def _convert(rdata, parsed):
    return _quietly(rdata.conversion.convert, parsed)


def _lazy_object(rdb: Path, offset: int, length: int, name: str) -> bytes:
    """One serialized object from a lazy-load database, decompressed.

    Each entry is a 4-byte big-endian uncompressed length, then (for R's compression
    types 2 and 3) one byte naming the method, then the stream: zlib, bzip2, or raw
    LZMA2 (R writes xz streams without the container, and marks them 'Z' as well).
    """
    with open(rdb, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(length)
    if len(chunk) != length or length < 5:
        raise RalifInputError(f"{rdb}: entry {name!r} is truncated")
    size = struct.unpack(">I", chunk[:4])[0]
    if size > _MAX_OBJECT_BYTES:
        raise RalifInputError(f"{rdb}: entry {name!r} claims {size} bytes, over the limit")
    kind, body = chunk[4:5], chunk[5:]
    try:
        if kind == b"2":
            # Bounded like the others: a bomb stops one byte past the announced size.
            data = bz2.BZ2Decompressor().decompress(body, max_length=size + 1)
        elif kind == b"0":
            data = body
        else:
            try:
                dec = lzma.LZMADecompressor(
                    format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}]
                )
                data = dec.decompress(body, max_length=size + 1)
            except lzma.LZMAError:
                data = zlib.decompressobj().decompress(chunk[4:], size + 1)
    except (OSError, ValueError, lzma.LZMAError, zlib.error) as exc:
        raise RalifInputError(f"{rdb}: entry {name!r} is corrupt ({exc})") from None
    if len(data) != size:
        raise RalifInputError(
            f"{rdb}: entry {name!r} decompressed to {len(data)} bytes, header says {size}"
        )
    return data


def read_r_object(package: str, name: str) -> object:
    """The R object ``name`` from a package's data, converted by ``rdata``.

    Data frames come back as ``pandas.DataFrame`` (factors as categoricals), vectors as
    arrays or categoricals.

    Parameters
    ----------
    package : str
        The R package, e.g. ``"modeldata"``.
    name : str
        The object's name, e.g. ``"hpc_data"``.

    Returns
    -------
    object
    """
    rdata = _rdata()
    folder = package_data_dir(package)
    index = folder / "Rdata.rdx"
    if index.is_file():
        try:
            entries = _convert(rdata, _quietly(rdata.parser.parse_file, index))["variables"]
        except Exception as exc:
            raise RalifInputError(f"{index} is not an R lazy-load index ({exc})") from None
        entries = {str(k): v for k, v in entries.items()}
        if name in entries:
            offset, length = (int(v) for v in entries[name])
            data = _lazy_object(folder / "Rdata.rdb", offset, length, name)
            try:
                return _convert(rdata, _quietly(rdata.parser.parse_data, data))
            except Exception as exc:
                raise RalifInputError(f"{folder}: cannot parse {name!r} ({exc})") from None
    files = sorted(folder.iterdir(), key=lambda f: (f.stem != name, f.name))
    for path in files:
        if path.suffix.lower() not in (".rda", ".rdata"):
            continue
        try:
            objects = _convert(rdata, _quietly(rdata.parser.parse_file, path))
        except Exception as exc:
            raise RalifInputError(f"{path} is not an R data file ({exc})") from None
        if name in objects:
            return objects[name]
    raise RalifInputError(f"the R package {package!r} holds no data set named {name!r}")
