"""``ralif extract``: an encoder named on the command line over image shards."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

from ralif.cli import main
from ralif.pools.sources import open_pool
from tests.conftest import require

torch = require("torch")

from ralif.models.encoders import SmallCNN  # noqa: E402

HERE = "tests.test_extract_cli"
NOT_A_MODULE = 42


class Counting(torch.nn.Module):
    """A fixed linear map of 12x12 grey images that counts its batches."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(144, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.linspace(-1, 1, 432).reshape(3, 144))
            self.linear.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
        self.batches = 0

    def forward(self, x):
        self.batches += 1
        return self.linear(x.flatten(1))


COUNTING = Counting()


def make_counting() -> torch.nn.Module:
    return Counting()


def broken() -> torch.nn.Module:
    raise OSError("no such checkpoint server")


def _images(folder, n_shards=3, per=20, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(n_shards):
        np.save(folder / f"img-{k}.npy", rng.integers(0, 256, size=(per, 12, 12), dtype=np.uint8))
    return np.concatenate([np.load(folder / f"img-{k}.npy") for k in range(n_shards)])


def _extract(tmp_path, *extra) -> int:
    argv = ["extract", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "f")]
    return main([*argv, "--batch-size", "8", "--shard-rows", "25", "--device", "cpu", *extra])


def _as_input(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs.astype(np.float32)[:, None] / 255.0)


def test_a_named_encoder_with_weights_gives_its_feature_vectors(tmp_path, capsys):
    imgs = _images(tmp_path / "img")
    torch.manual_seed(3)
    cnn = SmallCNN(in_channels=1, n_classes=5).eval()
    with torch.no_grad():  # running statistics of a trained net, not the initial 0 and 1
        for m in cnn.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    torch.save(cnn.state_dict(), tmp_path / "w.pt")
    assert _extract(tmp_path, "--encoder", "cnn", "--weights", str(tmp_path / "w.pt")) == 0
    with torch.no_grad():
        want = cnn.features(_as_input(imgs)).numpy()
    pool = open_pool(tmp_path / "f")
    assert [s.stop - s.start for s in pool.shards] == [25, 25, 10]
    np.testing.assert_allclose(pool.take(np.arange(60)), want, rtol=1e-5, atol=1e-6)
    assert "wrote 60 feature rows of 128 dimensions in 3 shards" in capsys.readouterr().err


@pytest.mark.parametrize("attr", ["COUNTING", "make_counting", "Counting"])
def test_a_module_or_a_callable_returning_one_is_the_encoder(tmp_path, attr):
    imgs = _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:{attr}", "--quiet") == 0
    flat = imgs.reshape(60, 144).astype(np.float64) / 255.0
    weight = np.linspace(-1, 1, 432).reshape(3, 144)
    want = flat @ weight.T + np.array([0.5, -0.5, 0.0])
    np.testing.assert_allclose(open_pool(tmp_path / "f").take(np.arange(60)), want, rtol=1e-5)


def test_a_rerun_resumes_without_redoing_finished_shards(tmp_path, capsys):
    _images(tmp_path / "img")
    spec = ["--encoder", f"{HERE}:COUNTING"]
    COUNTING.batches = 0
    assert _extract(tmp_path, *spec, "--quiet") == 0
    assert COUNTING.batches == 4 + 4 + 2  # shards of 25, 25, 10 rows in batches of 8
    first = open_pool(tmp_path / "f").take(np.arange(60))
    (tmp_path / "f" / "part-00001.npy").unlink()  # as if killed while writing shard 1
    COUNTING.batches = 0
    assert _extract(tmp_path, *spec) == 0
    assert COUNTING.batches == 4
    np.testing.assert_array_equal(open_pool(tmp_path / "f").take(np.arange(60)), first)
    err = capsys.readouterr().err
    assert "features" in err and "60/60" in err  # the progress bar, from 35 done to 60


def test_quiet_prints_nothing(tmp_path, capsys):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:COUNTING", "--quiet") == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vgg", "unknown encoder 'vgg': use cnn, resnet18, or package.module:attr"),
        ("no_such_package_xyz:Net", "cannot import no_such_package_xyz"),
        (f"{HERE}:Missing", f"{HERE} has no attribute Missing"),
        (f"{HERE}:NOT_A_MODULE", "is a int, not a torch.nn.Module"),
        (f"{HERE}:broken", r"calling broken\(\) failed: no such checkpoint server"),
        (f"{HERE}:_images", r"calling _images\(\) failed"),
    ],
)
def test_a_bad_encoder_spec_is_one_line_and_exit_2(tmp_path, capsys, spec, message):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", spec) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "f").exists()


