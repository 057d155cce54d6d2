"""Feature extraction over sharded images: shards as it goes, resuming after a kill."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.pools.sources import open_pool
from tests.conftest import require

torch = require("torch")

from ralif.extract import extract_features  # noqa: E402


def _images(folder, n_shards=3, per=40, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(n_shards):
        np.save(folder / f"img-{k}.npy", rng.integers(0, 256, size=(per, 8, 8), dtype=np.uint8))
    return str(folder / "img-*.npy")


def _encoder(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))


class _Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_features_equal_the_encoder_on_all_images_in_order(tmp_path):
    pattern = _images(tmp_path / "img")
    enc = _encoder()
    extract_features(enc, pattern, tmp_path / "f", shard_rows=50, batch_size=16, quiet=True)
    imgs = np.concatenate([np.load(tmp_path / "img" / f"img-{k}.npy") for k in range(3)])
    with torch.no_grad():
        want = enc(torch.from_numpy(imgs.astype(np.float32)[:, None] / 255.0)).numpy()
    pool = open_pool(tmp_path / "f")
    assert [s.stop - s.start for s in pool.shards] == [50, 50, 20]
    np.testing.assert_allclose(pool.take(np.arange(120)), want, rtol=1e-5, atol=1e-6)


def test_a_killed_run_resumes_with_the_shards_it_had_not_written(tmp_path):
    pattern = _images(tmp_path / "img", n_shards=4, per=50)
    out = tmp_path / "f"
    # 200 images, shards of 40 in batches of 10: 5 shards of 4 batches. The encoder's
    # 9th call is the first batch of shard 2, so shards 0 and 1 are written; there it
    # says so and waits (on its stdin) to be killed, so the kill lands at a known point.
    script = textwrap.dedent(
        f"""
        import sys, torch
        from ralif.extract import extract_features
        torch.manual_seed(0)
        enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
        class Slow(torch.nn.Module):
            def __init__(self, inner):
                super().__init__(); self.inner, self.calls = inner, 0
            def forward(self, x):
                self.calls += 1
                if self.calls == 9:
                    print("in shard 2", flush=True)
                    sys.stdin.read()  # until killed (or the test ends and closes it)
                return self.inner(x)
        extract_features(Slow(enc), {pattern!r}, {str(out)!r}, shard_rows=40, batch_size=10, quiet=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        # A generous guard against a child that never gets there, not a timing.
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        line = proc.stdout.readline() if ready else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert line == "in shard 2\n", f"the extraction never reached shard 2 (printed {line!r})"
    written = sorted(p.name for p in out.glob("part-*.npy"))
    assert written == ["part-00000.npy", "part-00001.npy"]
    # The same encoder, counted: only the missing shards' batches run again.
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))

    class Slow(torch.nn.Module):  # same class name and weights as the killed run
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            return self.inner(x)

    resumed = Slow(enc)
    extract_features(resumed, pattern, out, shard_rows=40, batch_size=10, quiet=True)
    assert resumed.calls == (5 - len(written)) * 4
    fresh = tmp_path / "g"
    extract_features(Slow(enc), pattern, fresh, shard_rows=40, batch_size=10, quiet=True)
    np.testing.assert_array_equal(
        open_pool(out).take(np.arange(200)), open_pool(fresh).take(np.arange(200))
    )


