"""Images for the deep scenarios of ``ralif bench`` (``--scenario scratch-*``)."""

from __future__ import annotations

from ralif.data import Dataset, load_images, subsample
from ralif.data.transforms import long_tailed_indices


def load_image_data(
    name: str,
    imbalance: float | None = None,
    pool_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """Images of a data set, long-tailed and subsampled as configured.

    Parameters
    ----------
    name : str
        As for :func:`ralif.data.load_images`.
    imbalance : float, optional
        Above 1, the pool is made long-tailed with this ratio of the largest class to
        the smallest (:func:`ralif.data.transforms.long_tailed_indices`).
    pool_size, test_size : int, optional
        As for :func:`ralif.data.subsample`.

    Returns
    -------
    Dataset
        Its ``X`` and ``X_test`` hold images (n, channels, height, width).
    """
    X, y, Xt, yt = load_images(name)
    if imbalance and imbalance > 1:
        keep = long_tailed_indices(y, imbalance)
        X, y = X[keep], y[keep]
    return subsample(Dataset(name, X, y, Xt, yt), pool_size, test_size)