class _Opaque:
    pass


def _write_weights(path, case):
    torch.manual_seed(0)
    if case == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip" + bytes(range(256)))
    elif case == "truncated":
        torch.save(SmallCNN(1, 5).state_dict(), path)
        path.write_bytes(path.read_bytes()[:4000])
    elif case == "pickled object":
        # Written here for the loader to refuse; the test never reads it back.
        torch.save({"state": SmallCNN(1, 5).state_dict(), "extra": _Opaque()}, path)
    elif case == "other keys":
        torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    elif case == "other shapes":
        torch.save(SmallCNN(3, 5).state_dict(), path)  # colour, the images are grey
    elif case == "not a state dict":
        torch.save([torch.zeros(2)], path)
    elif case == "odd protocol":  # torch warns of the protocol before it fails
        path.write_bytes(b"\x80\x9a")
    elif case == "damaged pickle":
        path.write_bytes(b"q\x00")  # a pickle opcode reading a memo that is not there
    elif case == "legacy, truncated":
        torch.save(SmallCNN(1, 5).state_dict(), path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:3000])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "weights file not found"),
        ("folder", "weights path is not a regular file"),
        ("corrupt", r"cannot read weights .* \(corrupt or not torch.save\)"),
        ("truncated", r"cannot read weights .* \(corrupt or not torch.save\)"),
        ("pickled object", "refusing to read weights .*Python objects besides tensors"),
        ("other keys", "do not fit the encoder cnn: missing keys body.0.bias, body.0.weight"),
        ("other shapes", r"shape of body.0.weight is \(32, 3, 3, 3\) in the file but \(32, 1,"),
        ("not a state dict", "must hold a state dict"),
        ("damaged pickle", r"cannot read weights .* \(corrupt or not torch.save\): IndexError"),
        ("legacy, truncated", r"cannot read weights .* \(corrupt or not torch.save\)"),
        ("odd protocol", r"^ralif: error: cannot read weights .* \(corrupt or not torch.save\)"),
    ],
)
def test_bad_weights_are_one_line_and_exit_2(tmp_path, capsys, case, message):
    _images(tmp_path / "img")
    path = tmp_path / "w.pt"
    if case == "folder":
        path.mkdir()
    else:
        _write_weights(path, case)
    assert _extract(tmp_path, "--encoder", "cnn", "--weights", str(path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def test_an_encoder_that_fails_on_the_images_is_one_line(tmp_path, capsys):
    _images(tmp_path / "img")
    spec = f"{__name__}:make_small_linear"
    assert _extract(tmp_path, "--encoder", spec, "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed on the images: mat1 and mat2 shapes" in err, err


def make_small_linear() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 2))  # not 144 inputs


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    _images(tmp_path / "img")
    (tmp_path / "f").write_text("x")
    assert _extract(tmp_path, "--encoder", f"{HERE}:COUNTING") == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def make_random() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 3))  # drawn at random


def test_an_encoder_with_random_initial_weights_is_seeded_and_resumes(tmp_path):
    imgs = _images(tmp_path / "img")
    spec = ["--encoder", f"{HERE}:make_random", "--quiet"]
    torch.manual_seed(1)
    assert _extract(tmp_path, *spec) == 0
    first = open_pool(tmp_path / "f").take(np.arange(60))
    (tmp_path / "f" / "part-00001.npy").unlink()  # as if killed while writing shard 1
    torch.manual_seed(2)  # the caller's generator elsewhere: the encoder is the same
    before = torch.get_rng_state()
    assert _extract(tmp_path, *spec) == 0
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is kept
    np.testing.assert_array_equal(open_pool(tmp_path / "f").take(np.arange(60)), first)
    torch.manual_seed(0)
    linear = make_random()[1]
    weight, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    want = imgs.reshape(60, 144).astype(np.float64) / 255.0 @ weight.T + bias
    np.testing.assert_allclose(first, want, rtol=1e-5, atol=1e-6)


