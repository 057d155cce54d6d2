"""Datasets as arrays: Fashion-MNIST, scikit-learn's digits, user ``.npz`` files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ralif._validation import RalifInputError, check_features, check_labels
from ralif.data import fashion_mnist
from ralif.data.transforms import long_tailed_indices, pca_features


@dataclass
class Dataset:
    """A pool (``X``, ``y``) and a fixed test set, features ready for a linear head.

    ``X`` is an array, or for a pool source (``ralif bench --dataset SHARDS``) a
    :class:`ralif.pools.streaming.StreamedFeatures`: the source's pool rows, read by index.
    """

    name: str
    X: Any  # an array, or rows of a pool source: the data sets know no pool runner
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(max(self.y.max(), self.y_test.max()) + 1)


def subsample(data: Dataset, pool_size: int | None = None, test_size: int | None = None) -> Dataset:
    """Keep a fixed random ``pool_size`` of the pool and ``test_size`` of the test set.

    Parameters
    ----------
    data : Dataset
        Held in memory.
    pool_size, test_size : int, optional
        Rows kept (all when None or larger); drawn with a fixed seed, in their order.

    Returns
    -------
    Dataset
    """
    rng = np.random.default_rng(0)
    X, y, Xt, yt = data.X, data.y, data.X_test, data.y_test
    if pool_size and pool_size < len(y):
        keep = np.sort(rng.choice(len(y), pool_size, replace=False))
        X, y = X[keep], y[keep]
    if test_size and test_size < len(yt):
        keep = np.sort(rng.choice(len(yt), test_size, replace=False))
        Xt, yt = Xt[keep], yt[keep]
    return Dataset(data.name, X, y, Xt, yt)


def _raw(name: str) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """(name, X, y, X_test, y_test, is_raw_pixels)."""
    if name == "fashion-mnist":
        X, y = fashion_mnist.load("train")
        Xt, yt = fashion_mnist.load("test")
        return name, X, y, Xt, yt, True
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X, Xt, y, yt = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
        return name, X, y, Xt, yt, True
    from ralif.data import suite

    if name in suite._LOADERS:
        a = suite.load_suite_set(name)
        return name, a["X"], a["y"], a["X_test"], a["y_test"], False
    path = Path(name)
    if path.suffix.lower() != ".npz":
        raise RalifInputError(
            f"unknown dataset {name!r}: use fashion-mnist, digits, a suite data set "
            f"({', '.join(suite._LOADERS)}), or a .npz file with arrays X and y"
        )
    return (path.stem, *load_npz(path), False)


def _dataset_arrays(path: Path) -> dict[str, np.ndarray]:
    """``X``, ``y`` and, if present, ``X_test`` and ``y_test`` of a dataset ``.npz``."""
    from ralif.io import open_npz

    with open_npz(path, "dataset") as z:
        names = set(z.files)
        missing = {"X", "y"} - names
        if missing:
            raise RalifInputError(
                f"{path} must hold arrays X and y (missing {', '.join(sorted(missing))})"
            )
        if ("X_test" in names) != ("y_test" in names):
            raise RalifInputError(f"{path} must hold both X_test and y_test, or neither")
        # Rows are compared from the headers, before an array that cannot fit is expanded.
        for xs, ys in (("X", "y"), ("X_test", "y_test")):
            if xs in names:
                rows, labels = z.shape(xs)[:1], z.shape(ys)[:1]
                if rows != labels:
                    raise RalifInputError(
                        f"{path.name}: {ys} has {labels[0] if labels else 0} entries but "
                        f"{xs} has {rows[0] if rows else 0} rows"
                    )
        return {k: z[k] for k in ("X", "y", "X_test", "y_test") if k in names}


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X``, ``y`` and ``X_test``, ``y_test`` from an ``.npz`` (a stratified 25 % split if absent)."""
    arrays = _dataset_arrays(path)
    X = check_features(arrays["X"], f"{path.name}: X", min_rows=2)
    y = check_labels(arrays["y"], X.shape[0], f"{path.name}: y")
    if (y < 0).any():
        raise RalifInputError(f"{path.name}: y must label every item (found -1)")
    if "X_test" in arrays:
        Xt = check_features(arrays["X_test"], f"{path.name}: X_test", min_rows=1)
        yt = check_labels(arrays["y_test"], Xt.shape[0], f"{path.name}: y_test")
        if Xt.shape[1] != X.shape[1]:
            raise RalifInputError(
                f"{path.name}: X_test has {Xt.shape[1]} columns, X has {X.shape[1]}"
            )
        return X, y, Xt, yt
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 else None
    X, Xt, y, yt = train_test_split(X, y, test_size=0.25, stratify=strat, random_state=0)
    return X, y, Xt, yt


