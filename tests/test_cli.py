"""The command line through a subprocess, as a user runs it."""

from __future__ import annotations

import csv
import importlib.metadata
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import ralif
from tests.conftest import partial_labels, require

BUDGET = 7


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ralif.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, blobs):
    d = tmp_path_factory.mktemp("cli")
    X, y_true = blobs
    y = partial_labels(y_true, 40, seed=0)
    np.save(d / "X.npy", X.astype(np.float32))
    np.savez(d / "X.npz", X=X)
    np.savetxt(
        d / "X.csv",
        X,
        delimiter=",",
        header=",".join(f"f{i}" for i in range(X.shape[1])),
        comments="",
    )
    np.save(d / "y.npy", y)
    with open(d / "y.csv", "w") as fh:
        fh.write("label\n" + "\n".join("" if v < 0 else str(v) for v in y) + "\n")
    return d, X, y


def _read_picks(text: str) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))


@pytest.mark.parametrize("features", ["X.npy", "X.npz", "X.csv", "X.parquet"])
@pytest.mark.parametrize("labels", ["y.npy", "y.csv"])
def test_select_reads_every_format_and_prints_picks(files, features, labels):
    d, X, y = files
    if features == "X.parquet":
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")

        pq.write_table(pa.table({f"f{i}": X[:, i] for i in range(X.shape[1])}), d / "X.parquet")
    r = run_cli(
        "select",
        "--features",
        str(d / features),
        "--labels",
        str(d / labels),
        "--budget",
        str(BUDGET),
        "--l2",
        "0.1",
    )
    assert r.returncode == 0, r.stderr
    rows = _read_picks(r.stdout)
    assert [int(row["rank"]) for row in rows] == list(range(1, BUDGET + 1))
    idx = [int(row["index"]) for row in rows]
    assert len(set(idx)) == BUDGET and (y[idx] == -1).all()
    assert all(np.isfinite(float(row["score"])) for row in rows)


