"""Shared, seeded datasets for the tests, and the rule for optional dependencies."""

from __future__ import annotations

import importlib
import os
import types

import numpy as np
import pytest

ALLOW_MISSING_ENV = "RALIF_TEST_ALLOW_MISSING"


def require(module: str) -> types.ModuleType:
    """Import a dependency that CI installs (``.ci/run``): a missing one fails the test.

    Locally, ``RALIF_TEST_ALLOW_MISSING=1`` turns it into a skip that names it, so that
    nothing is skipped silently where everything should be there.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get(ALLOW_MISSING_ENV) == "1":
            pytest.skip(
                f"{module} is not installed ({ALLOW_MISSING_ENV}=1)", allow_module_level=True
            )
        raise


def standardized_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X - X.mean(axis=0)) / (X.std(axis=0) + 1.0), y


def gaussian_blobs(n: int = 600, d: int = 8, C: int = 4, sep: float = 1.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, d)) * sep
    y = rng.integers(C, size=n)
    return centers[y] + rng.normal(size=(n, d)), y


@pytest.fixture(scope="session")
def digits():
    return standardized_digits()


@pytest.fixture(scope="session")
def blobs():
    return gaussian_blobs()


def partial_labels(y: np.ndarray, n_labeled: int, seed: int = 0) -> np.ndarray:
    """A copy of ``y`` with all but ``n_labeled`` random entries set to -1."""
    rng = np.random.default_rng(seed)
    out = np.full(len(y), -1)
    idx = rng.choice(len(y), n_labeled, replace=False)
    out[idx] = y[idx]
    return out