def test_an_encoder_whose_weights_change_is_refused_with_the_reason(tmp_path, capsys):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_counting", "--quiet") == 0
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_random", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drawn at random anew on each run cannot resume" in err, err
    assert "--weights" in err


def make_half() -> torch.nn.Module:
    return Counting().to(torch.float16)


def make_bfloat16() -> torch.nn.Module:
    return Counting().to(torch.bfloat16)


@pytest.mark.parametrize(
    ("attr", "dtype"), [("make_half", "float16"), ("make_bfloat16", "bfloat16")]
)
def test_a_half_precision_encoder_gives_float32_features_and_resumes(tmp_path, attr, dtype):
    imgs = _images(tmp_path / "img")
    spec = ["--encoder", f"{HERE}:{attr}", "--quiet"]
    assert _extract(tmp_path, *spec) == 0
    got = open_pool(tmp_path / "f").take(np.arange(60))
    assert got.dtype == np.float32
    # The fixed map in float64 with its weights and inputs rounded to the encoder's dtype.
    half = getattr(torch, dtype)
    weight = torch.linspace(-1, 1, 432).reshape(3, 144).to(half).double().numpy()
    bias = torch.tensor([0.5, -0.5, 0.0]).to(half).double().numpy()
    flat = torch.from_numpy(imgs.reshape(60, 144).astype(np.float32) / 255.0)
    want = flat.to(half).double().numpy() @ weight.T + bias
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=0.1)
    (tmp_path / "f" / "part-00002.npy").unlink()
    assert _extract(tmp_path, *spec) == 0  # the same digest: the run resumes
    np.testing.assert_array_equal(open_pool(tmp_path / "f").take(np.arange(60)), got)


class _Returns(torch.nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.calls = kind, 0

    def forward(self, x):
        self.calls += 1
        flat = x.flatten(1)
        if self.kind == "tuple":
            return flat, flat.mean()
        if self.kind == "dict":
            return {"features": flat}
        if self.kind == "rows":
            return flat.reshape(1, -1)
        if self.kind == "complex":
            return flat.to(torch.complex64)
        if self.kind == "none":
            return flat[:, :0]
        if self.kind == "widths":  # one more feature on every batch
            return flat[:, : self.calls]
        out = flat[:, :2].clone()
        if self.calls == 3:  # images 16..23 in batches of 8: image 19 is NaN
            out[3, 1] = float("nan")
        return out


def make_tuple() -> torch.nn.Module:
    return _Returns("tuple")


def make_dict() -> torch.nn.Module:
    return _Returns("dict")


def make_rows() -> torch.nn.Module:
    return _Returns("rows")


def make_complex() -> torch.nn.Module:
    return _Returns("complex")


def make_nan() -> torch.nn.Module:
    return _Returns("nan")


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("make_tuple", "the encoder returned a tuple, not a tensor of features"),
        ("make_dict", "the encoder returned a dict, not a tensor of features"),
        ("make_rows", r"shape \(1, 1152\) for a batch of 8 images; it must return one row"),
        ("make_complex", "returned torch.complex64 features"),
        ("make_nan", r"NaN or infinite features \(for images \[19\]"),
    ],
)
def test_an_encoder_output_that_is_not_features_is_one_line(tmp_path, capsys, attr, message):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:{attr}", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def _off_the_path(monkeypatch, folder) -> None:
    """Leave ``folder`` and the current folder off the import path, as the script does."""
    here = {"", ".", str(folder), os.getcwd()}
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in here])
    monkeypatch.chdir(folder)


