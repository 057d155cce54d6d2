"""Pool sources: shards, memory maps, Parquet and array-likes, read in blocks and checked."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.pools.sources import ArrayPool, NpyShards, ParquetPool, open_pool
from ralif.pools.streaming import streamed_select
from tests.conftest import require


def _write_shards(folder, X, sizes, prefix="part-"):
    folder.mkdir(exist_ok=True)
    start = 0
    paths = []
    for k, n in enumerate(sizes):
        p = folder / f"{prefix}{k:03d}.npy"
        np.save(p, X[start : start + n])
        paths.append(p)
        start += n
    return paths


@pytest.fixture
def pool_X():
    return np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)


def test_shard_folder_blocks_concatenate_to_the_pool_in_name_order(tmp_path, pool_X):
    _write_shards(tmp_path / "s", pool_X, [30, 50, 20])
    pool = open_pool(tmp_path / "s")
    got = np.concatenate([b for _, b in pool.blocks(16)])
    assert pool.shape == (100, 6)
    np.testing.assert_array_equal(got, pool_X)


def test_no_block_crosses_a_shard_and_none_exceeds_block_rows(tmp_path, pool_X):
    _write_shards(tmp_path / "s", pool_X, [30, 50, 20])
    parts = open_pool(str(tmp_path / "s" / "*.npy")).partitions(16)
    assert all(b - a <= 16 for a, b in parts)
    assert all(not (a < edge < b) for a, b in parts for edge in (30, 80))
    assert parts[0][0] == 0 and parts[-1][1] == 100


def test_take_returns_rows_in_the_order_asked_across_shards(tmp_path, pool_X):
    _write_shards(tmp_path / "s", pool_X, [30, 50, 20])
    rows = np.array([99, 0, 31, 29, 80, 5])
    np.testing.assert_array_equal(open_pool(tmp_path / "s").take(rows), pool_X[rows])


def test_a_shard_with_nan_is_named_with_its_row(tmp_path, pool_X):
    X = pool_X.copy()
    X[42, 3] = np.nan  # row 12 of the second shard
    _write_shards(tmp_path / "s", X, [30, 50, 20])
    pool = open_pool(tmp_path / "s")
    with pytest.raises(RalifInputError, match=r"part-001\.npy contains NaN in rows \[12\]"):
        list(pool.blocks(1000))


def test_a_shard_of_the_wrong_width_is_named(tmp_path, pool_X):
    _write_shards(tmp_path / "s", pool_X, [30, 70])
    np.save(tmp_path / "s" / "part-002.npy", np.zeros((5, 7), np.float32))
    with pytest.raises(
        RalifInputError, match=r"part-002\.npy has 7 features but .*part-000\.npy has 6"
    ):
        open_pool(tmp_path / "s")


def test_a_gap_in_numbered_shards_names_the_missing_shard(tmp_path, pool_X):
    paths = _write_shards(tmp_path / "s", pool_X, [30, 50, 20])
    os.remove(paths[1])
    with pytest.raises(RalifInputError, match=r"part-001\.npy is missing"):
        open_pool(str(tmp_path / "s" / "part-*.npy"))


def test_a_listed_shard_that_does_not_exist_is_named(tmp_path, pool_X):
    paths = _write_shards(tmp_path / "s", pool_X, [30, 70])
    with pytest.raises(RalifInputError, match=r"nope\.npy is missing"):
        NpyShards([paths[0], tmp_path / "s" / "nope.npy", paths[1]])


def test_a_shard_removed_after_opening_is_named_as_missing(tmp_path, pool_X):
    paths = _write_shards(tmp_path / "s", pool_X, [30, 70])
    pool = open_pool(tmp_path / "s")
    list(pool.blocks(64))
    os.remove(paths[1])
    with pytest.raises(RalifInputError, match=r"part-001\.npy is missing"):
        pool.check_unchanged()


class _RewriteAfterFirstPass(NpyShards):
    """Rewrites one shard (same shape, new values) once every block was read once."""

    def __init__(self, paths, victim, n_blocks):
        super().__init__(paths)
        self.victim, self.n_blocks, self.reads = victim, n_blocks, 0

    def read(self, start, stop, check=True):
        out = super().read(start, stop, check)
        self.reads += 1
        if self.reads == self.n_blocks:
            arr = np.load(self.victim)
            os.remove(self.victim)  # a new file, as writers that replace files do
            np.save(self.victim, arr + 1.0)
        return out


def test_a_pool_rewritten_between_the_passes_is_refused_naming_the_shard(tmp_path, pool_X):
    paths = _write_shards(tmp_path / "s", pool_X, [30, 70])
    y = np.full(100, -1)
    y[:10] = np.arange(10) % 2
    src = _RewriteAfterFirstPass(paths, paths[1], n_blocks=len(NpyShards(paths).partitions(64)))
    with pytest.raises(
        RalifInputError, match=r"part-001\.npy changed while the pool was being read"
    ):
        streamed_select(src, y, 5, l2=0.1, random_state=0, block_rows=64)


def test_a_truncated_shard_is_refused(tmp_path, pool_X):
    paths = _write_shards(tmp_path / "s", pool_X, [30, 70])
    with open(paths[1], "r+b") as fh:
        fh.truncate(os.path.getsize(paths[1]) - 10)
    with pytest.raises(RalifInputError, match=r"part-001\.npy is truncated"):
        open_pool(tmp_path / "s")


def test_a_pickled_shard_is_refused_without_unpickling(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    # Written with pickle on purpose: the hostile shard ralif must refuse without loading.
    np.save(folder / "a.npy", np.array([[1, {"x": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(RalifInputError, match="pickled"):
        open_pool(folder)


def test_a_folder_matching_the_glob_is_refused(tmp_path, pool_X):
    _write_shards(tmp_path / "s", pool_X, [100])
    (tmp_path / "s" / "dir.npy").mkdir()
    with pytest.raises(RalifInputError, match=r"dir\.npy is not a regular file"):
        open_pool(str(tmp_path / "s" / "*.npy"))


def test_shards_pickle_without_their_memory_maps(tmp_path, pool_X):
    _write_shards(tmp_path / "s", pool_X, [30, 70])
    pool = open_pool(tmp_path / "s")
    list(pool.blocks(64))
    # ralif's own object, pickled as Dask ships it to a worker; no user file is unpickled.
    copy = pickle.loads(pickle.dumps(pool))
    np.testing.assert_array_equal(copy.read(30, 40), pool_X[30:40])


def test_memmap_is_read_in_blocks_without_copying_it_whole(tmp_path, pool_X):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=pool_X.shape)
    mm[:] = pool_X
    mm.flush()
    pool = open_pool(np.memmap(path, dtype=np.float32, mode="r", shape=pool_X.shape))
    assert isinstance(pool, ArrayPool)
    assert max(len(b) for _, b in pool.blocks(25)) == 25
    np.testing.assert_array_equal(pool.take(np.array([7, 3])), pool_X[[7, 3]])


def test_parquet_numeric_columns_and_list_column_give_the_same_pool(tmp_path, pool_X):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    cols = {f"f{j}": pool_X[:, j] for j in range(6)}
    (tmp_path / "cols").mkdir()
    pq.write_table(pa.table({k: v[:40] for k, v in cols.items()}), tmp_path / "cols" / "a.parquet")
    pq.write_table(pa.table({k: v[40:] for k, v in cols.items()}), tmp_path / "cols" / "b.parquet")
    lists = pa.FixedSizeListArray.from_arrays(pa.array(pool_X.ravel()), 6)
    pq.write_table(pa.table({"emb": lists}), tmp_path / "list.parquet", row_group_size=16)
    by_cols, by_list = open_pool(tmp_path / "cols"), open_pool(tmp_path / "list.parquet")
    assert isinstance(by_cols, ParquetPool) and by_list.dtype == np.float32
    for pool in (by_cols, by_list):
        np.testing.assert_array_equal(np.concatenate([b for _, b in pool.blocks(7)]), pool_X)
        np.testing.assert_array_equal(pool.take(np.array([55, 2, 41])), pool_X[[55, 2, 41]])


def test_parquet_null_is_refused_naming_the_file(tmp_path):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "b": [0.0, 1.0, 2.0]}), tmp_path / "p.parquet")
    with pytest.raises(RalifInputError, match=r"p\.parquet contains NaN in rows \[1\]"):
        list(open_pool(tmp_path / "p.parquet").blocks(10))


def test_parquet_text_column_is_refused(tmp_path):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    pq.write_table(pa.table({"a": [1.0], "s": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(RalifInputError, match="column 's' is not numeric"):
        open_pool(tmp_path / "p.parquet")


def test_dask_array_blocks_follow_its_chunks(pool_X):
    da = require("dask.array")
    pool = open_pool(da.from_array(pool_X, chunks=(40, 3)))
    assert pool.partitions(1000) == [(0, 40), (40, 80), (80, 100)]
    np.testing.assert_array_equal(np.concatenate([b for _, b in pool.blocks(7)]), pool_X)


def test_a_column_major_shard_reads_the_same_rows(tmp_path, pool_X):
    folder = tmp_path / "s"
    folder.mkdir()
    np.save(folder / "p-0.npy", pool_X[:40])
    np.save(folder / "p-1.npy", np.asfortranarray(pool_X[40:]))
    pool = open_pool(folder)
    np.testing.assert_array_equal(np.concatenate([b for _, b in pool.blocks(16)]), pool_X)
    np.testing.assert_array_equal(pool.take(np.array([90, 41, 3])), pool_X[[90, 41, 3]])


def test_integer_shards_are_read_as_float64(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    np.save(folder / "p.npy", np.arange(12, dtype=np.int16).reshape(4, 3))
    pool = open_pool(folder)
    block = next(pool.blocks(10))[1]
    assert pool.dtype == np.float64 and block.dtype == np.float64
    np.testing.assert_array_equal(block, np.arange(12).reshape(4, 3))


def test_a_file_named_like_a_glob_is_that_file(tmp_path, pool_X):
    from ralif.pools.sources import is_pool_spec

    path = tmp_path / "emb[1].npy"
    np.save(path, pool_X)
    np.save(tmp_path / "emb1.npy", np.zeros((3, 6), np.float32))  # what the pattern would match
    assert not is_pool_spec(path)
    np.testing.assert_array_equal(next(open_pool(path).blocks(1000))[1], pool_X)


def test_rows_read_by_index_with_nan_are_named_by_their_own_row(tmp_path, pool_X):
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    X = pool_X.copy()
    X[42, 3] = np.nan  # row 12 of the second shard
    _write_shards(tmp_path / "s", X, [30, 50, 20])
    with pytest.raises(RalifInputError, match=r"part-001\.npy contains NaN in rows \[12\]"):
        open_pool(tmp_path / "s").take(np.array([99, 0, 42, 31]))
    with pytest.raises(RalifInputError, match=r"X contains NaN in rows \[42\]"):
        open_pool(X).take(np.array([5, 42, 7]))
    cols = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table(cols), tmp_path / "p.parquet", row_group_size=16)
    with pytest.raises(RalifInputError, match=r"p\.parquet contains NaN in rows \[42\]"):
        open_pool(tmp_path / "p.parquet").take(np.array([1, 42, 60]))


def _write_unpadded(folder, n, suffix=".npy"):
    """Shards ``part-0`` ... ``part-{n-1}``, unpadded, each one row holding its number."""
    folder.mkdir(exist_ok=True)
    for k in range(n):
        np.save(folder / f"part-{k}{suffix}", np.full((1, 3), float(k)))


@pytest.mark.parametrize("spec", ["folder", "glob"])
def test_unpadded_shard_numbers_are_read_in_number_order(tmp_path, spec):
    _write_unpadded(tmp_path / "s", 12)  # text order would be 0, 1, 10, 11, 2, ...
    pool = open_pool(tmp_path / "s" if spec == "folder" else str(tmp_path / "s" / "*.npy"))
    rows = np.concatenate([b for _, b in pool.blocks(5)])[:, 0]
    np.testing.assert_array_equal(rows, np.arange(12))
    np.testing.assert_array_equal(pool.take(np.array([10, 2]))[:, 0], [10, 2])


def test_a_number_written_two_ways_is_refused_as_ambiguous(tmp_path):
    _write_unpadded(tmp_path / "s", 3)
    np.save(tmp_path / "s" / "part-01.npy", np.zeros((1, 3)))
    with pytest.raises(RalifInputError, match=r"part-1\.npy and .*part-01\.npy carry the same"):
        open_pool(tmp_path / "s")


def test_a_gap_in_unpadded_numbering_names_the_missing_shard(tmp_path):
    _write_unpadded(tmp_path / "s", 12)
    os.remove(tmp_path / "s" / "part-9.npy")
    with pytest.raises(RalifInputError, match=r"part-9\.npy is missing"):
        open_pool(tmp_path / "s")


def test_parquet_files_of_a_folder_are_read_in_number_order(tmp_path):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    (tmp_path / "p").mkdir()
    for k in range(11):
        pq.write_table(
            pa.table({"a": [float(k)], "b": [0.0]}), tmp_path / "p" / f"part-{k}.parquet"
        )
    rows = np.concatenate([b for _, b in open_pool(tmp_path / "p").blocks(4)])[:, 0]
    np.testing.assert_array_equal(rows, np.arange(11))
    pq.write_table(pa.table({"a": [0.0], "b": [0.0]}), tmp_path / "p" / "part-03.parquet")
    with pytest.raises(RalifInputError, match="carry the same number"):
        open_pool(tmp_path / "p")


def test_extract_reads_unpadded_image_shards_in_number_order(tmp_path):
    from ralif.extract import _image_shards

    (tmp_path / "img").mkdir()
    for k in range(11):
        np.save(tmp_path / "img" / f"part-{k}.npy", np.full((1, 4, 4), float(k), np.float32))
    paths = [p for p, _, _ in _image_shards(str(tmp_path / "img"))]
    assert [os.path.basename(p) for p in paths] == [f"part-{k}.npy" for k in range(11)]


def _parquet_folder(tmp_path, tables):
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    folder = tmp_path / "pq"
    folder.mkdir()
    for k, cols in enumerate(tables):
        pq.write_table(pa.table(cols), folder / f"part-{k}.parquet")
    return folder


def _all_rows(pool):
    return np.concatenate([b for _, b in pool.blocks(3)])


def test_parquet_folder_matches_columns_by_name_not_position(tmp_path):
    first = {"x": [1.0, 2.0], "y": [10.0, 20.0], "z": [100.0, 200.0]}
    later = {"z": [300.0], "x": [3.0], "y": [30.0]}  # the same columns in another order
    pool = open_pool(_parquet_folder(tmp_path, [first, later]))
    np.testing.assert_array_equal(_all_rows(pool), [[1, 10, 100], [2, 20, 200], [3, 30, 300]])
    np.testing.assert_array_equal(pool.take(np.array([2, 0])), [[3, 30, 300], [1, 10, 100]])


def test_parquet_folder_with_renamed_columns_is_refused_naming_the_file(tmp_path):
    first = {"x": [1.0], "y": [2.0]}
    with pytest.raises(RalifInputError, match=r"part-1\.parquet has columns \['x', 'w'\]"):
        open_pool(_parquet_folder(tmp_path, [first, {"x": [1.0], "w": [2.0]}]))


@pytest.mark.parametrize(
    "later, problem",
    [
        ({"x": [1.0], "y": ["text"]}, r"column 'y' is not numeric \(string\)"),
        ({"x": [1.0]}, r"has columns \['x'\]"),
    ],
)
def test_a_later_parquet_file_with_another_schema_is_refused(tmp_path, later, problem):
    folder = _parquet_folder(tmp_path, [{"x": [1.0], "y": [2.0]}, later])
    with pytest.raises(RalifInputError, match=r"part-1\.parquet.*" + problem):
        open_pool(folder)


def test_a_later_parquet_file_with_another_list_width_is_refused(tmp_path):
    pa = require("pyarrow")
    lists = [
        {"emb": pa.array([[1.0, 2.0]], type=pa.list_(pa.float32(), 2))},
        {"emb": pa.array([[1.0, 2.0, 3.0]], type=pa.list_(pa.float32(), 3))},
    ]
    with pytest.raises(RalifInputError, match=r"part-1\.parquet.*3 values.*first file.*2"):
        open_pool(_parquet_folder(tmp_path, lists))


def test_parquet_integer_and_float_files_share_a_pool(tmp_path):
    pool = open_pool(_parquet_folder(tmp_path, [{"x": [1.5]}, {"x": [2]}]))
    np.testing.assert_array_equal(_all_rows(pool), [[1.5], [2.0]])


def test_a_parquet_row_group_is_read_in_slices_bounded_by_the_cap(tmp_path, monkeypatch):
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    X = np.arange(40_000 * 4, dtype=np.float64).reshape(-1, 4)
    pq.write_table(
        pa.table({f"c{i}": X[:, i] for i in range(4)}),
        tmp_path / "p.parquet",
        row_group_size=len(X),
    )
    monkeypatch.setenv("RALIF_MAX_ARRAY_BYTES", str(64 << 10))
    pool = open_pool(tmp_path / "p.parquet")
    assert max(hi - lo for lo, hi in pool.partitions(len(X))) * 32 <= (64 << 10)
    np.testing.assert_array_equal(_all_rows(pool), X)
    rows = np.array([39_999, 5, 20_000, 6])
    np.testing.assert_array_equal(pool.take(rows), X[rows])


def test_a_dask_array_of_unknown_chunk_sizes_is_measured_then_read(pool_X):
    da = require("dask.array")
    X = np.asarray(pool_X)
    d = da.from_array(X, chunks=(17, X.shape[1]))
    masked = d[d[:, 0] > -np.inf]  # a filter: dask no longer knows the chunks' sizes
    assert np.isnan(masked.shape[0])
    pool = open_pool(masked)
    assert pool.shape == X.shape
    np.testing.assert_array_equal(np.concatenate([b for _, b in pool.blocks(5)]), X)
    np.testing.assert_array_equal(pool.take(np.array([3, 40])), X[[3, 40]])
