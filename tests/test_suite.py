"""The benchmark suite: R data read without R, suite data sets, the protocol, the suite report."""

from __future__ import annotations

import gzip
import lzma
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import rdata

from ralif import RalifInputError
from ralif.bench.runner import BenchConfig, run_suite, suite_configs
from ralif.bench.suite_report import (
    SetResult,
    common_strategies,
    friedman_nemenyi,
    make_suite_report,
    mean_ranks,
    reliability,
)
from ralif.data import rdata_files
from ralif.data.suite import SUITE, SUITES, suite_members, tabular_features
from tests.conftest import missing


def _serialized(obj) -> bytes:
    """R's XDR serialization of ``obj`` (what a lazy-load entry holds, uncompressed)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.rds"
        rdata.write_rds(path, obj)
        return gzip.decompress(path.read_bytes())


def _make_lazy_package(root, objects: dict, kinds: dict) -> None:
    """An R package folder whose data is a lazy-load database, built by hand."""
    data = root / "fakepkg" / "data"
    data.mkdir(parents=True)
    blob, index = b"", {}
    for name, obj in objects.items():
        raw = _serialized(obj)
        if kinds[name] == "xz":
            comp = lzma.compress(
                raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}]
            )
            entry = struct.pack(">I", len(raw)) + b"Z" + comp
        else:
            entry = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index[name] = np.array([len(blob), len(entry)])
        blob += entry
    (data / "Rdata.rdb").write_bytes(blob)
    rdata.write_rds(data / "Rdata.rdx", {"variables": index, "compressed": np.array([3])})


@pytest.fixture
def frame():
    return pd.DataFrame(
        {"size": [1.0, 2.5, np.nan, 4.0], "kind": pd.Categorical(["a", "b", "a", "c"])}
    )


def test_lazy_load_database_is_read_without_r(tmp_path, monkeypatch, frame):
    other = pd.DataFrame({"v": [7.0, 8.0]})
    _make_lazy_package(tmp_path, {"tbl": frame, "other": other}, {"tbl": "xz", "other": "zlib"})
    monkeypatch.setenv("RALIF_R_LIBS", str(tmp_path))
    got = rdata_files.read_r_object("fakepkg", "tbl")
    np.testing.assert_array_equal(got["size"].to_numpy(), frame["size"].to_numpy())
    assert got["kind"].astype(str).tolist() == ["a", "b", "a", "c"]
    assert rdata_files.read_r_object("fakepkg", "other")["v"].tolist() == [7.0, 8.0]


def test_rda_file_is_read(tmp_path, monkeypatch, frame):
    data = tmp_path / "rdapkg" / "data"
    data.mkdir(parents=True)
    rdata.write_rda(data / "tbl.rda", {"tbl": frame})
    monkeypatch.setenv("RALIF_R_LIBS", str(tmp_path))
    got = rdata_files.read_r_object("rdapkg", "tbl")
    assert got["kind"].astype(str).tolist() == ["a", "b", "a", "c"]
    with pytest.raises(RalifInputError, match="no data set named 'nope'"):
        rdata_files.read_r_object("rdapkg", "nope")


def test_corrupt_lazy_load_entry_is_refused(tmp_path, monkeypatch, frame):
    _make_lazy_package(tmp_path, {"tbl": frame}, {"tbl": "xz"})
    rdb = tmp_path / "fakepkg" / "data" / "Rdata.rdb"
    body = bytearray(rdb.read_bytes())
    body[8:40] = b"\xff" * 32
    rdb.write_bytes(bytes(body))
    monkeypatch.setenv("RALIF_R_LIBS", str(tmp_path))
    with pytest.raises(RalifInputError, match=r"corrupt|decompressed"):
        rdata_files.read_r_object("fakepkg", "tbl")


def test_missing_r_package_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("RALIF_R_LIBS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(rdata_files, "SYSTEM_LIBS", ())
    with pytest.raises(RalifInputError, match="apt-get install r-cran-modeldata"):
        rdata_files.read_r_object("modeldata", "hpc_data")


def test_tabular_features_are_fitted_on_the_train_rows_only(frame):
    train, test = np.array([0, 1, 3]), np.array([2])
    X, Xt = tabular_features(frame, train, test)
    # size: the missing test value takes the train median (2.5); standardized with
    # the train mean and std of [1, 2.5, 4].
    mu, sd = 2.5, np.std([1.0, 2.5, 4.0])
    np.testing.assert_allclose(X[:, 0], (np.array([1.0, 2.5, 4.0]) - mu) / sd, rtol=1e-6)
    np.testing.assert_allclose(Xt[0, 0], 0.0, atol=1e-7)
    # kind: one-hot over the train levels a, b, c; the test row is "a".
    onehot_train = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    mu1, sd1 = onehot_train.mean(axis=0), onehot_train.std(axis=0)
    np.testing.assert_allclose(Xt[0, 1:], (np.array([1, 0, 0]) - mu1) / sd1, rtol=1e-6)


def test_confirm_half_is_the_one_fixed_before_tuning():
    # The split was committed before any default was tuned on the suite; changing it
    # would make the confirm half's figures a fit, not an estimate.
    assert SUITES["confirm"] == (
        "income", "wine", "penguins", "cells", "credit", "stackoverflow", "breast-cancer",
        "fine-foods",
    )  # fmt: skip
    assert set(SUITES["tune"]) == set(SUITE) - set(SUITES["confirm"])


def test_unknown_suite_member_is_refused():
    with pytest.raises(RalifInputError, match="unknown suite"):
        suite_members("wine,nope")


def test_real_r_data_packages_load():
    """The Debian packages' real files (installed by .ci/run) go through the reader."""
    from ralif.data import load_dataset

    try:
        rdata_files.package_data_dir("modeldata")
    except RalifInputError as exc:
        missing(str(exc))  # names the Debian package and scripts/suite_data.sh
    data = load_dataset("hpc")
    assert len(data.y) + len(data.y_test) == 4331  # hpc_data's documented size
    assert data.n_classes == 4
    assert np.isfinite(data.X).all() and data.X.dtype == np.float32


