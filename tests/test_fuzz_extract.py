"""Hostile input files for ``ralif extract``: a result, or one line and exit 2, nothing else.

Image shards (random bytes, truncated or forged ``.npy`` headers, every kind of dtype,
huge declared shapes in tiny files, 0-row and 0-pixel arrays, NaN and inf, ``.npz``
archives with odd members, empty files), leftovers in the output folder, and weights
files are generated; the command must either succeed or refuse in a single line with
exit status 2, and never read more than ``RALIF_MAX_ARRAY_BYTES`` (set small here).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ralif.cli import main
from ralif.pools.sources import open_pool
from tests.conftest import require

hypothesis = require("hypothesis")
torch = require("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HERE = "tests.test_fuzz_extract"
CAP = 64 * 1024
# What one call may allocate beyond the cap, as tracemalloc sees it (Python objects and
# numpy arrays; torch's own allocator is not traced): argument parsing, paths, headers,
# the tiny encoder's features. A file read whole, or a forged length believed, would
# show far above it.
SLACK = 2 << 20


class Tiny(torch.nn.Module):
    """Two features of any image: its mean and its largest value, scaled by a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        flat = x.flatten(1)
        return torch.stack([flat.mean(1), flat.amax(1)], dim=1) * self.scale


def make_tiny() -> torch.nn.Module:
    return Tiny()


def make_tiny_half() -> torch.nn.Module:
    return Tiny().to(torch.float16)


DTYPES = [
    "u1",
    "u1",
    "<f4",
    "<f8",
    "<i2",
    ">u2",
    "<u8",
    "f2",
    "<f4",
    ">f4",
    "<f8",
    "c8",
    "?",
    "M8[s]",
    "U2",
    "S3",
    "V3",
    "O",
    [("a", "u1"), ("b", "<f4")],
]
SPECIAL = [0.0, -1.0, 255.0, 7e4, 1e39, 1e300, np.nan, np.inf, -np.inf]


@st.composite
def arrays(draw) -> np.ndarray:
    """A small array of any dtype and shape (0-d, 0 rows, 0 pixels), with odd values."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if draw(st.integers(0, 3)):  # mostly images; some beyond the cap (one, or a batch)
        shape = draw(
            st.sampled_from([(4, 6, 6), (3, 6, 6, 3), (2, 3, 5, 5), (3, 100, 100), (1, 150, 150)])
        )
    else:
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=5)))
    if dtype.hasobject:
        return np.empty(shape, dtype=dtype)
    if dtype.kind not in "uif":
        return np.zeros(shape, dtype=dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.random(shape) * 255
    flat = values.reshape(-1)
    if flat.size and dtype.kind == "f":
        for _ in range(draw(st.integers(0, 3))):
            flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(SPECIAL))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)  # written to be refused: never read back here
    return buf.getvalue()


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` as it is, or truncated, forged, flipped or extended."""
    how = draw(
        st.sampled_from(
            ["none", "none", "none", "truncate", "shape", "flip", "append", "length", "version"]
        )
    )
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "shape" and b"'shape': (" in data:
        start = data.index(b"'shape': (") + len(b"'shape': ")
        stop = data.index(b")", start) + 1
        forged = draw(
            st.sampled_from(
                [
                    *(b"(4000000000, 6, 6)", b"(-1, 6, 6)", b"(3,)", b"(2**40, 6, 6)"),
                    *(b"(%d, 6, 6)" % (1 << 62), b"(4, 6, 6, 1, 1)", b"()", b"(1, 0, 9)"),
                ]
            )
        )
        return data[:start] + forged + data[stop:]
    if how == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "append":
        return data + draw(st.binary(max_size=64))
    if how == "length" and len(data) >= 12:  # the header's length, of version 1, 2 or 3
        version = draw(st.sampled_from([1, 2, 3]))
        width = 2 if version == 1 else 4
        value = draw(st.sampled_from([0, 1, 2**16 - 1, 2**32 - 1, len(data), 10_001]))
        field = (value % (1 << (8 * width))).to_bytes(width, "little")
        return data[:6] + bytes([version, 0]) + field + data[8 + width :]
    if how == "version" and len(data) >= 8:
        return data[:6] + bytes([draw(st.integers(0, 4)), draw(st.integers(0, 1))]) + data[8:]
    return data


@st.composite
def npz_bytes(draw) -> bytes:
    """An ``.npz`` with odd members (names, dtypes, none at all, a non-array), maybe damaged."""
    buf = io.BytesIO()
    names = draw(
        st.lists(st.sampled_from(["X", "images", "x", "a/b", "", "y.npy", "arr_0"]), max_size=3)
    )
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if draw(st.booleans()) else 0) as z:
        for name in dict.fromkeys(names):
            if draw(st.booleans()):
                z.writestr(
                    name if name.endswith(".npy") else f"{name}.npy",
                    draw(mutated(npy_bytes(draw(arrays())))),
                )
            else:
                z.writestr(name or "junk", draw(st.binary(max_size=40)))
    data = buf.getvalue()
    if draw(st.booleans()):
        return data
    return data[: draw(st.integers(0, len(data)))]


