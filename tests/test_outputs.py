"""One rule for every place ralif writes (``--out``, ``--db``, a report's folder).

A read-only folder (no write bit in its mode) is refused by every command, also as
root, who could write anyway; ``-`` is standard output where a file is written, and
refused where a folder or a database is needed; a device is written as it is.
"""

from __future__ import annotations

import numpy as np
import pytest

from ralif.cli import main
from tests.conftest import char_device, gaussian_blobs, require


@pytest.fixture
def inputs(tmp_path):
    X, y = gaussian_blobs(n=200)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.where(np.arange(len(y)) < 30, y, -1))
    np.savez(tmp_path / "d.npz", X=X, y=y)
    db = str(tmp_path / "s.db")
    assert main(["session", "init", "--features", str(tmp_path / "X.npy"), "--classes", "a,b,c",
                 "--db", db]) == 0  # fmt: skip
    assert main(_bench(tmp_path, tmp_path / "results")) == 0
    return tmp_path


def _bench(tmp_path, out) -> list[str]:
    return [
        "bench", "--dataset", str(tmp_path / "d.npz"), "--strategies", "random", "--seeds", "1",
        "--rounds", "1", "--init", "20", "--budget", "5", "--quiet", "--out", str(out),
    ]  # fmt: skip


def _command(name: str, t, ro) -> list[str]:
    db = str(t / "s.db")
    select = ["select", "--features", str(t / "X.npy"), "--labels", str(t / "y.npy")]
    return {
        "select --out": [*select, "--budget", "3", "--l2", "0.1", "--out", str(ro / "p.csv")],
        "bench --out (a new folder in it)": _bench(t, ro / "results"),
        "bench --out (the folder itself)": _bench(t, ro),
        "session init --db": [
            "session", "init", "--features", str(t / "X.npy"), "--classes", "a,b",
            "--db", str(ro / "s.db"),
        ],
        "session backup --out": ["session", "backup", "--db", db, "--out", str(ro / "b.db")],
        "session export --out": ["session", "export", "--db", db, "--out", str(ro / "e.csv")],
        "extract --out": [
            "extract", "--images", str(t / "img"), "--out", str(ro / "f"),
            "--encoder", "tests.test_extract_cli:COUNTING", "--device", "cpu", "--quiet",
        ],
    }[name]  # fmt: skip


COMMANDS = [
    "select --out",
    "bench --out (a new folder in it)",
    "bench --out (the folder itself)",
    "session init --db",
    "session backup --out",
    "session export --out",
    "extract --out",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_output_into_a_read_only_folder_is_refused_in_one_line(inputs, name, capsys):
    if name == "extract --out":
        require("torch")
        folder = inputs / "img"
        folder.mkdir()
        np.save(folder / "img-0.npy", np.zeros((4, 12, 12), dtype=np.uint8))
    ro = inputs / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    capsys.readouterr()
    try:
        assert main(_command(name, inputs, ro)) == 2
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ralif: error: ") and "read-only" in err[0], err
    assert list(ro.iterdir()) == []


def test_report_into_a_read_only_results_folder_is_refused_in_one_line(inputs, capsys):
    results = inputs / "results"
    before = sorted(p.name for p in results.iterdir())
    results.chmod(0o555)
    capsys.readouterr()
    try:
        assert main(["report", str(results)]) == 2
    finally:
        results.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "read-only" in err[0], err
    assert sorted(p.name for p in results.iterdir()) == before


def test_backup_to_standard_output_writes_the_database_there(inputs, capfdbinary, monkeypatch):
    monkeypatch.chdir(inputs)
    assert main(["session", "backup", "--db", str(inputs / "s.db"), "--out", "-"]) == 0
    out = capfdbinary.readouterr().out
    assert out.startswith(b"SQLite format 3\x00") and len(out) > 4096
    assert not (inputs / "-").exists()


def test_backup_to_a_device_writes_it_and_an_existing_file_is_kept(inputs, capsys):
    device = char_device(inputs)
    assert main(["session", "backup", "--db", str(inputs / "s.db"), "--out", str(device)]) == 0
    (inputs / "b.db").write_text("keep me")
    assert (
        main(["session", "backup", "--db", str(inputs / "s.db"), "--out", str(inputs / "b.db")])
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert (inputs / "b.db").read_text() == "keep me"


def test_backup_file_is_readable_by_its_owner_only_and_opens(inputs):
    from ralif.session.store import open_session

    out = inputs / "b.db"
    assert main(["session", "backup", "--db", str(inputs / "s.db"), "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    with open_session(out) as s:
        assert s.classes() == ["a", "b", "c"]


@pytest.mark.parametrize("flag", [["session", "init", "--classes", "a,b"], ["bench"]])
def test_a_folder_or_database_output_refuses_dash(inputs, flag, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    if flag[0] == "bench":
        argv = _bench(inputs, "-")
    else:
        argv = [*flag, "--features", str(inputs / "X.npy"), "--db", "-"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'-'" in err[0], err
    assert not (inputs / "-").exists()
