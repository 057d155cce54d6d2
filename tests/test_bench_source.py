"""``ralif bench`` over a pool source: features read by index and streamed, never whole."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pytest

from ralif.cli import main
from ralif.data.pools import pool_split
from ralif.pools.sources import PoolSource
from tests.conftest import gaussian_blobs, require

N, D, TEST = 600, 8, 100
COMMON = ["--seeds", "2", "--rounds", "2", "--init", "20", "--budget", "10", "--l2", "0.1"]
STREAMED = "ralif,margin,badge,random"


@pytest.fixture
def pool(tmp_path):
    X, y = gaussian_blobs(n=N, d=D, C=4, seed=3)
    X = X.astype(np.float32)
    folder = tmp_path / "shards"
    folder.mkdir()
    for k in range(3):
        np.save(folder / f"part-{k}.npy", X[k * 200 : (k + 1) * 200])
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    return folder, tmp_path / "y.npy", X, y


def _picks(folder) -> dict[tuple[str, int, int], list[int]]:
    db = sqlite3.connect(folder / "results.sqlite")
    try:
        rows = db.execute("SELECT strategy, seed, round, picks, accuracy FROM results").fetchall()
    finally:
        db.close()
    return {(s, seed, r): (json.loads(p), acc) for s, seed, r, p, acc in rows}


def _bench(*argv) -> int:
    return main(["bench", *argv, "--quiet"])


def test_split_draws_disjoint_test_rows_with_a_fixed_seed():
    pool, test = pool_split(N, TEST)
    assert len(test) == TEST and len(pool) == N - TEST
    assert np.array_equal(np.sort(np.concatenate([pool, test])), np.arange(N))
    again, test_again = pool_split(N, TEST)
    assert np.array_equal(test, test_again) and np.array_equal(pool, again)
    sub, test_sub = pool_split(N, TEST, pool_size=300)
    assert np.array_equal(test_sub, test) and len(sub) == 300 and np.isin(sub, pool).all()


def test_only_the_test_rows_labeled_rows_and_candidates_are_read_by_index(
    pool, tmp_path, monkeypatch
):
    folder, labels, _, _ = pool
    taken = []
    real_take = PoolSource.take

    def spy(self, rows):
        taken.append(len(rows))
        return real_take(self, rows)

    monkeypatch.setattr(PoolSource, "take", spy)
    args = ["--dataset", str(folder), "--labels", str(labels), *COMMON, "--test-size", str(TEST)]
    assert _bench(*args, "--strategies", "ralif,margin", "--out", str(tmp_path / "o")) == 0
    # The test set (100), at most 40 labeled rows, RALIF's 10 % of the pool as candidates,
    # and once per run the stop set of the stopping signals: here the whole pool of 480.
    pool_rows = N - TEST - 20  # less the initial labeled set
    assert max(taken) == pool_rows and taken.count(pool_rows) == 2  # once per seed
    assert max(t for t in taken if t != pool_rows) == TEST


def test_shards_give_the_picks_of_the_same_benchmark_held_in_memory(pool, tmp_path):
    folder, labels, X, y = pool
    args = [*COMMON, "--strategies", STREAMED, "--test-size", str(TEST)]
    assert (
        _bench(
            "--dataset", str(folder), "--labels", str(labels), *args, "--out", str(tmp_path / "s")
        )
        == 0
    )
    pool_rows, test_rows = pool_split(N, TEST)
    npz = tmp_path / "same.npz"
    np.savez(npz, X=X[pool_rows], y=y[pool_rows], X_test=X[test_rows], y_test=y[test_rows])
    assert (
        _bench(
            "--dataset", str(npz), *COMMON, "--strategies", STREAMED, "--out", str(tmp_path / "m")
        )
        == 0
    )
    streamed, in_memory = _picks(tmp_path / "s"), _picks(tmp_path / "m")
    assert len(streamed) == 4 * 2 * 3 and streamed.keys() == in_memory.keys()
    for key, (picks, acc) in in_memory.items():
        assert streamed[key][0] == picks, key
        assert streamed[key][1] == pytest.approx(acc, abs=1e-12), key


@pytest.mark.parametrize("kind", ["glob", "npy", "parquet"])
def test_a_glob_one_npy_file_and_parquet_are_pool_sources_too(pool, tmp_path, kind):
    folder, labels, X, _ = pool
    if kind == "glob":
        spec = str(folder / "part-*.npy")
    elif kind == "npy":
        spec = str(tmp_path / "all.npy")
        np.save(spec, X)
    else:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")

        spec = str(tmp_path / "all.parquet")
        pq.write_table(pa.table({f"f{j}": X[:, j] for j in range(D)}), spec, row_group_size=250)
    common = [*COMMON, "--seeds", "1", "--strategies", "margin", "--test-size", str(TEST)]
    assert (
        _bench(
            "--dataset", str(folder), "--labels", str(labels), *common, "--out", str(tmp_path / "a")
        )
        == 0
    )
    assert (
        _bench("--dataset", spec, "--labels", str(labels), *common, "--out", str(tmp_path / "b"))
        == 0
    )
    assert _picks(tmp_path / "a") == _picks(tmp_path / "b")


def test_a_killed_benchmark_resumes_with_the_same_picks(pool, tmp_path):
    folder, labels, _, _ = pool
    args = [
        "--dataset",
        str(folder),
        "--labels",
        str(labels),
        *COMMON,
        "--strategies",
        "ralif,random",
        "--test-size",
        str(TEST),
    ]
    assert _bench(*args, "--out", str(tmp_path / "full")) == 0
    assert _bench(*args, "--out", str(tmp_path / "part")) == 0
    db = sqlite3.connect(tmp_path / "part" / "results.sqlite")
    with db:
        db.execute("DELETE FROM results WHERE strategy='ralif' AND seed=1 AND round >= 1")
    db.close()
    assert _bench(*args, "--out", str(tmp_path / "part")) == 0
    assert _picks(tmp_path / "part") == _picks(tmp_path / "full")
    assert main(["report", str(tmp_path / "part"), "--quiet"]) == 0
    assert (tmp_path / "part" / "curves.png").is_file()


def test_pool_size_subsamples_the_pool_rows(pool, tmp_path):
    folder, labels, _, _ = pool
    args = ["--dataset", str(folder), "--labels", str(labels), *COMMON, "--seeds", "1"]
    args += ["--strategies", "random", "--test-size", str(TEST), "--pool-size", "150"]
    assert _bench(*args, "--out", str(tmp_path / "o")) == 0
    picked = np.concatenate([p for p, _ in _picks(tmp_path / "o").values()])
    assert picked.min() >= 0 and picked.max() < 150


def _write_labels(path, case, y):
    if case == "wrong length":
        np.save(path, y[:-1])
    elif case == "negative":
        bad = y.copy()
        bad[[3, 70]] = -1
        np.save(path, bad)
    elif case == "float":
        np.save(path, y.astype(np.float64))
    elif case == "pickled":
        # Written by this test for the loader to refuse: never read with pickles allowed.
        np.save(path, np.array([object()] * len(y), dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong length", "has 599 entries but the features have 600 rows"),
        ("negative", r"every row.*negative in rows \[3, 70\]"),
        ("float", "must hold integer class labels, got dtype float64"),
        ("pickled", "pickled Python objects"),
        ("missing", "labels file not found"),
    ],
)
def test_bad_labels_are_one_line_and_exit_2(pool, tmp_path, capsys, case, message):
    folder, _, _, y = pool
    path = tmp_path / "bad.npy"
    _write_labels(path, case, y)
    args = ["--dataset", str(folder), "--labels", str(path), *COMMON, "--test-size", str(TEST)]
    assert _bench(*args, "--strategies", "random", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert re.search(message, err), err


def test_a_strategy_that_cannot_stream_is_refused_before_anything_runs(pool, tmp_path, capsys):
    folder, labels, _, _ = pool
    args = ["--dataset", str(folder), "--labels", str(labels), *COMMON, "--test-size", str(TEST)]
    assert _bench(*args, "--strategies", "ralif,random_share", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "random_share cannot be streamed" in err and "streamable strategies: badge, bald" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("--labels", [], "give its labels with --labels"),
        ("--test-size", [], "--test-size N"),
        (None, ["--dim", "4"], "--dim"),
        (None, ["--scenario", "embeddings"], "only --scenario fixed"),
        (None, ["--max-candidates", "0"], "--max-candidates must be at least 1"),
    ],
)
def test_a_pool_source_needs_its_labels_and_a_test_size(
    pool, tmp_path, capsys, drop, extra, message
):
    folder, labels, _, _ = pool
    given = {"--labels": str(labels), "--test-size": str(TEST)}
    given.pop(drop, None)
    args = ["--dataset", str(folder), *[a for kv in given.items() for a in kv], *COMMON, *extra]
    assert _bench(*args, "--strategies", "random", "--out", str(tmp_path / "o")) == 2
    assert message in capsys.readouterr().err


def test_stream_flags_on_a_dataset_in_memory_are_refused(tmp_path, capsys):
    X, y = gaussian_blobs(n=200, d=4, seed=1)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    args = ["--dataset", str(tmp_path / "d.npz"), *COMMON, "--strategies", "random"]
    assert _bench(*args, "--dask", "local:1", "--out", str(tmp_path / "o")) == 2
    assert "--dask apply to a pool source" in capsys.readouterr().err


def _args(folder, labels, *extra):
    given = ["--dataset", str(folder), "--labels", str(labels), "--test-size", str(TEST)]
    return [*given, *COMMON, "--seeds", "1", "--strategies", "random,margin", *extra]


def _drop_last_rounds(out):
    db = sqlite3.connect(out / "results.sqlite")
    with db:
        db.execute("DELETE FROM results WHERE strategy='margin' AND round >= 1")
    db.close()


def _change(case, folder, labels, X, y):
    rng = np.random.default_rng(5)
    if case == "more rows":  # a shard added, and labels for it
        np.save(folder / "part-3.npy", X[:200])
        np.save(labels, np.concatenate([y, y[:200]]).astype(np.int64))
    elif case == "other labels":
        np.save(labels, rng.permutation(y).astype(np.int64))
    elif case == "other features":  # the same shape, other values
        np.save(folder / "part-1.npy", X[200:400] + np.float32(1))
    elif case == "more features":
        for k in range(3):
            part = X[k * 200 : (k + 1) * 200]
            np.save(folder / f"part-{k}.npy", np.hstack([part, part[:, :1]]))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("more rows", r"its rows \(600 then, 800 now\), labels, features of the test rows"),
        ("other labels", "its labels differ"),
        ("other features", "its features of the test rows differ"),
        ("more features", r"its features per row \(8 then, 9 now\), features of the test rows"),
    ],
)
def test_a_changed_pool_or_labels_is_refused_on_resume(pool, tmp_path, capsys, case, message):
    folder, labels, X, y = pool
    out = tmp_path / "o"
    assert _bench(*_args(folder, labels), "--out", str(out)) == 0
    _drop_last_rounds(out)
    before = _picks(out)
    _change(case, folder, labels, X, y)
    assert _bench(*_args(folder, labels), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds results of a benchmark on another pool" in err, err
    assert re.search(message, err), err
    assert _picks(out) == before  # nothing added


def test_a_benchmark_resumes_from_another_folder_with_relative_paths(pool, tmp_path, monkeypatch):
    folder, labels, _, _ = pool
    assert _bench(*_args(folder, labels), "--out", str(tmp_path / "full")) == 0
    monkeypatch.chdir(tmp_path)
    assert _bench(*_args("shards", "y.npy"), "--out", "part") == 0
    _drop_last_rounds(tmp_path / "part")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _bench(*_args("../shards/", "../y.npy"), "--out", "../part") == 0
    assert _picks(tmp_path / "part") == _picks(tmp_path / "full")


def test_a_results_folder_from_before_the_fingerprint_still_resumes(pool, tmp_path):
    folder, labels, _, _ = pool
    args = _args(folder, labels)
    assert _bench(*args, "--out", str(tmp_path / "full")) == 0
    assert _bench(*args, "--out", str(tmp_path / "old")) == 0
    db = sqlite3.connect(tmp_path / "old" / "results.sqlite")
    with db:  # the identity as it was stored before: the paths as given, no fingerprint
        (stored,) = db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        old = json.loads(stored)
        assert old.pop("pool")["rows"] == N
        old["dataset"], old["labels"] = str(folder), str(labels)
        db.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(old),))
        db.execute("DELETE FROM results WHERE strategy='margin' AND round >= 1")
    db.close()
    assert _bench(*args, "--out", str(tmp_path / "old")) == 0
    assert _picks(tmp_path / "old") == _picks(tmp_path / "full")


def test_a_device_that_cannot_be_used_is_refused_before_anything_runs(pool, tmp_path, capsys):
    folder, labels, _, _ = pool
    args = _args(folder, labels, "--device", "tpu")
    assert _bench(*args, "--out", str(tmp_path / "o")) == 2
    assert "device must be 'cpu' or 'cuda[:N]', got 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_finished_benchmark_does_not_reach_for_its_dask_cluster(pool, tmp_path, capsys):
    folder, labels, _, _ = pool
    out = str(tmp_path / "o")
    assert _bench(*_args(folder, labels), "--out", out) == 0
    # Nothing listens there: reaching for it would be an error.
    assert _bench(*_args(folder, labels, "--dask", "tcp://127.0.0.1:9"), "--out", out) == 0
    _drop_last_rounds(tmp_path / "o")
    assert _bench(*_args(folder, labels, "--dask", "tcp://127.0.0.1:9"), "--out", out) == 2
    assert "cannot reach the dask scheduler" in capsys.readouterr().err


def test_labels_beyond_int64_are_refused_not_wrapped(pool, tmp_path, capsys):
    folder, _, _, y = pool
    big = y.astype(np.uint64)
    big[[3, 70]] = np.uint64(2**63)
    np.save(tmp_path / "big.npy", big)
    args = _args(folder, tmp_path / "big.npy")
    assert _bench(*args, "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and r"below 2**63; larger in rows [3, 70]" in err, err