def test_friedman_nemenyi_critical_difference_matches_demsar():
    # Demšar (2006), Table 5: q_0.05 = 2.569 for k = 4; CD = q sqrt(k(k+1) / 6N).
    ranks = np.tile([1.0, 2.0, 3.0, 4.0], (14, 1))
    _, cd = friedman_nemenyi(ranks)
    assert cd == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 14)), abs=2e-3)


def test_mean_ranks_share_ties():
    sets = [
        SetResult("a", "tune", "accuracy", 5, 6, {"x": 90.0, "y": 90.0, "z": 80.0}),
        SetResult("b", "tune", "accuracy", 5, 6, {"x": 70.0, "y": 75.0, "z": 60.0}),
    ]
    _, mean = mean_ranks(sets, ["x", "y", "z"])
    np.testing.assert_allclose(mean, [(1.5 + 2) / 2, (1.5 + 1) / 2, 3.0])


def test_reliability_goal_needs_no_round_below_random_and_margin():
    p_none = {"r": np.full(6, 0.5)}
    sets = [
        SetResult(
            str(i), "tune", "accuracy", 5, 6, {"r": 80.0 + d, "margin": 80.0, "random": 79.0},
            {"r": 0}, dict(p_none), {"r": (1.0, 0.0, 2.0)},
        )
        for i, d in enumerate([0.5, 0.0, 1.0, -0.4])
    ]  # fmt: skip
    assert reliability(sets, "r")["meets_goal"]  # 3 of 4 at least margin, worst -0.4
    sets[3].aubc["r"] = 79.4  # 0.6 below margin
    assert not reliability(sets, "r")["meets_goal"]
    sets[3].aubc["r"] = 80.0
    # One round significantly below random by its own test, but not after Holm's
    # adjustment over the 24 rounds (0.01 * 24 > 0.05): the raw goal fails, Holm's holds.
    sets[0].below["r"], sets[0].p_below["r"] = 1, np.r_[0.01, np.full(5, 0.5)]
    rel = reliability(sets, "r")
    assert not rel["meets_goal_raw"] and rel["meets_goal"]
    assert rel["sets_never_below"] == 3 and rel["rounds_below"] == 1
    assert rel["rounds_below_holm"] == 0 and rel["sets_never_below_holm"] == 4
    sets[0].p_below["r"] = np.r_[0.001, np.full(5, 0.5)]  # 0.001 * 24 < 0.05
    assert not reliability(sets, "r")["meets_goal"]


