"""``ralif select`` over pools it streams: shard folders and globs, --dask, --max-candidates."""

from __future__ import annotations

import numpy as np
import pytest

import ralif
from ralif.cli import main
from ralif.pools.sources import open_pool
from tests.conftest import require


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 6)).astype(np.float32)
    y = np.full(1500, -1)
    y[:40] = rng.integers(3, size=40)
    (tmp_path / "sh").mkdir()
    for k in range(3):
        np.save(tmp_path / "sh" / f"part-{k}.npy", X[k * 500 : (k + 1) * 500])
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path, X, y


def _picks(capsys) -> list[int]:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "index,rank,score"
    return [int(line.split(",")[0]) for line in lines[1:]]


def test_select_over_a_shard_glob_prints_the_in_memory_picks(files, capsys):
    tmp, X, y = files
    want = ralif.select(X, y, 6, l2=0.1, random_state=0)
    args = ["select", "--labels", str(tmp / "y.npy"), "--budget", "6", "--l2", "0.1"]
    assert main([*args, "--features", str(tmp / "sh" / "*.npy")]) == 0
    assert _picks(capsys) == want.tolist()
    assert main([*args, "--features", str(tmp / "sh")]) == 0
    assert _picks(capsys) == want.tolist()


def test_select_on_a_local_dask_cluster_prints_the_same_picks(files, capsys):
    require("distributed")
    tmp, X, y = files
    want = ralif.select(X, y, 6, "margin", l2=0.1, random_state=0)
    code = main(
        [
            "select",
            "--features",
            str(tmp / "sh"),
            "--labels",
            str(tmp / "y.npy"),
            "--budget",
            "6",
            "--strategy",
            "margin",
            "--l2",
            "0.1",
            "--dask",
            "local:1",
        ]
    )
    assert code == 0
    assert _picks(capsys) == want.tolist()


def test_select_says_when_the_candidate_cap_applied(files, capsys):
    tmp, _, _ = files
    code = main(
        [
            "select",
            "--features",
            str(tmp / "X.npy"),
            "--labels",
            str(tmp / "y.npy"),
            "--budget",
            "6",
            "--max-candidates",
            "10",
        ]
    )
    assert code == 0
    assert "read 10 candidates" in capsys.readouterr().err  # of the default 12


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--features", "{tmp}/none/*.npy"], "no files match the pool pattern"),
        (
            ["--features", "{tmp}/sh", "--strategy", "random_share"],
            "random_share cannot be streamed",
        ),
        (["--features", "{tmp}/sh", "--dask", "not a cluster"], "--dask must be local:N"),
        (["--features", "{tmp}/sh", "--max-candidates", "0"], "--max-candidates must be"),
        (["--features", "{tmp}/sh", "--device", "gpu"], "device must be 'cpu' or 'cuda"),
    ],
)
def test_bad_streaming_input_is_one_line_and_exit_2(files, capsys, extra, message):
    tmp, _, _ = files
    extra = [e.format(tmp=tmp) for e in extra]
    code = main(["select", "--labels", str(tmp / "y.npy"), "--budget", "3", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_labels_of_another_length_than_the_shards_are_refused(files, capsys):
    tmp, _, y = files
    np.save(tmp / "short.npy", y[:-5])
    code = main(
        [
            "select",
            "--features",
            str(tmp / "sh"),
            "--labels",
            str(tmp / "short.npy"),
            "--budget",
            "3",
        ]
    )
    assert code == 2
    assert "1495" in capsys.readouterr().err


def test_ralif_select_streams_a_pool_source(files):
    tmp, X, y = files
    picks = ralif.select(open_pool(tmp / "sh"), y, 6, l2=0.1, random_state=0)
    np.testing.assert_array_equal(picks, ralif.select(X, y, 6, l2=0.1, random_state=0))


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_a_single_file_over_the_memory_cap_is_streamed_and_says_so(
    files, capsys, monkeypatch, suffix
):
    tmp, X, y = files
    path = tmp / f"X{suffix}"
    if suffix == ".parquet":
        pa, pq = require("pyarrow"), require("pyarrow.parquet")
        pq.write_table(pa.table({f"f{j}": X[:, j] for j in range(X.shape[1])}), path)
    want = ralif.select(X, y, 6, l2=0.1, random_state=0)
    monkeypatch.setenv("RALIF_MAX_ARRAY_BYTES", str(X.nbytes // 2))
    args = ["select", "--labels", str(tmp / "y.npy"), "--budget", "6", "--l2", "0.1"]
    assert main([*args, "--features", str(path)]) == 0
    out = capsys.readouterr()
    assert "more than the cap" in out.err and "streaming it in blocks" in out.err
    assert out.err.count("\n") == 1
    assert [int(line.split(",")[0]) for line in out.out.strip().splitlines()[1:]] == want.tolist()
    assert main([*args, "--features", str(path), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_session_over_a_file_beyond_the_cap_streams_it(files, capsys, monkeypatch):
    tmp, X, _ = files
    monkeypatch.setenv("RALIF_MAX_ARRAY_BYTES", str(X.nbytes // 2))
    db = str(tmp / "s.db")
    init = ["session", "init", "--features", str(tmp / "X.npy"), "--classes", "a,b,c"]
    assert main([*init, "--db", db]) == 0
    assert main(["session", "next", "--db", db, "--budget", "4", "--l2", "0.1"]) == 0
    assert main(["session", "status", "--db", db]) == 0
    assert "waiting in batches 4" in capsys.readouterr().out
