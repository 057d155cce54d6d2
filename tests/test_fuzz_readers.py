"""Property-based fuzzing of every file reader: ``.npy`` and ``.npz`` headers and members,
CSV features and labels, label imports, Parquet files and folders, shard folders and the
session database on open.

The properties, for any input: the reader returns, or raises :class:`RalifInputError`
with a one-line message; never another exception, never a hang, never memory far beyond
the cap (``RALIF_MAX_ARRAY_BYTES``). A refused label import leaves every label as it was.
Where an oracle exists it is checked too: a shard folder that opens reads as its shards
concatenated in series order.

CI runs the small ``ci`` profile (tests/conftest.py); ``benchmarks/fuzz.py`` runs the same
properties with the ``fuzz`` profile (10,000 cases per target).
"""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import tempfile
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.io import feature_rows, load_features, load_labels
from ralif.pools.sources import open_pool
from tests.conftest import require

hypothesis = require("hypothesis")
# A warning from ralif is output a user did not ask for: it fails the case.
pytestmark = pytest.mark.filterwarnings("error::UserWarning:ralif")
st = require("hypothesis.strategies")
given = hypothesis.given

CAP = 1 << 20
"""The memory cap the readers run under (bytes)."""
PEAK_ALLOWED = 16 * CAP
"""Traced allocations one read may reach: a few blocks of the cap's size."""
CASE_SECONDS = 20
"""A case running longer than this is a hang."""


@pytest.fixture(autouse=True, scope="module")
def _cap_and_trace():
    old = os.environ.get("RALIF_MAX_ARRAY_BYTES")
    os.environ["RALIF_MAX_ARRAY_BYTES"] = str(CAP)
    tracemalloc.start()
    yield
    tracemalloc.stop()
    if old is None:
        del os.environ["RALIF_MAX_ARRAY_BYTES"]
    else:
        os.environ["RALIF_MAX_ARRAY_BYTES"] = old


