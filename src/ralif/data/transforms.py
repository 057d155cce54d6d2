"""Dataset transforms: a long-tailed subsample and fixed features by PCA."""

from __future__ import annotations

import numpy as np

from ralif._validation import RalifInputError


def long_tailed_indices(y: np.ndarray, imbalance_ratio: float, random_state: int = 0) -> np.ndarray:
    """Indices of an exponentially long-tailed subsample of ``y``.

    Class ``k`` (in a random order of the classes) keeps ``n_max * ratio^(-k / (C - 1))``
    items, where ``n_max`` is the smallest class size, so the largest class has
    ``imbalance_ratio`` times as many items as the smallest (Cui et al., 2019).

    Parameters
    ----------
    y : ndarray of shape (n,)
        Labels.
    imbalance_ratio : float
        Largest over smallest class size, ``>= 1``.
    random_state : int
        Seed of the class order and of which items are kept.

    Returns
    -------
    indices : ndarray, sorted
    """
    if not imbalance_ratio >= 1:
        raise RalifInputError(f"imbalance ratio must be >= 1, got {imbalance_ratio}")
    rng = np.random.default_rng(random_state)
    classes = rng.permutation(np.unique(y))
    n_max = min(int((y == c).sum()) for c in classes)
    C = len(classes)
    keep = []
    for k, c in enumerate(classes):
        n_c = max(1, int(n_max * imbalance_ratio ** (-k / max(1, C - 1))))
        keep.append(rng.choice(np.flatnonzero(y == c), n_c, replace=False))
    return np.sort(np.concatenate(keep))


def pca_features(
    X_train: np.ndarray, X_test: np.ndarray, dim: int, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Standardize pixels, project to ``dim`` principal components (fitted on train).

    The components keep their relative variances (no whitening), scaled together to
    unit mean variance: whitening would give the weakest, noisiest components as much
    weight in distances as the strongest, which misleads every distance-based selector
    (benchmarks/results/pca-whitening.md).

    Returns float32 arrays.
    """
    from sklearn.decomposition import PCA

    X_train = X_train.reshape(len(X_train), -1).astype(np.float32)
    X_test = X_test.reshape(len(X_test), -1).astype(np.float32)
    if not 1 <= dim <= min(X_train.shape):
        raise RalifInputError(f"--dim must be in [1, {min(X_train.shape)}], got {dim}")
    mu, sd = X_train.mean(axis=0), X_train.std(axis=0) + 1e-6
    pca = PCA(n_components=dim, svd_solver="randomized", random_state=random_state)
    Z_train = pca.fit_transform((X_train - mu) / sd)
    Z_test = pca.transform((X_test - mu) / sd)
    scale = float(np.sqrt((Z_train**2).mean())) + 1e-12
    return (Z_train / scale).astype(np.float32), (Z_test / scale).astype(np.float32)
