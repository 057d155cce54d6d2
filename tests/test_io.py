"""Reading users' files and writing ``--out``: hostile paths, sizes and encodings."""

from __future__ import annotations

import csv
import io
import os
import stat
import threading

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.cli import main
from ralif.io import write_csv
from tests.conftest import partial_labels


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, blobs):
    d = tmp_path_factory.mktemp("inputs")
    X, y_true = blobs
    np.save(d / "X.npy", X)
    np.save(d / "y.npy", partial_labels(y_true, 40, seed=0))
    return d


def _select(inputs, out: str) -> int:
    return main(
        [
            "select",
            "--features",
            str(inputs / "X.npy"),
            "--labels",
            str(inputs / "y.npy"),
            "--budget",
            "3",
            "--l2",
            "0.1",
            "--quiet",
            "--out",
            out,
        ]
    )


def _picks(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# ----------------------------------------------------------------------- --out


def test_out_to_a_device_writes_through_it_and_leaves_it_a_device(inputs, tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the /dev/null device
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    assert _select(inputs, str(dev)) == 0
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left behind


def test_out_to_a_fifo_writes_into_the_pipe(inputs, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    assert _select(inputs, str(fifo)) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert len(_picks(got[0])) == 3


def test_out_dash_writes_to_standard_output(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _select(inputs, "-") == 0
    assert len(_picks(capsys.readouterr().out)) == 3
    assert not (tmp_path / "-").exists()


def test_out_through_a_symlink_writes_its_target(inputs, tmp_path):
    target = tmp_path / "real" / "picks.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert _select(inputs, str(link)) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(_picks(target.read_text())) == 3


def test_out_to_a_read_only_file_is_refused_and_left_alone(inputs, tmp_path, capsys):
    out = tmp_path / "picks.csv"
    out.write_text("keep me\n")
    out.chmod(0o444)
    assert _select(inputs, str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "read-only" in err[0], err
    assert out.read_text() == "keep me\n"


def test_out_into_a_read_only_folder_exits_2_with_one_line(inputs, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert _select(inputs, str(folder / "picks.csv")) == 2
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ralif: error: ") and "read-only" in err[0], err
    assert list(folder.iterdir()) == []


def test_a_new_out_file_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_csv(tmp_path / "a.csv", ["x"], [(1,)])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.csv").st_mode) == 0o640


def test_a_replaced_out_file_keeps_its_mode(tmp_path):
    out = tmp_path / "a.csv"
    out.write_text("old\n")
    out.chmod(0o604)
    write_csv(out, ["x"], [(1,)])
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o604
    assert out.read_text().splitlines() == ["x", "1"]


def test_out_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(RalifInputError, match="is a folder"):
        write_csv(tmp_path, ["x"], [(1,)])


def test_session_export_writes_through_a_symlink_to_its_target(tmp_path, blobs):
    from ralif.session import workflow as wf

    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    with wf.init_session(tmp_path / "s.db", tmp_path / "X.npy", ["a", "b", "c", "d"]) as s:
        s.import_labels([(0, int(y[0])), (5, int(y[5]))], who="t")
        target = tmp_path / "exports" / "labels.csv"
        target.parent.mkdir()
        link = tmp_path / "labels.csv"
        link.symlink_to(target)
        assert wf.export(s, link) == 2
    assert link.is_symlink()
    assert [int(r["item"]) for r in csv.DictReader(target.open())] == [0, 5]
