"""Fashion-MNIST (Xiao et al., 2017): 70,000 28x28 grey images of 10 clothing classes.

Looked for, in order: the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), the folder named by ``$RALIF_DATA`` (the four
``.gz`` files in it or in its ``fashion-mnist`` sub-folder), ralif's cache
(``~/.cache/ralif/fashion-mnist``), and finally the official download, when online.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_EXPECTED = {"train": 60000, "test": 10000}


def candidate_dirs() -> list[Path]:
    """Folders searched for the files, in order."""
    dirs = [DEBIAN_DIR]
    env = os.environ.get("RALIF_DATA")
    if env:
        dirs += [Path(env), Path(env) / "fashion-mnist"]
    dirs.append(cache_dir())
    return dirs


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ralif" / "fashion-mnist"


def read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST format), checking its header and size.

    The size announced by the header is checked against the memory ralif may use
    before the body is decompressed, and exactly that many bytes are read: a small
    gzip that would expand without end is refused.
    """
    from ralif.io import max_array_bytes

    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise RalifInputError(f"{path} is too short to be an IDX file")
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
                raise RalifInputError(
                    f"{path} is not an unsigned-byte IDX file (header {head.hex()})"
                )
            raw_dims = fh.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise RalifInputError(f"{path} is too short to be an IDX file")
            dims = struct.unpack(">" + "I" * ndim, raw_dims)
            size = int(np.prod(dims, dtype=object))
            cap = max_array_bytes()
            if cap is not None and size > cap:
                raise RalifInputError(
                    f"{path}: header says {dims} ({size} bytes), more than the memory ralif may use"
                )
            data = fh.read(size)
            extra = fh.read(1)
    except (OSError, EOFError) as exc:
        raise RalifInputError(f"cannot read {path}: corrupt or not gzip ({exc})") from None
    if len(data) != size or extra:
        raise RalifInputError(
            f"{path}: header says {dims} but holds {len(data) + len(extra)}"
            f"{'+' if extra else ''} bytes (truncated or corrupt?)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find() -> Path | None:
    names = [n for pair in FILES.values() for n in pair]
    for d in candidate_dirs():
        if all((d / n).is_file() for n in names):
            return d
    return None


def download(target: Path | None = None, timeout: float = 30.0) -> Path:
    """Fetch the four files from the official mirror into ``target`` (default: the cache)."""
    target = target or cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in (n for pair in FILES.values() for n in pair):
        if (target / name).is_file():
            continue
        from ralif.io import open_output

        # Written whole or not at all, with the permissions of the umask like any file.
        with (
            urllib.request.urlopen(URL + name, timeout=timeout) as resp,
            open_output(target / name, "Fashion-MNIST file", binary=True) as out,
        ):
            shutil.copyfileobj(resp, out)
    return target


def locate(allow_download: bool = True) -> Path:
    """The folder holding the four files; downloads them if allowed and nowhere found."""
    found = _find()
    if found is not None:
        return found
    searched = ", ".join(str(d) for d in candidate_dirs())
    how = (
        "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
        "or put the four .gz files in a folder and set RALIF_DATA to it"
    )
    if not allow_download:
        raise RalifInputError(f"Fashion-MNIST not found (looked in {searched}); {how}")
    try:
        return download()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise RalifInputError(
            f"Fashion-MNIST not found (looked in {searched}) and the download failed ({exc}); {how}"
        ) from None


def load(split: str = "train", allow_download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) of one split, ``"train"`` or ``"test"``."""
    if split not in FILES:
        raise RalifInputError(f"split must be 'train' or 'test', got {split!r}")
    folder = locate(allow_download)
    images = read_idx(folder / FILES[split][0])
    labels = read_idx(folder / FILES[split][1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise RalifInputError(f"Fashion-MNIST {split} files in {folder} do not match each other")
    if len(labels) != _EXPECTED[split]:
        raise RalifInputError(
            f"Fashion-MNIST {split} in {folder} has {len(labels)} items, expected {_EXPECTED[split]}"
        )
    return images, labels.astype(np.int64)
