"""``ralif extract``: an encoder named on the command line over image shards."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

from ralif.cli import main
from ralif.sources import open_pool
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


def test_a_module_in_the_current_folder_needs_pythonpath(tmp_path, capsys, monkeypatch):
    _images(tmp_path / "img")
    (tmp_path / "ralif_test_here_net.py").write_text(
        "import torch\nNet = torch.nn.Flatten\n", encoding="utf-8"
    )
    _off_the_path(monkeypatch, tmp_path)
    assert _extract(tmp_path, "--encoder", "ralif_test_here_net:Net") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No module named 'ralif_test_here_net'" in err, err
    assert "PYTHONPATH=." in err
    monkeypatch.delitem(sys.modules, "ralif_test_here_net", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))  # as PYTHONPATH=. does
    assert _extract(tmp_path, "--encoder", "ralif_test_here_net:Net", "--quiet") == 0


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