def test_another_encoder_is_refused_in_a_folder_of_features(tmp_path):
    pattern = _images(tmp_path / "img")
    extract_features(_encoder(0), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    with pytest.raises(RalifInputError, match="another encoder"):
        extract_features(_encoder(1), pattern, tmp_path / "f", shard_rows=50, quiet=True)


def test_changed_images_are_refused_in_a_folder_of_features(tmp_path):
    pattern = _images(tmp_path / "img")
    extract_features(_encoder(0), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    np.save(tmp_path / "img" / "img-1.npy", np.zeros((40, 8, 8), np.uint8))
    with pytest.raises(RalifInputError, match="other images"):
        extract_features(_encoder(0), pattern, tmp_path / "f", shard_rows=50, quiet=True)


def test_a_second_run_over_complete_shards_runs_no_batch(tmp_path):
    pattern = _images(tmp_path / "img")
    first = _Counting(_encoder())
    extract_features(first, pattern, tmp_path / "g", shard_rows=50, quiet=True)
    calls = first.calls
    extract_features(first, pattern, tmp_path / "g", shard_rows=50, quiet=True)
    assert calls > 0 and first.calls == calls


def test_images_of_different_shapes_are_refused(tmp_path):
    (tmp_path / "img").mkdir()
    np.save(tmp_path / "img" / "a-0.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(tmp_path / "img" / "a-1.npy", np.zeros((3, 9, 9), np.uint8))
    with pytest.raises(RalifInputError, match="different shapes"):
        extract_features(_encoder(), str(tmp_path / "img" / "a-*.npy"), tmp_path / "f")


def test_progress_counts_images_from_where_a_run_resumes(tmp_path, capsys):
    pattern = _images(tmp_path / "img")
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50)
    assert "120/120" in capsys.readouterr().err
    os.remove(tmp_path / "f" / "part-00002.npy")
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50)
    err = capsys.readouterr().err
    assert "100/120" in err and "120/120" in err


class _FailsAt(torch.nn.Module):
    """The encoder of :func:`_encoder`, raising on batch ``at`` (counted from 1)."""

    def __init__(self, at, seed=0):
        super().__init__()
        self.inner, self.at, self.calls = _encoder(seed), at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("out of memory")
        return self.inner(x)


def _fresh(pattern, tmp_path):
    extract_features(_encoder(), pattern, tmp_path / "fresh", shard_rows=50, quiet=True)
    return open_pool(tmp_path / "fresh").take(np.arange(120))


def test_a_run_failed_before_any_shard_does_not_block_another_encoder(tmp_path):
    pattern = _images(tmp_path / "img")
    bad = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 5))  # not 64 inputs
    with pytest.raises(RalifInputError, match="failed on the images"):
        extract_features(bad, pattern, tmp_path / "f", shard_rows=50, quiet=True)
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    np.testing.assert_array_equal(
        open_pool(tmp_path / "f").take(np.arange(120)), _fresh(pattern, tmp_path)
    )


def test_a_run_failed_midway_is_replaced_by_a_run_with_other_inputs(tmp_path):
    pattern = _images(tmp_path / "img")
    with pytest.raises(RalifInputError, match="out of memory"):
        extract_features(
            _FailsAt(5, seed=1), pattern, tmp_path / "f", shard_rows=50, batch_size=16, quiet=True
        )
    assert (tmp_path / "f" / "part-00000.npy").exists()  # shard 0 (batches 1-4) was written
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    np.testing.assert_array_equal(
        open_pool(tmp_path / "f").take(np.arange(120)), _fresh(pattern, tmp_path)
    )


def test_a_run_failed_on_bad_images_is_replaced_once_they_are_mended(tmp_path):
    pattern = _images(tmp_path / "img")
    for k in range(3):  # as floats, as images holding NaN are
        np.save(tmp_path / "img" / f"img-{k}.npy", np.load(tmp_path / "img" / f"img-{k}.npy") / 255)
    good = np.load(tmp_path / "img" / "img-2.npy")
    bad = good.copy()
    bad[7, 1, 1] = np.nan
    np.save(tmp_path / "img" / "img-2.npy", bad)
    with pytest.raises(RalifInputError, match="NaN"):
        extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    assert (tmp_path / "f" / "part-00000.npy").exists()  # image 87 is in shard 1
    np.save(tmp_path / "img" / "img-2.npy", good)
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    np.testing.assert_array_equal(
        open_pool(tmp_path / "f").take(np.arange(120)), _fresh(pattern, tmp_path)
    )


def test_a_run_failed_midway_resumes_with_the_same_inputs(tmp_path):
    pattern = _images(tmp_path / "img")
    with pytest.raises(RalifInputError, match="out of memory"):
        extract_features(
            _FailsAt(5), pattern, tmp_path / "f", shard_rows=50, batch_size=16, quiet=True
        )
    again = _FailsAt(0)  # the same class and weights: the same encoder, which now works
    extract_features(again, pattern, tmp_path / "f", shard_rows=50, batch_size=16, quiet=True)
    assert again.calls == 4 + 2  # shards 1 and 2 only
    np.testing.assert_array_equal(
        open_pool(tmp_path / "f").take(np.arange(120)), _fresh(pattern, tmp_path)
    )


