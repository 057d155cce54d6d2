"""Reading users' files and writing ``--out``: hostile paths, sizes and encodings."""

from __future__ import annotations

import csv
import io
import os
import stat
import struct
import subprocess
import sys
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from ralif import RalifInputError
from ralif.cli import main
from ralif.io import MAX_ARRAY_BYTES_ENV, feature_rows, load_features, load_labels, write_csv
from tests.conftest import char_device, missing, partial_labels, regular_files, require


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
    dev = char_device(tmp_path)
    before = regular_files(dev.parent)
    assert _select(inputs, str(dev)) == 0
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert regular_files(dev.parent) == before  # no temporary file left behind


def test_out_to_a_fifo_writes_into_the_pipe(inputs, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    assert _select(inputs, str(fifo)) == 0
    reader.join(timeout=60)  # a guard against a hang, not a timing
    assert not reader.is_alive(), "the reader of the fifo got no end of file within 60 s"
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


# ------------------------------------------------------------- decompression bombs


def _npy_header(path, shape, descr="<f8", body=b""):
    """A .npy file whose header announces ``shape`` but holds only ``body``."""
    with open(path, "wb") as fh:
        npy_format.write_array_header_1_0(
            fh, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        fh.write(body)


def _zero_bomb(path, rows, cols=64, **more):
    """A compressed .npz whose float32 ``X`` expands from ~1 MB to rows*cols*4 bytes."""
    chunk = bytes(1 << 20)
    total = rows * cols * 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in more.items():
            buf = io.BytesIO()
            np.save(buf, arr)
            zf.writestr(name + ".npy", buf.getvalue())
        with zf.open("X.npy", "w", force_zip64=True) as fh:
            npy_format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)}
            )
            for start in range(0, total, len(chunk)):
                fh.write(chunk[: min(len(chunk), total - start)])


def test_npy_header_claiming_terabytes_is_refused_without_allocating(tmp_path):
    _npy_header(tmp_path / "huge.npy", (2**40, 8), body=bytes(64))
    with pytest.raises(RalifInputError, match=r"needs 64\.0 TiB, more than the memory available"):
        load_features(tmp_path / "huge.npy")