@pytest.mark.parametrize("command", ["extract", "select"])
def test_a_module_in_the_current_folder_is_found_as_python_m_finds_it(
    tmp_path, capsys, monkeypatch, command
):
    from tests.conftest import gaussian_blobs

    _images(tmp_path / "img")
    (tmp_path / f"ralif_test_here_{command}.py").write_text(
        "import torch\nNet = torch.nn.Flatten\n"
        "from ralif.strategies.baselines import Random\n"
        "class Mine(Random):\n    pass\n",
        encoding="utf-8",
    )
    _off_the_path(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # what the import adds is undone after
    module = f"ralif_test_here_{command}"
    monkeypatch.delitem(sys.modules, module, raising=False)
    if command == "extract":
        assert _extract(tmp_path, "--encoder", f"{module}:Net", "--quiet") == 0
    else:
        X, y = gaussian_blobs(n=100)
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", np.where(np.arange(100) < 20, y, -1))
        argv = ["select", "--features", "X.npy", "--labels", "y.npy", "--budget", "3"]
        assert main([*argv, "--strategy", f"{module}:Mine"]) == 0
    assert str(tmp_path) == sys.path[-1]  # after the installed packages, never before
    capsys.readouterr()


def test_a_missing_dependency_of_the_module_gets_no_path_hint(tmp_path, capsys, monkeypatch):
    _images(tmp_path / "img")
    (tmp_path / "ralif_test_needs_dep.py").write_text(
        "import ralif_no_such_dependency_xyz\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _extract(tmp_path, "--encoder", "ralif_test_needs_dep:Net") == 2
    err = capsys.readouterr().err
    assert "No module named 'ralif_no_such_dependency_xyz'" in err and "PYTHONPATH" not in err


@pytest.mark.parametrize(
    ("source", "attr", "message"),
    [
        ("import sys\nsys.exit(3)\n", "Net", r"importing ralif_test_exits called sys.exit\(3\)"),
        (
            "import sys\n\ndef make():\n    sys.exit('no GPU')\n",
            "make",
            r"calling make\(\) called sys.exit\('no GPU'\)",
        ),
    ],
)
def test_a_module_that_exits_is_one_line(tmp_path, capsys, monkeypatch, source, attr, message):
    _images(tmp_path / "img")
    (tmp_path / "ralif_test_exits.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ralif_test_exits", raising=False)
    assert _extract(tmp_path, "--encoder", f"ralif_test_exits:{attr}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    monkeypatch.delitem(sys.modules, "ralif_test_exits", raising=False)


def _write_image_file(path, case):
    """An image file of the kind ``case`` names, hostile or odd, at ``path``."""
    good = np.zeros((4, 12, 12), np.uint8)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "npz":
        np.savez(path, x=good)
    elif case == "text":
        path.write_text("id,pixels\n1,0 0 0\n", encoding="utf-8")
    elif case in ("truncated data", "truncated header"):
        np.save(path, good)
        data = path.read_bytes()
        path.write_bytes(data[:200] if case == "truncated data" else data[:30])
    elif case == "object":
        np.save(path, np.empty((2, 12, 12), dtype=object), allow_pickle=True)
    elif case == "complex":
        np.save(path, good.astype(np.complex64))
    elif case == "structured":
        np.save(path, np.zeros((2, 12, 12), dtype=[("a", "u1"), ("b", "f4")]))
    elif case == "no rows":
        np.save(path, np.zeros((0, 12, 12), np.uint8))
    elif case == "no pixels":
        np.save(path, np.zeros((4, 0, 12), np.uint8))
    elif case == "0-d":
        np.save(path, np.float32(1.0))
    elif case == "header of 1 byte":  # numpy's tokenizer fails on "{"
        np.save(path, good)
        data = path.read_bytes()
        path.write_bytes(data[:8] + (1).to_bytes(2, "little") + data[10:])
    elif case == "header of 4 GiB":  # a 2.0 header whose length would be read whole
        path.write_bytes(b"\x93NUMPY\x02\x00" + (2**32 - 16).to_bytes(4, "little") + b"{}")
    elif case == "header beyond numpy's limit":  # numpy's refusal is three lines long
        header = b"{" + b" " * 65534
        path.write_bytes(b"\x93NUMPY\x01\x00" + (65535).to_bytes(2, "little") + header + b"\0" * 9)
    elif case == "header exhausting the parser":
        header = b"-" * 9000 + b"1"
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    elif case == "huge shape":
        np.save(path, good)
        data = bytearray(path.read_bytes())
        header = data[: data.index(b"\n") + 1].decode("latin1")
        forged = header.replace("(4, 12, 12)", "(4000000000, 12, 12)")
        forged = forged[:-1].rstrip(" ") + " " * (len(header) - len(forged.rstrip(" \n")) - 1)
        data[: len(header)] = (forged + "\n").encode("latin1")[: len(header)]
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("case", "name", "message"),
    [
        ("empty", "img.npy", r"img.npy is not a \.npy file \(empty"),
        ("npz", "img.npz", r"img.npz is an \.npz archive: image shards must be \.npy files"),
        ("text", "img.npy", r"img.npy is not a \.npy file \(corrupt or another format\)"),
        ("text", "img.csv", r"img.csv is not a \.npy file"),
        ("truncated data", "img.npy", r"img.npy is truncated: its header announces"),
        (
            "truncated header",
            "img.npy",
            r"img.npy is not a whole \.npy file \(corrupt or truncated",
        ),
        ("object", "img.npy", r"refusing to read image shard .*img.npy: it holds pickled"),
        ("complex", "img.npy", r"must hold numeric images .*complex64"),
        ("structured", "img.npy", r"must hold numeric images"),
        ("no rows", "img.npy", r"the image shards hold no images"),
        ("no pixels", "img.npy", r"images of shape \(0, 12\) have no pixels"),
        ("0-d", "img.npy", r"must hold numeric images .*got shape \(\)"),
        ("huge shape", "img.npy", r"img.npy is truncated: its header announces"),
        ("header of 1 byte", "img.npy", r"cannot read image shard .*img.npy \(corrupt or not"),
        ("header of 4 GiB", "img.npy", r"img.npy is not a whole \.npy file \(corrupt or trunc"),
        ("header exhausting the parser", "img.npy", r"img.npy \(corrupt or not \.npy\)"),
        ("header beyond numpy's limit", "img.npy", r"img.npy has a header of 64.0 KiB, more than"),
    ],
)
def test_a_bad_image_file_is_one_line_and_exit_2(tmp_path, capsys, case, name, message):
    path = tmp_path / name
    _write_image_file(path, case)
    argv = ["extract", "--images", str(path), "--out", str(tmp_path / "f")]
    assert main([*argv, "--encoder", f"{HERE}:COUNTING", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert "pickled" not in err or case == "object", err
    assert "allow_pickle" not in err, err
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("case", ["empty", "text", "truncated data", "object", "no pixels"])
def test_a_bad_shard_among_good_ones_is_one_line(tmp_path, capsys, case):
    _images(tmp_path / "img")
    _write_image_file(tmp_path / "img" / "img-3.npy", case)
    assert _extract(tmp_path, "--encoder", f"{HERE}:COUNTING") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "img-3.npy" in err, err


def test_a_missing_image_path_is_named(tmp_path, capsys):
    argv = ["extract", "--images", str(tmp_path / "nothing.npy"), "--out", str(tmp_path / "f")]
    assert main([*argv, "--encoder", f"{HERE}:COUNTING"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images not found" in err and "nothing.npy" in err, err


class _Exits(torch.nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(144, 3)
        self.how = how

    def forward(self, x):
        if self.how == "exit":
            sys.exit(3)
        if self.how == "value":
            raise ValueError("expected 3 channels\nsecond line")
        if self.how == "key":
            raise KeyError("pixel_values")
        return self.linear(x.flatten(1))


def make_exits() -> torch.nn.Module:
    return _Exits("exit")


def make_value_error() -> torch.nn.Module:
    return _Exits("value")


def make_key_error() -> torch.nn.Module:
    return _Exits("key")


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("make_exits", r"make_exits failed on the images: it called sys.exit\(3\)"),
        (
            "make_value_error",
            r"make_value_error failed on the images: ValueError: expected 3 channels$",
        ),
        ("make_key_error", r"make_key_error failed on the images: KeyError: 'pixel_values'$"),
    ],
)
def test_an_encoder_that_raises_or_exits_is_one_line_and_exit_2(tmp_path, capsys, attr, message):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:{attr}", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err.strip()), err


def _float_images(folder, values):
    """Three shards of 20 float32 (or float64) 12x12 images, ``values[row] = value``."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    imgs = rng.random((60, 12, 12))
    for row, value in values.items():
        imgs[row, 3, 4] = value
    for k in range(3):
        np.save(folder / f"img-{k}.npy", imgs[20 * k : 20 * (k + 1)])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_images_holding_nan_or_inf_are_named_and_float16_not_blamed(tmp_path, capsys, value):
    _float_images(tmp_path / "img", {21: value, 23: value})
    assert _extract(tmp_path, "--encoder", f"{HERE}:COUNTING", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "float16" not in err, err
    assert re.search(r"the images hold NaN or infinite values: .*img-1.npy rows \[1, 3\]", err)
    assert "images [21, 23]" in err, err


def test_images_that_overflow_float16_blame_the_cast(tmp_path, capsys):
    _float_images(tmp_path / "img", {30: 1e6})
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_half", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images [30]" in err, err
    assert re.search(r"exceed the range of torch.float16 .* when cast for the encoder", err), err


def test_images_that_overflow_float32_blame_the_conversion(tmp_path, capsys):
    _float_images(tmp_path / "img", {5: 1e300})
    assert _extract(tmp_path, "--encoder", f"{HERE}:COUNTING", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "images [5]" in err and "float16" not in err, err
    assert "exceed the range of float32" in err, err


class _Blows(torch.nn.Module):
    """NaN features from finite images, from an encoder of the dtype it is made in."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        out = x.flatten(1)[:, :2] * self.scale
        out[5, 0] = float("nan")
        return out


def make_blows() -> torch.nn.Module:
    return _Blows()


def make_blows_half() -> torch.nn.Module:
    return _Blows().to(torch.float16)


def test_nan_features_of_a_float32_encoder_do_not_blame_float16(tmp_path, capsys):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_blows", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "for images [5]" in err and "float16" not in err, err
    assert "from finite images" in err, err
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_blows_half", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a float16 encoder overflows easily" in err, err


def make_no_features() -> torch.nn.Module:
    return _Returns("none")


def test_an_encoder_returning_no_features_is_refused(tmp_path, capsys):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_no_features", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "returned no features" in err, err


def make_widths() -> torch.nn.Module:
    return _Returns("widths")


def test_an_encoder_whose_width_changes_is_refused(tmp_path, capsys):
    _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_widths", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(r"returned 2 features for images 8\.\.15 but 1 before", err), err


@pytest.mark.parametrize("first", ["make_small_linear", "make_exits", "make_nan"])
def test_a_failed_run_does_not_block_the_correct_one(tmp_path, capsys, first):
    imgs = _images(tmp_path / "img")
    assert _extract(tmp_path, "--encoder", f"{HERE}:{first}", "--quiet") == 2
    capsys.readouterr()
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_counting") == 0
    assert "wrote 60 feature rows of 3 dimensions in 3 shards" in capsys.readouterr().err
    weight = np.linspace(-1, 1, 432).reshape(3, 144)
    want = imgs.reshape(60, 144) / 255.0 @ weight.T + np.array([0.5, -0.5, 0.0])
    np.testing.assert_allclose(open_pool(tmp_path / "f").take(np.arange(60)), want, rtol=1e-5)


def test_a_run_failed_on_a_bad_shard_does_not_block_the_mended_one(tmp_path, capsys):
    _float_images(tmp_path / "img", {43: np.inf})
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_counting", "--quiet") == 2
    assert "img-2.npy rows [3]" in capsys.readouterr().err
    mended = np.load(tmp_path / "img" / "img-2.npy")
    mended[3, 3, 4] = 0.5
    np.save(tmp_path / "img" / "img-2.npy", mended)
    assert _extract(tmp_path, "--encoder", f"{HERE}:make_counting", "--quiet") == 0
    assert open_pool(tmp_path / "f").n_rows == 60


def test_image_shards_of_integers_and_floats_are_refused(tmp_path, capsys):
    """Integers are scaled to [0, 1] and floats are not: mixed, a batch would mix both."""
    imgs = _images(tmp_path / "img")
    np.save(tmp_path / "img" / "img-1.npy", imgs[20:40] / 255.0)
    assert _extract(tmp_path, "--encoder", f"{HERE}:COUNTING") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hold integers" in err and "img-1.npy" in err, err


def test_weights_in_the_format_before_zip_files_are_read(tmp_path):
    imgs = _images(tmp_path / "img")
    torch.manual_seed(3)
    cnn = SmallCNN(in_channels=1, n_classes=5).eval()
    torch.save(cnn.state_dict(), tmp_path / "w.pt", _use_new_zipfile_serialization=False)
    assert (tmp_path / "w.pt").read_bytes()[:4] != b"PK\x03\x04"
    argv = ["--encoder", "cnn", "--weights", str(tmp_path / "w.pt"), "--quiet"]
    assert _extract(tmp_path, *argv) == 0
    with torch.no_grad():
        want = cnn.features(_as_input(imgs)).numpy()
    got = open_pool(tmp_path / "f").take(np.arange(60))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