@contextmanager
def _bounded():
    """Fail a case that hangs or allocates far beyond the cap (numpy's buffers are traced)."""

    def hang(signum, frame):
        raise AssertionError(f"a read ran longer than {CASE_SECONDS} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(CASE_SECONDS)
    tracemalloc.reset_peak()
    held = tracemalloc.get_traced_memory()[0]  # what the process held before the read
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    peak = tracemalloc.get_traced_memory()[1] - held
    assert peak <= PEAK_ALLOWED, f"a read allocated {peak} bytes under a cap of {CAP}"


def _refused_or_read(read):
    """Run ``read``: its result, or None when it refused the input in one line."""
    with _bounded():
        try:
            return read()
        except RalifInputError as exc:
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            return None


@contextmanager
def _folder():
    with tempfile.TemporaryDirectory(prefix="ralif-fuzz-") as tmp:
        yield Path(tmp)


# ----------------------------------------------------------------------- .npy bytes
DESCRS = [
    "<f8", "<f4", "<f2", ">f8", "|u1", "<i8", "<i4", "|b1", "|O", "<c16", "<U3", "|S2",
    "|V8", "<M8[s]", "[('a', '<f8')]", "[('a', '<f8'), ('b', '|O')]", "''", "'<f8'", "1",
]  # fmt: skip
SHAPES = st.lists(
    st.one_of(
        st.integers(0, 40),
        st.sampled_from([-1, -5, 2**31, 2**62, 2**64 + 1, 10**30]),
    ),
    max_size=3,
)


def _shape_text(shape: list[int]) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(map(str, shape)) + ")"


@st.composite
def npy_bytes(draw) -> bytes:
    """An ``.npy`` file: valid, with a hostile header, or any bytes."""
    kind = draw(st.sampled_from(["valid", "header", "raw", "mutated"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    if kind in ("valid", "mutated"):
        dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_]))
        shape = draw(st.lists(st.integers(0, 30), min_size=1, max_size=3))
        arr = np.asarray(
            draw(st.lists(st.floats(allow_nan=True), min_size=1, max_size=1))[0]
        ) * np.ones(shape)
        buf = io.BytesIO()
        with np.errstate(all="ignore"):
            np.save(buf, arr.astype(dtype))
        data = bytearray(buf.getvalue())
        if kind == "mutated" and data:
            for _ in range(draw(st.integers(1, 6))):
                at = draw(st.integers(0, len(data) - 1))
                data[at] = draw(st.integers(0, 255))
            data = data[: draw(st.integers(0, len(data)))]
        return bytes(data)
    descr = draw(st.sampled_from(DESCRS))
    fortran = draw(st.sampled_from(["False", "True", "0", "'x'"]))
    shape = _shape_text(draw(SHAPES))
    if draw(st.booleans()):
        shape = draw(st.sampled_from(["()", "(2, 'a')", "None", "[3, 2]", "(1.5, 2)", "x"]))
    text = "{" + f"'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, " + "}"
    if descr.startswith(("[", "'", "1")):
        text = "{" + f"'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, " + "}"
    header = text.encode("latin1")
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
    size_format = "<H" if version[0] == 1 else "<I"
    pad = (-(10 + len(header) + 1)) % 64
    header = header + b" " * pad + b"\n"
    declared = draw(st.one_of(st.just(len(header)), st.integers(0, 2**16 - 1)))
    head = b"\x93NUMPY" + bytes(version) + struct.pack(size_format, declared) + header
    return head + draw(st.binary(max_size=400))


def _read_as_every_reader(data: bytes, name: str) -> None:
    """Write ``data`` to a file called ``name`` and read it as features, labels and a pool."""
    with _folder() as d:
        p = d / name
        p.write_bytes(data)
        _refused_or_read(lambda: load_features(p))
        _refused_or_read(lambda: load_labels(p))
        _refused_or_read(lambda: feature_rows(p))
        if name.endswith(".npy"):
            _refused_or_read(lambda: _read_pool(p))


@given(data=npy_bytes())
def test_fuzz_npy_files(data):
    _read_as_every_reader(data, "X.npy")


def _read_pool(spec):
    pool = open_pool(spec)
    blocks = [b for _, b in pool.blocks(7)]
    if pool.n_rows:
        pool.take(np.array([pool.n_rows - 1, 0]))
    return np.concatenate(blocks) if blocks else np.empty((0, pool.n_features))


# ----------------------------------------------------------------------------- .npz
@st.composite
def npz_bytes(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    buf = io.BytesIO()
    names = ["X.npy", "y.npy", "features.npy", "labels.npy", "X", "../X.npy", "a/b.npy", "é.npy"]
    with zipfile.ZipFile(buf, "w") as z:
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.one_of(st.sampled_from(names), st.text(min_size=1, max_size=8)))
            compress = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            if draw(st.integers(0, 5)) == 0:
                # A bomb: a small archive of a large member of zeros, declared honestly.
                n = draw(st.integers(1, 4)) << 20
                member = npy_header_for((n // 8,), "<f8") + bytes(n)
                compress = zipfile.ZIP_DEFLATED
            else:
                member = draw(npy_bytes())
            z.writestr(zipfile.ZipInfo(name), member, compress_type=compress)
    data = bytearray(buf.getvalue())
    if data and draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data)


def npy_header_for(shape: tuple[int, ...], descr: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


@given(data=npz_bytes())
def test_fuzz_npz_files(data):
    _read_as_every_reader(data, "X.npz")


# ------------------------------------------------------------------------------ CSV
CSV_WORDS = ["nan", "inf", "-inf", "1e309", "\ufeff", "é", "\x00", "item", "label", "x", "9" * 30]
CSV_ALPHABET = st.sampled_from([*"0123456789,,,\n\n\r\"'-.+e ;\t", *CSV_WORDS])
CSV_TEXT = st.one_of(
    st.lists(CSV_ALPHABET, max_size=80).map("".join),
    st.text(max_size=80),
)


@given(text=CSV_TEXT, raw=st.booleans(), data=st.binary(max_size=80))
def test_fuzz_csv_features_and_labels(text, raw, data):
    with _folder() as d:
        p = d / "X.csv"
        if raw:
            p.write_bytes(data)
        else:
            p.write_text(text, encoding="utf-8")
        X = _refused_or_read(lambda: load_features(p))
        if X is not None:
            assert X.ndim == 2 and X.shape[0] >= 1
        y = _refused_or_read(lambda: load_labels(p))
        if y is not None:
            assert y.ndim == 1


@pytest.fixture(scope="module")
def session_db(tmp_path_factory):
    from ralif.session.store import create_session

    d = tmp_path_factory.mktemp("fuzz-session")
    np.save(d / "X.npy", np.zeros((6, 2)))
    s = create_session(d / "s.db", d / "X.npy", 6, ["a", "b", "c"])
    s.add_label(0, "a", who="me")
    s.add_label(3, "c", who="me")
    s.close()
    return d / "s.db"


def _labels_of(s) -> list:
    return s.labels_for_export()[1]


@given(
    text=st.one_of(
        CSV_TEXT, st.lists(CSV_ALPHABET, max_size=60).map(lambda t: "item,label\n" + "".join(t))
    )
)
def test_fuzz_label_imports_refused_without_changing_a_label(session_db, text):
    from ralif.session.store import open_session
    from ralif.session.workflow import import_labels_csv

    with _folder() as d:
        db = d / "s.db"
        db.write_bytes(session_db.read_bytes())
        (d / "l.csv").write_text(text, encoding="utf-8")
        with open_session(db) as s:
            before = _labels_of(s)
            n = _refused_or_read(lambda: import_labels_csv(s, d / "l.csv", "fuzz"))
            after = _labels_of(s)
        if n is None:
            assert after == before
        else:
            assert len(after) >= len(before)


# --------------------------------------------------------------------------- Parquet
def _parquet_column(draw, pa, n: int):
    kind = draw(
        st.sampled_from(
            ["f64", "f32", "i64", "i8", "bool", "str", "fixed", "fixed2", "list", "null", "dict"]
        )
    )
    values = draw(
        st.lists(st.one_of(st.none(), st.floats(allow_nan=True, width=32)), min_size=n, max_size=n)
    )
    if kind in ("f64", "f32"):
        return pa.array(values, type=pa.float64() if kind == "f64" else pa.float32())
    if kind in ("i64", "i8"):
        return pa.array([None if v is None or not np.isfinite(v) else int(v) % 100 for v in values],
                        type=pa.int64() if kind == "i64" else pa.int8())  # fmt: skip
    if kind == "bool":
        return pa.array([None if v is None else v > 0 for v in values], type=pa.bool_())
    if kind == "str":
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
    if kind in ("fixed", "fixed2"):
        width = 2 if kind == "fixed2" else 3
        return pa.array([None if v is None else [v] * width for v in values],
                        type=pa.list_(pa.float32(), width))  # fmt: skip
    if kind == "list":
        return pa.array([None if v is None else [v] * (i % 3) for i, v in enumerate(values)])
    if kind == "null":
        return pa.nulls(n)
    return pa.array(
        [str(int(v)) if v is not None and np.isfinite(v) else "a" for v in values]
    ).dictionary_encode()


@st.composite
def parquet_tables(draw):
    pa = require("pyarrow")
    n = draw(st.integers(0, 12))
    k = draw(st.integers(0, 4))
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "emb", "", "a"]), min_size=k, max_size=k))
    cols = [_parquet_column(draw, pa, n) for _ in range(k)]
    return pa.Table.from_arrays(cols, names=names) if k else pa.table({})