def test_npy_features_whose_rows_cannot_match_the_labels_exit_2_from_the_header(
    inputs, tmp_path, capsys
):
    _npy_header(tmp_path / "X.npy", (2**40, 8), body=bytes(64))
    features, labels = str(tmp_path / "X.npy"), str(inputs / "y.npy")
    rc = main(["select", "--features", features, "--labels", labels, "--budget", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "has 600 entries but the features have 1099511627776 rows" in err[0], err


def test_npz_bomb_not_matching_the_labels_is_refused_before_it_expands(inputs, tmp_path, capsys):
    _zero_bomb(tmp_path / "bomb.npz", rows=1 << 20)  # 256 MiB once expanded
    assert (tmp_path / "bomb.npz").stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        features, labels = str(tmp_path / "bomb.npz"), str(inputs / "y.npy")
        rc = main(["select", "--features", features, "--labels", labels, "--budget", "3"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 2
    assert "the features have 1048576 rows" in capsys.readouterr().err
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_arrays_over_the_configured_cap_are_refused(inputs, monkeypatch):
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, "10000")  # X.npy needs 600 x 8 x 8 = 38400 bytes
    with pytest.raises(RalifInputError, match=r"more than the RALIF_MAX_ARRAY_BYTES limit"):
        load_features(inputs / "X.npy")
    assert len(load_labels(inputs / "y.npy")) == 600  # 4800 bytes: under the cap


def test_dataset_npz_over_the_cap_is_refused(tmp_path, blobs, monkeypatch):
    from ralif.data import load_dataset, load_images

    X, y = blobs
    np.savez_compressed(tmp_path / "d.npz", X=X, y=y)
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, "10000")
    with pytest.raises(RalifInputError, match=r"array 'X' of .*d\.npz.*RALIF_MAX_ARRAY_BYTES"):
        load_dataset(str(tmp_path / "d.npz"))
    with pytest.raises(RalifInputError, match="RALIF_MAX_ARRAY_BYTES"):
        load_images(str(tmp_path / "d.npz"))


def test_parquet_over_the_cap_is_refused_from_its_metadata(tmp_path, blobs, monkeypatch):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")

    X, _ = blobs
    pq.write_table(pa.table({f"f{i}": X[:, i] for i in range(X.shape[1])}), tmp_path / "X.parquet")
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, "10000")
    with pytest.raises(RalifInputError, match=r"shape \(600, 8\).*RALIF_MAX_ARRAY_BYTES"):
        load_features(tmp_path / "X.parquet")


def test_npz_member_declaring_another_size_than_its_header_is_refused(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros((2000, 8)))
    with zipfile.ZipFile(tmp_path / "f.npz", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("X.npy", buf.getvalue())
    raw = bytearray((tmp_path / "f.npz").read_bytes())
    central = raw.rindex(b"PK\x01\x02")  # the central directory entry zipfile trusts
    raw[central + 24 : central + 28] = struct.pack("<I", len(buf.getvalue()) + 10**6)
    (tmp_path / "f.npz").write_bytes(bytes(raw))
    with pytest.raises(RalifInputError, match=r"the archive declares 1\.1 MiB"):
        load_features(tmp_path / "f.npz")


def test_features_from_a_pipe_are_refused_not_read_forever(tmp_path):
    os.mkfifo(tmp_path / "X.csv")  # no writer: reading it would block forever
    np.save(tmp_path / "y.npy", np.full(5, -1))
    features, labels = str(tmp_path / "X.csv"), str(tmp_path / "y.npy")
    cmd = [sys.executable, "-m", "ralif.cli", "select", "--budget", "1"]
    r = subprocess.run(
        [*cmd, "--features", features, "--labels", labels],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr


def test_dataset_npz_whose_labels_cannot_match_is_refused_before_x_expands(tmp_path):
    from ralif.data import load_dataset

    _zero_bomb(tmp_path / "d.npz", rows=1 << 20, y=np.zeros(10, dtype=np.int64))
    tracemalloc.start()
    try:
        with pytest.raises(RalifInputError, match="y has 10 entries but X has 1048576 rows"):
            load_dataset(str(tmp_path / "d.npz"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


# --------------------------------------------------------------------------- CSV

BOM = "\ufeff"


@pytest.fixture
def session(tmp_path, blobs):
    from ralif.session import workflow as wf

    np.save(tmp_path / "X.npy", blobs[0])
    with wf.init_session(tmp_path / "s.db", tmp_path / "X.npy", ["a", "b", "c", "d"]) as s:
        yield s


def test_labels_csv_with_a_byte_order_mark_is_imported(session, tmp_path):
    from ralif.session import workflow as wf

    (tmp_path / "l.csv").write_text(BOM + "item,label\n3,b\n7,d\n", encoding="utf-8")
    assert wf.import_labels_csv(session, tmp_path / "l.csv", who="t") == 2
    assert session.current_labels() == {3: (1, False), 7: (3, False)}


def test_an_empty_label_cell_is_an_error_naming_its_line_and_imports_nothing(session, tmp_path):
    from ralif.session import workflow as wf

    session.import_labels([(4, "a")], who="t")
    (tmp_path / "l.csv").write_text("item,label\n3,b\n4,\n", encoding="utf-8")
    with pytest.raises(RalifInputError, match=r"line 3: item 4 has an empty label"):
        wf.import_labels_csv(session, tmp_path / "l.csv", who="t")
    assert session.current_labels() == {4: (0, False)}  # item 4 keeps its label


def test_an_item_listed_twice_is_an_error_naming_its_lines(session, tmp_path):
    from ralif.session import workflow as wf

    (tmp_path / "l.csv").write_text("item,label\n3,b\n5,a\n3,c\n", encoding="utf-8")
    with pytest.raises(RalifInputError, match=r"item 3 on lines 2, 4"):
        wf.import_labels_csv(session, tmp_path / "l.csv", who="t")
    assert session.current_labels() == {}


def test_import_labels_given_a_folder_exits_2_with_one_line(session, tmp_path, capsys):
    (tmp_path / "folder.csv").mkdir()
    rc = main(["session", "import-labels", str(tmp_path / "folder.csv"), "--db", str(session.path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is a folder" in err[0], err


def test_features_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    (tmp_path / "X.csv").write_text(BOM + "1.5,2\n3,4\n", encoding="utf-8")
    np.testing.assert_array_equal(load_features(tmp_path / "X.csv"), [[1.5, 2], [3, 4]])


def test_labels_csv_with_a_byte_order_mark_keeps_its_first_label(tmp_path):
    (tmp_path / "y.csv").write_text(BOM + "2\n\n0\n", encoding="utf-8")
    np.testing.assert_array_equal(load_labels(tmp_path / "y.csv"), [2, np.nan, 0])


# ------------------------------------------------------------------ huge values


def test_features_too_large_to_square_exit_2_naming_the_value(inputs, tmp_path, capsys):
    X = np.load(inputs / "X.npy")
    X[7, 2] = 1e200  # finite, but its square is not
    np.save(tmp_path / "X.npy", X)
    rc = main(["select", "--features", str(tmp_path / "X.npy"), "--labels", str(inputs / "y.npy"),
               "--budget", "3", "--strategy", "margin"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "too large to compute with (e.g. 1e+200 in row 7, column 2)" in err[0]


def test_a_numerical_failure_in_a_strategy_exits_2_with_one_line(inputs, capsys, monkeypatch):
    from ralif.strategies.ralif import RALIF

    def fail(*args, **kwargs):
        raise np.linalg.LinAlgError("7-th leading minor of the array is not positive definite")

    monkeypatch.setattr(RALIF, "select", fail)
    rc = main(["select", "--features", str(inputs / "X.npy"), "--labels", str(inputs / "y.npy"),
               "--budget", "3"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "failed numerically" in err[0], err


def test_downloaded_dataset_files_follow_the_umask(tmp_path, monkeypatch):
    from ralif.data import fashion_mnist

    monkeypatch.setattr(
        fashion_mnist.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(url.encode())
    )
    old = os.umask(0o022)
    try:
        fashion_mnist.download(tmp_path)
    finally:
        os.umask(old)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 4
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o644}


def test_a_failed_download_is_not_reported_as_a_write_error(tmp_path, monkeypatch):
    from ralif.data import fashion_mnist

    class Dropped(io.BytesIO):
        def read(self, *args):
            raise TimeoutError("the read operation timed out")

    monkeypatch.setattr(fashion_mnist.urllib.request, "urlopen", lambda url, timeout: Dropped())
    with pytest.raises(TimeoutError):
        fashion_mnist.download(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_idx_file_announcing_more_than_the_cap_is_refused_before_decompressing(
    tmp_path, monkeypatch
):
    import gzip

    from ralif.data.fashion_mnist import read_idx

    with gzip.open(tmp_path / "images.gz", "wb") as fh:
        fh.write(struct.pack(">HBBIII", 0, 8, 3, 1000, 28, 28) + bytes(1000 * 28 * 28))
    monkeypatch.setenv(MAX_ARRAY_BYTES_ENV, "10000")
    with pytest.raises(RalifInputError, match=r"\(1000, 28, 28\) \(784000 bytes\), more than"):
        read_idx(tmp_path / "images.gz")
    monkeypatch.delenv(MAX_ARRAY_BYTES_ENV)
    assert read_idx(tmp_path / "images.gz").shape == (1000, 28, 28)


def test_r_bzip2_entry_expanding_past_its_size_is_refused_without_expanding(tmp_path):
    import bz2

    from ralif.data.rdata_files import _lazy_object

    chunk = struct.pack(">I", 10) + b"2" + bz2.compress(bytes(64 << 20))  # 64 MiB of zeros
    (tmp_path / "x.rdb").write_bytes(chunk)
    tracemalloc.start()
    try:
        with pytest.raises(RalifInputError, match="header says 10"):
            _lazy_object(tmp_path / "x.rdb", 0, len(chunk), "x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_a_file_replaced_by_root_keeps_its_owner(tmp_path):
    out = tmp_path / "a.csv"
    out.write_text("old\n")
    try:
        os.chown(out, 12345, 12346)
    except PermissionError:
        missing("giving a file to another user needs root")
    write_csv(out, ["x"], [(1,)])
    assert (out.stat().st_uid, out.stat().st_gid) == (12345, 12346)


def test_an_unwritable_out_is_refused_before_selecting(inputs, tmp_path, monkeypatch, capsys):
    from ralif.strategies.ralif import RALIF

    calls = []
    monkeypatch.setattr(RALIF, "select", lambda self, *a: calls.append(a))
    out = tmp_path / "picks.csv"
    out.write_text("keep me\n")
    out.chmod(0o444)
    assert _select(inputs, str(out)) == 2
    assert calls == [] and "read-only" in capsys.readouterr().err


def test_a_parquet_list_column_reads_the_same_in_memory_as_streamed(tmp_path):
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    pq.write_table(
        pa.table({"emb": pa.array(list(X), type=pa.list_(pa.float32(), 3))}), tmp_path / "X.parquet"
    )
    np.testing.assert_array_equal(load_features(tmp_path / "X.parquet"), X)
    assert feature_rows(tmp_path / "X.parquet") == 4


def _npy_with_shape(path, shape_text: bytes) -> None:
    import io as _io

    buf = _io.BytesIO()
    np.save(buf, np.zeros((5, 3)))
    path.write_bytes(buf.getvalue().replace(b"(5, 3)", shape_text))


@pytest.mark.parametrize("shape", [b"(-5, 3)", b"(5, -3)"])
def test_a_negative_size_in_an_npy_header_is_called_corrupt_everywhere(tmp_path, shape):
    from ralif.pools.sources import open_pool

    _npy_with_shape(tmp_path / "X.npy", shape)
    with zipfile.ZipFile(tmp_path / "X.npz", "w") as z:
        z.write(tmp_path / "X.npy", "X.npy")
    for read in (
        lambda: load_features(tmp_path / "X.npy"),
        lambda: feature_rows(tmp_path / "X.npy"),
        lambda: load_features(tmp_path / "X.npz"),
        lambda: open_pool(tmp_path / "X.npy"),
        lambda: load_labels(tmp_path / "X.npy"),
    ):
        with pytest.raises(RalifInputError, match=r"\(corrupt\): its header gives the shape"):
            read()


def test_a_labels_csv_with_a_header_and_no_rows_says_so(tmp_path):
    from ralif.session.store import create_session
    from ralif.session.workflow import import_labels_csv, read_manifest

    (tmp_path / "h.csv").write_text("item,label\n")
    (tmp_path / "e.csv").write_text("")
    (tmp_path / "o.csv").write_text("item,lab\n1,a\n")
    np.save(tmp_path / "X.npy", np.zeros((4, 2)))
    s = create_session(tmp_path / "s.db", tmp_path / "X.npy", 4, ["a", "b"])
    try:
        with pytest.raises(RalifInputError, match="has a header but no labels below it"):
            import_labels_csv(s, tmp_path / "h.csv", "me")
        with pytest.raises(RalifInputError, match="is empty: it needs a header line naming"):
            import_labels_csv(s, tmp_path / "e.csv", "me")
        with pytest.raises(RalifInputError, match=r"has no column 'label' in its header"):
            import_labels_csv(s, tmp_path / "o.csv", "me")
        with pytest.raises(RalifInputError, match=r"no column 'path' or 'text'"):
            read_manifest(tmp_path / "o.csv", 1)
    finally:
        s.close()


def test_only_a_pickle_is_called_pickled(tmp_path):
    import pickle

    (tmp_path / "text.npz").write_text("a,b\n1,2\n")
    (tmp_path / "zeros.npz").write_bytes(b"\x00\x00\x00")
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"X": [1, 2]}, protocol=4))
    for name in ("text.npz", "zeros.npz"):
        with pytest.raises(RalifInputError, match=r"is not a \.npy or \.npz file") as e:
            load_features(tmp_path / name)
        assert "pickled" not in str(e.value)
    with pytest.raises(RalifInputError, match="pickled Python objects"):
        load_features(tmp_path / "pickle.npz")