def test_select_matches_the_python_api_and_writes_out_file(files, tmp_path):
    import ralif

    d, X, y = files
    out = tmp_path / "sub" / "picks.csv"
    r = run_cli(
        "select",
        "--features",
        str(d / "X.npz"),
        "--labels",
        str(d / "y.npy"),
        "--budget",
        "5",
        "--seed",
        "3",
        "--l2",
        "0.1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    picks = [int(row["index"]) for row in _read_picks(out.read_text())]
    assert picks == ralif.select(X, y, 5, random_state=3, l2=0.1).tolist()


class _Payload:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _bad_inputs(d: pathlib.Path, X: np.ndarray, y: np.ndarray) -> dict:
    Xn = X.copy()
    Xn[[4, 9]] = np.nan
    np.save(d / "nan.npy", Xn)
    np.save(d / "short.npy", y[:-3])
    np.save(d / "frac.npy", np.where(np.arange(len(y)) == 5, 0.5, y))
    np.save(d / "neg.npy", np.where(np.arange(len(y)) == 6, -2, y))
    np.save(d / "all_labeled.npy", np.zeros(len(y), dtype=int))
    (d / "corrupt.npy").write_bytes(b"\x93NUMPY garbage that is not an array")
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated zip")
    (d / "X.txt").write_text("1,2\n")
    # A hostile file, written on purpose: if ralif ever unpickled it, PWNED would appear.
    np.save(d / "pickled.npy", np.array([_Payload(d / "PWNED")], dtype=object), allow_pickle=True)
    return {
        "nan": (["--features", "nan.npy", "--labels", "y.npy"], r"NaN in rows \[4, 9\]"),
        "length": (
            ["--features", "X.npy", "--labels", "short.npy"],
            "entries but the features have",
        ),
        "non-integer": (
            ["--features", "X.npy", "--labels", "frac.npy"],
            "non-integer values in rows",
        ),
        "negative": (
            ["--features", "X.npy", "--labels", "neg.npy"],
            "negative labels other than -1",
        ),
        "empty pool": (["--features", "X.npy", "--labels", "all_labeled.npy"], "pool is empty"),
        "corrupt npy": (
            ["--features", "corrupt.npy", "--labels", "y.npy"],
            "cannot read features file",
        ),
        "corrupt npz": (["--features", "corrupt.npz", "--labels", "y.npy"], "corrupt"),
        "missing": (["--features", "nope.npy", "--labels", "y.npy"], "features file not found"),
        "suffix": (
            ["--features", "X.txt", "--labels", "y.npy"],
            "unsupported features file type .txt",
        ),
        "pickled": (["--features", "pickled.npy", "--labels", "y.npy"], "pickled Python objects"),
        "budget zero": (
            ["--features", "X.npy", "--labels", "y.npy", "--budget", "0"],
            "budget must be a positive integer",
        ),
        "budget large": (
            ["--features", "X.npy", "--labels", "y.npy", "--budget", "100000"],
            "larger than the pool",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "nan",
        "length",
        "non-integer",
        "negative",
        "empty pool",
        "corrupt npy",
        "corrupt npz",
        "missing",
        "suffix",
        "pickled",
        "budget zero",
        "budget large",
    ],
)
def test_bad_input_exits_2_with_one_line(files, case):
    d, X, y = files
    args, message = _bad_inputs(d, X, y)[case]
    args = [str(d / a) if a.endswith((".npy", ".npz", ".txt")) else a for a in args]
    if "--budget" not in args:
        args += ["--budget", "3"]
    r = run_cli("select", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ralif: error: "), r.stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not (d / "PWNED").exists(), "a pickled payload ran"


def test_one_labeled_class_warns_and_still_picks(files, tmp_path):
    d, _, y = files
    y1 = np.where(y == 0, 0, -1)
    np.save(tmp_path / "y1.npy", y1)
    r = run_cli(
        "select",
        "--features",
        str(d / "X.npy"),
        "--labels",
        str(tmp_path / "y1.npy"),
        "--budget",
        "4",
    )
    assert r.returncode == 0, r.stderr
    assert "ralif: warning:" in r.stderr and "diversity" in r.stderr
    assert len(_read_picks(r.stdout)) == 4


def test_usage_errors_exit_2(files):
    d, _, _ = files
    assert run_cli("select", "--features", str(d / "X.npy")).returncode == 2
    r = run_cli(
        "select",
        "--features",
        str(d / "X.npy"),
        "--labels",
        str(d / "y.npy"),
        "--budget",
        "3",
        "--l2",
        "-1",
    )
    assert r.returncode == 2 and "non-negative" in r.stderr


def test_version_is_the_package_metadatas():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ralif {ralif.__version__}"
    assert ralif.__version__ == importlib.metadata.version("ralif")


def test_demo_prints_a_table_of_picks_with_scores():
    r = run_cli("demo", "--budget", "5", "--l2", "0.01")
    assert r.returncode == 0, r.stderr
    assert "E(z)" in r.stdout and "held-out accuracy" in r.stdout
    table = [
        ln for ln in r.stdout.splitlines() if ln.strip()[:1].isdigit() and len(ln.split()) >= 7
    ]
    assert len(table) == 5


def test_output_into_a_closed_pipe_ends_quietly(files):
    d, _, _ = files
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, as after `| head -0`
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "ralif.cli",
                "select",
                "--budget",
                str(BUDGET),
                "--features",
                str(d / "X.npy"),
                "--labels",
                str(d / "y.npy"),
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert r.stderr == ""
    assert r.returncode == 141


def test_select_exclude_never_picks_the_listed_items(tmp_path, capsys):
    from ralif.cli import main

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.full(200, -1)
    y[:20] = np.arange(20) % 2
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    held = list(range(20, 150))
    (tmp_path / "held.csv").write_text("item\n" + "".join(f"{i}\n" for i in held))
    argv = ["select", "--features", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]
    argv += ["--budget", "10", "--l2", "0.1", "--exclude", str(tmp_path / "held.csv")]
    for extra in ([], ["--stream"]):
        assert main([*argv, *extra]) == 0
        picks = [int(r.split(",")[0]) for r in capsys.readouterr().out.split()[1:]]
        assert len(picks) == 10 and not set(picks) & set(held)
        want = ralif.select(X, y, 10, random_state=0, exclude=held, l2=0.1)
        assert picks == want.tolist()
    (tmp_path / "bad.csv").write_text("item\n3\nx\n")
    assert main([*argv[:-1], str(tmp_path / "bad.csv")]) == 2
    assert "line 3: 'x' is not an item number" in capsys.readouterr().err


def test_select_reads_class_names_and_writes_predictions(tmp_path, capsys):
    from ralif.cli import main

    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(60, 3)) + 4 * k for k in range(3)])
    y = np.full(180, -1)
    known = rng.choice(180, 30, replace=False)
    y[known] = known // 60
    names = ["ant", "bee", "cat"]
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "names.csv").write_text(
        "label\n" + "".join((names[v] if v >= 0 else "") + "\n" for v in y)
    )
    base = ["select", "--features", str(tmp_path / "X.npy"), "--budget", "5", "--l2", "0.1"]
    assert main([*base, "--labels", str(tmp_path / "y.npy"), "--explain"]) == 0
    by_number = capsys.readouterr()
    assert "rank is the order of picking; score: predicted change" in by_number.err
    named = [*base, "--labels", str(tmp_path / "names.csv"), "--classes", "ant,bee,cat"]
    assert main([*named, "--predictions", "--quiet"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0] == "index,rank,score,predicted,probability" and out.err == ""
    assert [r.split(",")[:3] for r in lines[1:]] == [
        r.split(",") for r in by_number.out.strip().splitlines()[1:]
    ]
    for r in lines[1:]:
        index, _, _, predicted, p = r.split(",")
        assert predicted == names[int(index) // 60] and 0.34 < float(p) <= 1
    assert main([*base, "--labels", str(tmp_path / "names.csv")]) == 2
    assert "give their order (--classes a,b,c)" in capsys.readouterr().err
    assert main([*named[:-1], "ant,bee"]) == 2
    assert "'cat' in data row" in capsys.readouterr().err


def test_select_passes_ralifs_candidate_size_diversity_and_weighting(tmp_path, capsys):
    import ralif
    from ralif.cli import main

    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 4)) + np.repeat(np.eye(3, 4) * 3, 100, axis=0)
    y = np.full(300, -1)
    y[::15] = np.arange(300)[::15] // 100
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    base = ["select", "--features", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]
    base += ["--budget", "6", "--l2", "0.1", "--seed", "2", "--quiet"]
    for flags, params in [
        (["--n-candidates", "0.2", "--diversity", "none"], {"n_candidates": 0.2, "diversity": "none"}),
        (["--n-candidates", "30", "--weighting", "balanced"], {"n_candidates": 30, "weighting": "balanced"}),
    ]:  # fmt: skip
        assert main([*base, *flags]) == 0
        picks = [int(r.split(",")[0]) for r in capsys.readouterr().out.strip().splitlines()[1:]]
        expected = ralif.select(X, y, 6, l2=0.1, random_state=2, **params)
        assert picks == expected.tolist()
    with pytest.raises(SystemExit):
        main([*base, "--n-candidates", "many"])
    assert "must be a count or a share" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--diversity", "yes"])
    assert "invalid choice: 'yes'" in capsys.readouterr().err
    assert main([*base, "--n-candidates", "0"]) == 2
    assert "n_candidates must be" in capsys.readouterr().err