def test_without_random_nothing_is_judged_below_it():
    sets = [SetResult("a", "tune", "accuracy", 5, 6, {"r": 80.0, "margin": 79.0})]
    rel = reliability(sets, "r")
    assert "rounds_below" not in rel and not rel["meets_goal"] and not rel["meets_goal_raw"]


def test_suite_run_and_report_across_data_sets(tmp_path):
    base = BenchConfig(strategies=("random", "margin", "ralif"), seeds=1)
    configs = suite_configs("wine,breast-cancer", base)
    assert configs["wine"].init == SUITE["wine"].init
    assert configs["breast-cancer"].budget == SUITE["breast-cancer"].budget
    folders = run_suite("wine,breast-cancer", base, tmp_path, quiet=True)
    assert [f.name for f in folders] == ["wine", "breast-cancer"]
    out = make_suite_report(tmp_path)
    text = out["report"].read_text()
    assert "wine (accuracy, 1)" in text and "breast-cancer (accuracy, 1)" in text
    assert (tmp_path / "cd-confirm.png").stat().st_size > 0
    # The table's AUBC is the mean over rounds 1..R of the stored accuracies.
    import sqlite3

    db = sqlite3.connect(tmp_path / "wine" / "results.sqlite")
    acc = [r[0] for r in db.execute(
        "SELECT accuracy FROM results WHERE strategy='margin' AND round >= 1 ORDER BY round"
    )]  # fmt: skip
    db.close()
    assert len(acc) == SUITE["wine"].rounds
    row = next(line for line in text.splitlines() if line.startswith("| wine (accuracy"))
    assert f"{np.mean(acc) * 100:.1f}" in row


def _set_rows(shift: dict[str, list[float]], seeds: int = 6, rounds: int = 3) -> list[dict]:
    """Rows of one data set: each strategy is random's curve plus a per-round shift
    (points) and seeded noise; random#2 is random with other noise."""
    rng = np.random.default_rng(len(shift))
    base = 0.6 + 0.05 * np.arange(rounds + 1)
    rows = []
    for s in ["random", "random#2", *shift]:
        add = np.r_[0.0, shift.get(s, [0.0] * rounds)] / 100
        for seed in range(seeds):
            noise = np.r_[0.0, rng.normal(scale=0.002, size=rounds)]
            for k, a in enumerate(base + add + noise):
                rows.append(dict(strategy=s, seed=seed, round=k, n_labeled=10 * (k + 1),
                                 accuracy=a, macro_f1=a, select_seconds=0.0, fit_seconds=0.0))  # fmt: skip
    return rows


def test_suite_report_counts_rounds_significantly_below_random_and_the_noise_floor():
    from ralif.bench.report import load_curves
    from ralif.bench.suite_report import markdown, summarize

    a = summarize("wine", load_curves(_set_rows({"margin": [1, 1, 1], "x": [-3, 0.5, 2]})))
    b = summarize("penguins", load_curves(_set_rows({"margin": [1, 1, 1], "x": [2, 2, 2]})))
    assert a.below["x"] == 1 and b.below["x"] == 0 and a.below["margin"] == 0
    m, low, high = a.vs_margin["x"]
    assert m == pytest.approx((-3 + 0.5 + 2) / 3 - 1, abs=0.05) and low < m < high
    rel = reliability([a, b], "x")
    assert rel["sets_never_below"] == 1 and rel["rounds_below"] == 1 and not rel["meets_goal"]
    text = markdown([a, b], "confirm half")
    assert "Noise floor: `random#2`" in text
    assert "| wine (3) | " in text and "bootstrap interval" in text
    # The noise floor is shown against random but is no contender in the ranks.
    assert common_strategies([a, b]) == ["margin", "x", "random"]
    assert "| random#2 | " not in text.split("### Mean rank")[1]