def _digits_images(X: np.ndarray) -> np.ndarray:
    return np.clip(X * 16, 0, 255).astype(np.uint8).reshape(-1, 1, 8, 8)


def load_images(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images as (n, channels, height, width) uint8 or float, with labels and a test split.

    For the deep scenarios: ``"fashion-mnist"`` (1 x 28 x 28), ``"digits"`` (1 x 8 x 8,
    scaled to 0-255), or an ``.npz`` whose ``X`` holds images (n, h, w) or (n, c, h, w).
    """
    if name in ("fashion-mnist", "digits"):
        _, X, y, Xt, yt, _ = _raw(name)
        if name == "digits":  # 8x8 images with values 0-16
            return _digits_images(X), y, _digits_images(Xt), yt
        return X[:, None], y, Xt[:, None], yt
    path = Path(name)
    if path.suffix.lower() != ".npz":
        raise RalifInputError(
            f"unknown image dataset {name!r}: use fashion-mnist, digits or an .npz"
        )
    arrays = _dataset_arrays(path)
    out = []
    for key in ("X", "X_test"):
        if key not in arrays:
            continue
        imgs = arrays[key]
        if imgs.ndim == 3:
            imgs = imgs[:, None]
        if imgs.ndim != 4:
            raise RalifInputError(
                f"{path.name}: {key} must hold images (n, h, w) or (n, c, h, w), got shape {imgs.shape}"
            )
        out.append(imgs)
    y = check_labels(arrays["y"], len(out[0]), f"{path.name}: y")
    if len(out) == 2:
        return (
            out[0],
            y,
            out[1],
            check_labels(arrays["y_test"], len(out[1]), f"{path.name}: y_test"),
        )
    rng = np.random.default_rng(0)
    test = rng.permutation(len(y))[: len(y) // 4]
    keep = np.setdiff1d(np.arange(len(y)), test)
    return out[0][keep], y[keep], out[0][test], y[test]


def load_dataset(name: str, dim: int | None = None, imbalance: float | None = None) -> Dataset:
    """Load a benchmark dataset as fixed features.

    Parameters
    ----------
    name : str
        ``"fashion-mnist"``, ``"digits"`` or the path of an ``.npz`` with arrays ``X``,
        ``y`` and optionally ``X_test``, ``y_test``.
    dim : int, optional
        Project to this many principal components (after standardizing). Image
        datasets default to 64 (digits: its 64 pixels, standardized); ``.npz``
        features are used as they are unless ``dim`` is given.
    imbalance : float, optional
        Subsample the pool to an exponentially long-tailed class profile with this
        largest-to-smallest ratio (the test set stays as it is).

    Returns
    -------
    Dataset
    """
    label, X, y, Xt, yt, is_pixels = _raw(name)
    if imbalance is not None and imbalance > 1:
        keep = long_tailed_indices(y, imbalance)
        X, y = X[keep], y[keep]
        label += f"-lt{imbalance:g}"
    if dim is None and is_pixels:
        dim = min(64, X.reshape(len(X), -1).shape[1])
    if dim is not None:
        X, Xt = pca_features(X, Xt, dim)
    return Dataset(label, X, y, Xt, yt)


__all__ = [
    "Dataset",
    "fashion_mnist",
    "load_dataset",
    "load_npz",
    "long_tailed_indices",
    "pca_features",
    "subsample",
]