def file_contents():
    npy = st.builds(npy_bytes, arrays()).flatmap(mutated)
    return st.one_of(
        npy,
        npy,
        npy,
        st.binary(max_size=256),
        st.just(b""),
        npz_bytes(),
        st.sampled_from([b"1,2,3\n4,5,6\n", b"\x93NUMPY", b"PK\x03\x04", b"\x80\x04N."]),
    )


GOOD = npy_bytes(np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6))


@st.composite
def leftovers(draw) -> dict[str, bytes]:
    """Files already in the output folder: none, or a manifest, shards, others."""
    out: dict[str, bytes] = {}
    for name in draw(
        st.lists(
            st.sampled_from(["manifest.json", "part-00000.npy", "part-00001.npy", "notes.npy"]),
            max_size=2,
            unique=True,
        )
    ):
        if name == "manifest.json":
            out[name] = draw(
                st.sampled_from(
                    [
                        b"",
                        b"[" * 50_000,
                        b'{"state": "failed"}',
                        b'{"images": [], "encoder": "", "shard_rows": 1, "rows": 0, '
                        b'"state": "failed"}',
                        b"\xff\xfe{}",
                    ]
                )
                | st.binary(max_size=64)
            )
        else:
            out[name] = draw(file_contents())
    return out


def _run(argv: list[str]) -> tuple[int, str, int]:
    """Exit status, standard error and peak traced memory of ``ralif`` with ``argv``."""
    err = io.StringIO()
    tracemalloc.start()
    try:
        with contextlib.redirect_stderr(err):
            code = main(argv)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return code, err.getvalue(), peak


def _check(code: int, err: str, peak: int, out: Path) -> None:
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.count("\n") == 1 and re.fullmatch(r"ralif: error: [^\n]+\n", err), err
    else:
        assert all(line.startswith("ralif: warning: ") for line in err.splitlines()), err
        assert open_pool(out).n_rows > 0
    assert peak < CAP + SLACK, f"{peak} bytes traced"


@pytest.fixture
def small_cap(monkeypatch, tmp_path):
    """The cap set small, after one good run: modules imported then are not counted."""
    monkeypatch.setenv("RALIF_MAX_ARRAY_BYTES", str(CAP))
    (tmp_path / "warm").mkdir()
    (tmp_path / "warm" / "img-0.npy").write_bytes(GOOD)
    argv = ["extract", "--images", str(tmp_path / "warm"), "--out", str(tmp_path / "warm-out")]
    with contextlib.redirect_stderr(io.StringIO()):
        assert main([*argv, "--encoder", f"{HERE}:make_tiny", "--device", "cpu", "--quiet"]) == 0


@given(
    layout=st.sampled_from(["file", "folder", "glob"]),
    suffix=st.sampled_from([".npy", ".npz", ".txt", ""]),
    files=st.lists(st.one_of(file_contents(), st.just(GOOD)), min_size=1, max_size=3),
    present=leftovers(),
    half=st.booleans(),
    batch=st.sampled_from([1, 3, 256]),
    shard_rows=st.sampled_from([1, 2, 50]),
)
def test_hostile_image_files_are_one_line_or_a_pool(
    small_cap, layout, suffix, files, present, half, batch, shard_rows
):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        if layout == "file":
            spec = root / "img" / f"images{suffix}"
            spec.write_bytes(files[0])
        else:
            for k, data in enumerate(files):
                (root / "img" / f"img-{k}.npy").write_bytes(data)
            spec = root / "img" / ("img-*.npy" if layout == "glob" else "")
        out = root / "out"
        if present:
            out.mkdir()
            for name, data in present.items():
                (out / name).write_bytes(data)
        encoder = f"{HERE}:make_tiny_half" if half else f"{HERE}:make_tiny"
        argv = ["extract", "--images", str(spec), "--out", str(out), "--encoder", encoder]
        argv += ["--device", "cpu", "--batch-size", str(batch), "--shard-rows", str(shard_rows)]
        code, err, peak = _run([*argv, "--quiet"])
        _check(code, err, peak, out)
        if code == 2 and not present:  # a failed run never blocks the next, correct one
            for k in range(3):
                (root / "img" / f"img-{k}.npy").unlink(missing_ok=True)
            for k in range(len(files)):
                (root / "img" / f"img-{k}.npy").write_bytes(GOOD)
            (root / "img" / f"images{suffix}").unlink(missing_ok=True)
            good = root / "img" / ("img-0.npy" if layout == "file" else "")
            argv[2] = str(good) if layout == "file" else str(spec)
            code, err, peak = _run([*argv, "--quiet"])
            assert code == 0, err
            assert open_pool(out).n_rows == 4 * (1 if layout == "file" else len(files))