def test_a_stopped_run_of_another_encoder_is_still_refused(tmp_path):
    """A run that did not fail (killed, or still running) keeps its folder."""
    pattern = _images(tmp_path / "img")

    class Stop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _encoder()

        def forward(self, x):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(Stop(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    with pytest.raises(RalifInputError, match="another encoder"):
        extract_features(_encoder(1), pattern, tmp_path / "f", shard_rows=50, quiet=True)


def test_replacing_a_failed_run_leaves_other_files_alone(tmp_path):
    pattern = _images(tmp_path / "img")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "README.txt").write_text("notes")
    with pytest.raises(RalifInputError):
        extract_features(
            _FailsAt(2, seed=1), pattern, tmp_path / "f", shard_rows=50, batch_size=16, quiet=True
        )
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    assert (tmp_path / "f" / "README.txt").read_text() == "notes"
    assert sorted(p.name for p in (tmp_path / "f").glob("*.npy")) == [
        "part-00000.npy",
        "part-00001.npy",
        "part-00002.npy",
    ]


def test_a_folder_holding_other_npy_files_is_refused(tmp_path):
    """The folder becomes a pool of all its .npy files: others would be mixed in."""
    pattern = _images(tmp_path / "img")
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "labels.npy", np.zeros(120))
    with pytest.raises(RalifInputError, match=r"labels.npy, which is not a feature shard"):
        extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage", b"not an array at all"])
def test_a_corrupt_shard_in_the_folder_is_written_again(tmp_path, content):
    pattern = _images(tmp_path / "img")
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    (tmp_path / "f" / "part-00001.npy").write_bytes(content)
    extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    np.testing.assert_array_equal(
        open_pool(tmp_path / "f").take(np.arange(120)), _fresh(pattern, tmp_path)
    )


@pytest.mark.parametrize("content", [b"", b"[" * 100_000, b"\xff\xfe", b"[1, 2]", b'{"state": 1}'])
def test_a_manifest_that_is_not_one_of_extract_is_refused_in_one_line(tmp_path, content):
    pattern = _images(tmp_path / "img")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "manifest.json").write_bytes(content)
    with pytest.raises(RalifInputError, match=r"manifest\.json"):
        extract_features(_encoder(), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    assert (tmp_path / "f" / "manifest.json").read_bytes() == content


def _exits(batch):
    raise SystemExit(4)


def _raises(batch):
    raise ValueError("no such channel")


def _array(batch):
    return batch.astype(np.float32)


def _nan(batch):
    x = torch.from_numpy(batch.astype(np.float32))[:, None]
    x[2] = float("nan")
    return x


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (_exits, r"the transform _exits failed on the images: it called sys.exit\(4\)"),
        (_raises, "the transform _raises failed on the images: ValueError: no such channel"),
        (_array, "the transform returned a ndarray, not a tensor"),
        (_nan, r"the transform returned NaN or infinite values for finite images: .*rows \[2\]"),
    ],
)
def test_a_transform_that_fails_is_named(tmp_path, transform, message):
    pattern = _images(tmp_path / "img")
    with pytest.raises(RalifInputError, match=message):
        extract_features(
            _encoder(), pattern, tmp_path / "f", shard_rows=50, transform=transform, quiet=True
        )


class _Huge(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1)[:, :2] * self.scale * 1e300


def test_float64_features_beyond_float32_are_refused_by_name(tmp_path):
    pattern = _images(tmp_path / "img")
    with pytest.raises(RalifInputError, match=r"torch\.float64 features beyond the range"):
        extract_features(_Huge(), pattern, tmp_path / "f", shard_rows=50, quiet=True)


def test_an_error_of_the_encoder_keeps_its_cause(tmp_path):
    """In Python the encoder's own exception is chained, for its traceback."""
    pattern = _images(tmp_path / "img")
    with pytest.raises(RalifInputError) as info:
        extract_features(_FailsAt(1), pattern, tmp_path / "f", shard_rows=50, quiet=True)
    assert isinstance(info.value.__cause__, RuntimeError)
