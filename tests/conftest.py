"""Shared, seeded datasets for the tests, and the rule for optional dependencies."""

from __future__ import annotations

import importlib
import os
import pathlib
import stat
import types

import numpy as np
import pytest

ALLOW_MISSING_ENV = "RALIF_TEST_ALLOW_MISSING"


def _may_skip() -> bool:
    # CI installs every piece (.ci/run); there a missing one is a failure even if the
    # variable leaked into its environment.
    return os.environ.get(ALLOW_MISSING_ENV) == "1" and os.environ.get("CI") != "true"


def require(module: str) -> types.ModuleType:
    """Import a dependency that CI installs (``.ci/run``): a missing one fails the test.

    Locally, ``RALIF_TEST_ALLOW_MISSING=1`` turns it into a skip that names it, so that
    nothing is skipped silently where everything should be there (never under
    ``CI=true``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        if _may_skip():
            pytest.skip(
                f"{module} is not installed ({ALLOW_MISSING_ENV}=1)", allow_module_level=True
            )
        raise


def missing(what: str) -> None:
    """Fail the test for want of ``what`` (a program, a privilege) that CI provides.

    Like :func:`require`: a skip naming it only with ``RALIF_TEST_ALLOW_MISSING=1``
    outside CI.
    """
    if _may_skip():
        pytest.skip(f"{what} ({ALLOW_MISSING_ENV}=1)")
    pytest.fail(f"{what}; set {ALLOW_MISSING_ENV}=1 to skip this test locally", pytrace=False)


def char_device(folder: pathlib.Path) -> pathlib.Path:
    """A character device that discards what is written: a /dev/null node made in
    ``folder`` where the process may (CAP_MKNOD), else /dev/null itself.

    /dev/null itself only where ``/dev`` is not writable, so that a writer that wrongly
    replaces its target cannot replace the system's /dev/null.
    """
    node = folder / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return node
    except PermissionError:
        if not os.access("/dev", os.W_OK) and stat.S_ISCHR(os.stat("/dev/null").st_mode):
            return pathlib.Path("/dev/null")
    missing("a character device to write to: CAP_MKNOD, or /dev/null in a read-only /dev")
    raise AssertionError("unreachable")


def regular_files(folder: pathlib.Path) -> set[str]:
    """Names of the regular files in ``folder`` (where a temporary file would show)."""
    return {p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


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


@pytest.fixture(scope="session")
def small(blobs):
    """The blobs as a benchmark's dataset: 450 pool items, 150 test items."""
    from ralif.data import Dataset

    X, y = blobs
    return Dataset("blobs", X[:450], y[:450], X[450:], y[450:])


def partial_labels(y: np.ndarray, n_labeled: int, seed: int = 0) -> np.ndarray:
    """A copy of ``y`` with all but ``n_labeled`` random entries set to -1."""
    rng = np.random.default_rng(seed)
    out = np.full(len(y), -1)
    idx = rng.choice(len(y), n_labeled, replace=False)
    out[idx] = y[idx]
    return out


# Property-based tests (tests/test_fuzz_*.py) run a small profile in CI; the fuzz
# benchmark (benchmarks/fuzz.py) selects the long one with --hypothesis-profile=fuzz.
try:
    from hypothesis import HealthCheck, settings

    _FUZZ_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    settings.register_profile(
        "ci", max_examples=40, deadline=None, derandomize=True, suppress_health_check=_FUZZ_CHECKS
    )
    settings.register_profile(
        "fuzz",
        max_examples=int(os.environ.get("RALIF_FUZZ_EXAMPLES", "10000")),
        deadline=None,
        suppress_health_check=_FUZZ_CHECKS,
    )
    settings.load_profile(os.environ.get("RALIF_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the fuzz tests require it themselves (require("hypothesis"))
    pass