def _state_dict_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(Tiny().state_dict(), buf)
    return buf.getvalue()


ODD_OBJECTS = [
    {"scale": torch.ones(1, dtype=torch.complex64)},
    {"scale": torch.ones(2)},
    {"state": {"scale": torch.ones(1)}, "epoch": 3},
    {"state": [1, 2]},
    {1: torch.ones(1)},
    {},
    [torch.ones(1)],
    "scale",
    torch.ones(1),
    {"scale": torch.ones(1, dtype=torch.bfloat16), "extra": torch.zeros(3)},
]


def _saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@given(
    data=st.one_of(
        st.just(_state_dict_bytes()).flatmap(mutated),
        st.sampled_from(ODD_OBJECTS).map(_saved),
        st.binary(max_size=256),
        st.just(b""),
        npz_bytes(),
    )
)
def test_hostile_weights_files_are_one_line_or_a_pool(small_cap, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        (root / "img" / "img-0.npy").write_bytes(GOOD)
        (root / "w.pt").write_bytes(data)
        argv = ["extract", "--images", str(root / "img"), "--out", str(root / "out")]
        argv += ["--encoder", f"{HERE}:make_tiny", "--weights", str(root / "w.pt")]
        code, err, peak = _run([*argv, "--device", "cpu", "--quiet"])
        _check(code, err, peak, root / "out")


def test_the_tiny_encoder_runs_on_the_good_shard(small_cap, tmp_path):
    """The fuzzed calls above can succeed: the encoder and the shard are fine."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "img-0.npy").write_bytes(GOOD)
    argv = ["extract", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "out")]
    code, err, peak = _run([*argv, "--encoder", f"{HERE}:make_tiny", "--quiet"])
    assert (code, err) == (0, "")
    got = open_pool(tmp_path / "out").take(np.arange(4))
    imgs = np.arange(144).reshape(4, 36) / 255.0
    np.testing.assert_allclose(got, np.stack([imgs.mean(1), imgs.max(1)], 1), rtol=1e-6)
    assert peak < CAP + SLACK


@pytest.mark.parametrize(
    "data",
    [
        b"\x93NUMPY\x02\x00" + (2**32 - 1).to_bytes(4, "little") + b"{}",
        b"\x93NUMPY\x03\x00" + (2**31).to_bytes(4, "little") + b"{'descr'",
        b"\x93NUMPY\x01\x00" + (9001).to_bytes(2, "little") + b"-" * 9000 + b"1",
        GOOD[:6] + b"\x02\x00" + GOOD[8:],  # version 2: the header's first bytes as its length
    ],
)
def test_a_forged_header_length_is_refused_before_it_is_read(small_cap, tmp_path, data):
    (tmp_path / "img.npy").write_bytes(data)
    argv = ["extract", "--images", str(tmp_path / "img.npy"), "--out", str(tmp_path / "out")]
    code, err, peak = _run([*argv, "--encoder", f"{HERE}:make_tiny", "--quiet"])
    assert code == 2 and err.count("\n") == 1, err
    assert peak < CAP + SLACK, f"{peak} bytes traced"


@pytest.mark.parametrize(
    "data",
    [
        b"X\x00\x00\x00\x01",  # a pickled string of 16 MiB, in a file of 5 bytes
        b"\x80\x02X\xff\xff\xff\xff",  # of 4 GiB
        b"\x80\x02B\xff\xff\xff\xff",  # bytes of 4 GiB
    ],
)
def test_a_forged_length_in_a_weights_file_is_not_allocated(small_cap, tmp_path, data):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "img-0.npy").write_bytes(GOOD)
    (tmp_path / "w.pt").write_bytes(data)
    argv = ["extract", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "out")]
    argv += ["--encoder", f"{HERE}:make_tiny", "--weights", str(tmp_path / "w.pt")]
    code, err, peak = _run([*argv, "--quiet"])
    assert code == 2 and err.count("\n") == 1, err
    assert peak < CAP + SLACK, f"{peak} bytes traced"


def test_a_weights_file_larger_than_the_cap_is_refused(small_cap, tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "img-0.npy").write_bytes(GOOD)
    torch.save({"scale": torch.ones(1), "big": torch.zeros(CAP)}, tmp_path / "w.pt")
    argv = ["extract", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "out")]
    argv += ["--encoder", f"{HERE}:make_tiny", "--weights", str(tmp_path / "w.pt")]
    code, err, peak = _run([*argv, "--quiet"])
    assert code == 2 and re.search(r"refusing to read weights .*w\.pt: .* more than", err), err
    assert peak < CAP + SLACK, f"{peak} bytes traced"