@given(tables=st.lists(parquet_tables(), min_size=1, max_size=3), garbage=st.binary(max_size=60),
       broken=st.integers(-1, 2), row_group=st.integers(1, 5))  # fmt: skip
def test_fuzz_parquet_files_and_folders(tables, garbage, broken, row_group):
    pq = require("pyarrow.parquet")
    with _folder() as d:
        (d / "pq").mkdir()
        for i, t in enumerate(tables):
            path = d / "pq" / f"part-{i}.parquet"
            if i == broken:
                path.write_bytes(garbage)
            else:
                pq.write_table(t, path, row_group_size=row_group)
        first = d / "pq" / "part-0.parquet"
        _refused_or_read(lambda: load_features(first))
        _refused_or_read(lambda: feature_rows(first))
        _refused_or_read(lambda: _read_pool(first))
        _refused_or_read(lambda: _read_pool(d / "pq"))


# ---------------------------------------------------------------------- shard folders
SHARD_NAMES = st.one_of(
    st.builds(lambda k, w: f"part-{k:0{w}d}.npy", st.integers(0, 12), st.integers(1, 3)),
    st.sampled_from(["a.npy", "b.npy", "part-x.npy", "part-1-2.npy", "part-01.npy"]),
)


@given(
    shards=st.lists(
        st.tuples(
            SHARD_NAMES,
            st.integers(0, 6),
            st.sampled_from([3, 3, 3, 2]),
            st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|O", "<c8"]),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda s: s[0],
    ),
    folder_or_glob=st.booleans(),
)
def test_fuzz_shard_folders_read_in_series_order(shards, folder_or_glob):
    with _folder() as d:
        (d / "sh").mkdir()
        arrays = {}
        for k, (name, rows, width, dtype) in enumerate(shards):
            if dtype == "|O":
                np.save(d / "sh" / name, np.array([[None] * width] * rows, dtype=object))
            else:
                a = (np.arange(rows * width).reshape(rows, width) + 100 * k).astype(dtype)
                np.save(d / "sh" / name, a)
                arrays[name] = a
        spec = d / "sh" if folder_or_glob else str(d / "sh" / "*.npy")
        got = _refused_or_read(lambda: _read_pool(spec))
        if got is None:
            return
        names = sorted(
            arrays, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
        )
        want = np.concatenate([arrays[n] for n in names])
        np.testing.assert_array_equal(got, want.astype(got.dtype))


# ------------------------------------------------------------------- session database
@given(
    cut=st.one_of(st.none(), st.integers(0, 100_000)),
    flips=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), max_size=12),
    raw=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_fuzz_session_database_on_open(session_db, cut, flips, raw):
    from ralif.session.store import open_session
    from ralif.session.workflow import status

    data = bytearray(session_db.read_bytes() if raw is None else raw)
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    if cut is not None:
        data = data[:cut]
    with _folder() as d:
        db = d / "s.db"
        db.write_bytes(bytes(data))

        def use():
            with open_session(db) as s:
                s.classes()
                status(s)
                s.labels_for_export()
                s.rounds()

        _refused_or_read(use)
