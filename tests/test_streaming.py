"""Streamed queries: the in-memory picks from a pool read in blocks, and the candidate cap."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import ralif
from ralif import RALIF, RalifInputError
from ralif._params import Anything
from ralif.pools.sources import ArrayPool, open_pool
from ralif.pools.streaming import streamed_select
from ralif.strategies import Margin
from tests.conftest import gaussian_blobs, require

N, BUDGET = 2500, 15


@pytest.fixture(scope="module")
def data():
    X, y_true = gaussian_blobs(n=N, d=10, C=4, sep=1.2, seed=3)
    y = np.full(N, -1)
    y[:80] = y_true[:80]
    return X.astype(np.float32), y


class _CountingPool(ArrayPool):
    """Records the largest block and how many rows were read by index."""

    def __init__(self, X):
        super().__init__(X)
        self.largest, self.taken = 0, 0

    def read(self, start, stop, check=True):
        self.largest = max(self.largest, stop - start)
        return super().read(start, stop, check)

    def take(self, rows):
        self.taken += len(rows)
        return super().take(rows)


STREAMABLE_CASES = [
    ("ralif", {}),
    ("ralif", {"candidates": "influence"}),
    ("ralif", {"score": "authors", "rescale_ridge": True}),
    ("ralif", {"score": "spread", "n_candidates": 20}),
    ("ralif", {"diversity": "cluster"}),
    ("ralif", {"diversity": "none"}),
    ("ralif", {"target": "entropy"}),
    ("ralif", {"target": "all", "damping": 0.25}),
    ("ralif", {"weighting": "balanced"}),
    ("ralif", {"weighting": "confidence"}),
    ("ralif", {"l2_scale": 10.0, "tau": float("inf")}),
    ("random", {}),
    ("margin", {}),
    ("entropy", {}),
    ("least_confidence", {}),
    ("badge", {}),
    ("coreset", {}),
]


@pytest.mark.parametrize(("strategy", "params"), STREAMABLE_CASES)
def test_streamed_picks_equal_in_memory_picks(data, strategy, params):
    X, y = data
    if strategy not in ("random", "coreset"):
        params = {"l2": 0.05, **params}
    want = ralif.select(X, y, BUDGET, strategy=strategy, random_state=7, **params)
    got = streamed_select(X, y, BUDGET, strategy, random_state=7, block_rows=300, **params)
    np.testing.assert_array_equal(got.picks, want)
    assert not got.capped


def test_streamed_scores_match_in_memory_scores(data):
    X, y = data
    s = RALIF(l2=0.05, random_state=0)
    s.select(X, y, BUDGET)
    got = streamed_select(X, y, BUDGET, RALIF(l2=0.05, random_state=0), block_rows=300)
    np.testing.assert_array_equal(got.pool_index, s.pool_index_)
    # float32 features: each block's gradient sum is a float32 product, and the two
    # queries cut the pool into different blocks, so the sums round differently.
    np.testing.assert_allclose(got.scores, s.scores_, rtol=2e-5, atol=1e-12)


def test_the_pool_is_read_in_blocks_and_only_candidates_by_index(data):
    X, y = data
    src = _CountingPool(X)
    q = streamed_select(src, y, BUDGET, l2=0.05, random_state=0, block_rows=200)
    assert src.largest == 200
    assert q.n_candidates == 2 * BUDGET  # the default: two budgets of candidates
    assert src.taken == 80 + q.n_candidates  # the labeled items, then the candidates


def test_rows_restrict_the_query_as_if_the_pool_were_those_rows(data):
    X, y = data
    rows = np.flatnonzero(np.arange(N) % 3 != 1)
    want = rows[ralif.select(X[rows], y[rows], BUDGET, l2=0.05, random_state=1)]
    got = streamed_select(X, y, BUDGET, l2=0.05, random_state=1, rows=rows, block_rows=250)
    np.testing.assert_array_equal(got.picks, want)


def test_cap_keeps_the_best_candidates_by_score(data):
    X, y = data
    cap, tenth = 2 * BUDGET, {"n_candidates": 0.1}
    q = streamed_select(X, y, BUDGET, l2=0.05, random_state=0, max_candidates=cap, **tenth)
    ref = RALIF(l2=0.05, random_state=0, **tenth)
    ref.select(X, y, BUDGET)
    assert len(ref.candidates_) > cap
    assert q.capped and q.n_candidates == cap
    np.testing.assert_array_equal(q.strategy.candidates_, ref.candidates_[:cap])
    assert set(q.picks) <= set(ref.pool_index_[ref.candidates_[:cap]])


def test_cap_equal_to_budget_picks_the_best_scores(data):
    X, y = data
    q = streamed_select(X, y, BUDGET, l2=0.05, random_state=0, max_candidates=BUDGET)
    top = ralif.select(X, y, BUDGET, l2=0.05, random_state=0, diversity="none")
    assert sorted(q.picks) == sorted(top)


def test_coreset_past_the_cap_reads_a_sample_of_the_pool(data):
    X, y = data
    src = _CountingPool(X)
    q = streamed_select(src, y, BUDGET, "coreset", random_state=0, max_candidates=100)
    assert q.capped and q.n_candidates == 100 and src.taken == 80 + 100
    assert len(set(q.picks)) == BUDGET and (y[q.picks] == -1).all()


def test_one_labeled_class_falls_back_like_the_in_memory_query(data):
    X, y = data
    y1 = np.where(y == 0, 0, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ralif.select(X, y1, BUDGET, l2=0.05, random_state=2)
        got = streamed_select(X, y1, BUDGET, l2=0.05, random_state=2, block_rows=300)
        want_m = ralif.select(X, y1, BUDGET, "margin", l2=0.05, random_state=2)
        got_m = streamed_select(X, y1, BUDGET, "margin", l2=0.05, random_state=2)
    np.testing.assert_array_equal(got.picks, want)
    np.testing.assert_array_equal(got_m.picks, want_m)


def test_a_strategy_that_cannot_stream_is_refused_by_name(data):
    X, y = data
    with pytest.raises(RalifInputError, match="random_share cannot be streamed"):
        streamed_select(X, y, BUDGET, "random_share")


def test_a_subclass_with_its_own_query_is_refused(data):
    class Mine(Margin):
        def query(self, model, X, y, pool, budget, rng):
            return pool[:budget], np.zeros(len(pool))

    X, y = data
    with pytest.raises(RalifInputError, match="cannot be streamed"):
        streamed_select(X, y, BUDGET, Mine())


def test_a_ralif_candidate_rule_it_does_not_know_is_refused(data):
    class Later(RALIF):  # as a later version might add a rule: never silently ignored
        _parameter_constraints: ClassVar = {
            **RALIF._parameter_constraints,
            "candidates": Anything(),
        }

    X, y = data
    with pytest.raises(RalifInputError, match="candidate rule 'something-new'"):
        streamed_select(X, y, BUDGET, Later(l2=0.05, candidates="something-new"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_max_candidates_and_block_rows_are_refused(data, bad):
    X, y = data
    with pytest.raises(RalifInputError, match="max_candidates"):
        streamed_select(X, y, BUDGET, max_candidates=bad)
    with pytest.raises(RalifInputError, match="block_rows"):
        streamed_select(X, y, BUDGET, block_rows=bad)


def test_unknown_device_is_refused(data):
    X, y = data
    with pytest.raises(RalifInputError, match="device must be 'cpu' or 'cuda"):
        streamed_select(X, y, BUDGET, device="tpu")


def test_cuda_without_a_gpu_is_one_clear_error(data, monkeypatch):
    torch = require("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X, y = data
    with pytest.raises(RalifInputError, match="no CUDA GPU"):
        streamed_select(X, y, BUDGET, device="cuda")


def test_labels_of_the_wrong_length_are_refused(data):
    X, y = data
    with pytest.raises(RalifInputError, match="entries but the features have"):
        streamed_select(X, y[:-1], BUDGET)


def test_shards_on_disk_give_the_in_memory_picks(data, tmp_path):
    X, y = data
    for k, (a, b) in enumerate([(0, 700), (700, 1900), (1900, N)]):
        np.save(tmp_path / f"part-{k}.npy", X[a:b])
    want = ralif.select(X, y, BUDGET, l2=0.05, random_state=4)
    got = streamed_select(str(tmp_path / "part-*.npy"), y, BUDGET, l2=0.05, random_state=4)
    np.testing.assert_array_equal(got.picks, want)


def test_a_dask_array_gives_the_in_memory_picks(data):
    da = require("dask.array")
    X, y = data
    want = ralif.select(X, y, BUDGET, l2=0.05, random_state=4)
    got = streamed_select(da.from_array(X, chunks=(600, 10)), y, BUDGET, l2=0.05, random_state=4)
    np.testing.assert_array_equal(got.picks, want)


def test_the_torch_device_computes_the_numpy_device_products():
    require("torch")
    from ralif.pools.devices import NumpyDevice, TorchDevice

    rng = np.random.default_rng(0)
    block = rng.normal(size=(50, 7)).astype(np.float32)
    W, b, G = rng.normal(size=(3, 7)), rng.normal(size=3), rng.normal(size=(50, 3))
    cpu, torch_cpu = NumpyDevice(), TorchDevice("cpu")
    np.testing.assert_allclose(torch_cpu.proba(block, W, b), cpu.proba(block, W, b), rtol=1e-5)
    np.testing.assert_allclose(torch_cpu.product(block, W), cpu.product(block, W), rtol=1e-5)
    # Both in the block's precision (float32), summed as float64.
    np.testing.assert_allclose(torch_cpu.gradient(G, block), cpu.gradient(G, block), rtol=1e-5)
    np.testing.assert_allclose(
        cpu.gradient(G, block), G.T @ block.astype(np.float64), rtol=1e-5, atol=1e-5
    )
    for dev, rtol in ((cpu, 1e-12), (torch_cpu, 1e-5)):
        P, A = dev.proba_and_product(block, W, b, G[:3].T @ block[:3])
        np.testing.assert_allclose(P, cpu.proba(block, W, b), rtol=rtol)
        np.testing.assert_allclose(A, cpu.product(block, G[:3].T @ block[:3]), rtol=1e-5)


@pytest.mark.parametrize("strategy", ["ralif", "margin", "badge"])
def test_a_query_through_the_torch_device_picks_what_numpy_picks(data, monkeypatch, strategy):
    require("torch")
    import ralif.pools.devices as devices
    import ralif.pools.streaming as streaming

    X, y = data
    want = streamed_select(X, y, BUDGET, strategy, l2=0.05, random_state=0).picks
    # The GPU code path, run by torch on the CPU (CUDA itself is checked on a GPU machine
    # by benchmarks/gpu_check.sh).
    monkeypatch.setattr(streaming, "check_device", lambda name: name)
    on_cpu = devices.TorchDevice
    monkeypatch.setattr(devices, "TorchDevice", lambda name: on_cpu("cpu"))
    got = streamed_select(X, y, BUDGET, strategy, l2=0.05, random_state=0, device="cuda")
    np.testing.assert_array_equal(got.picks, want)


@pytest.mark.parametrize("params", [{}, {"score": "expected"}, {"candidates": "influence"}])
def test_a_saturated_head_gives_the_in_memory_picks(params):
    # At features of scale 1e8 the head is sure to within 1e-40: p - 1 and a_y - p^T a
    # cancel to rounding noise unless both paths compute them the same careful way.
    X, y_true = gaussian_blobs(n=600, d=5, C=3, seed=0)
    X = X * 1e8
    y = np.full(len(X), -1)
    y[:40] = y_true[:40]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        want = ralif.select(X, y, 8, random_state=0, **params)
        got = streamed_select(X, y, 8, random_state=0, block_rows=100, **params)
    np.testing.assert_array_equal(got.picks, want)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 3e38])
@pytest.mark.parametrize("strategy", ["ralif", "margin", "entropy", "least_confidence", "badge"])
def test_a_non_finite_pool_row_is_named_by_every_pass(tmp_path, data, strategy, bad):
    # The passes find NaN and inf through their own results (no scan of each block):
    # every strategy's pass must still name the shard and the row.
    X, y = data
    X = X.copy()
    X[700, 2] = bad  # row 100 of the second shard (3e38 overflows the products)
    np.save(tmp_path / "p-0.npy", X[:600])
    np.save(tmp_path / "p-1.npy", X[600:])
    kind = "NaN" if np.isnan(bad) else "inf" if np.isinf(bad) else "too large"
    message = rf"p-1\.npy (contains {kind} in rows \[100\]|has values too large)"
    with pytest.raises(RalifInputError, match=message):
        streamed_select(str(tmp_path / "p-*.npy"), y, BUDGET, strategy, l2=0.05, block_rows=128)


def test_a_nan_in_a_dask_chunk_is_named_with_its_pool_row(data):
    da = require("dask.array")
    X, y = data
    X = X.copy()
    X[805, 0] = np.nan
    with pytest.raises(RalifInputError, match=r"contains NaN in rows \[805\]"):
        streamed_select(da.from_array(X, chunks=(400, -1)), y, BUDGET, l2=0.05)


class _NanAfterFirstPass(ArrayPool):
    """An in-memory pool whose row 805 turns NaN once the first pass has read it."""

    def __init__(self, X):
        super().__init__(X)
        self.blocks_read = 0
        self.n_blocks = -(-len(X) // 128)
        self.later = X.copy()
        self.later[805, 1] = np.nan

    def read(self, start, stop, check=True):
        self.blocks_read += 1
        if self.blocks_read > self.n_blocks:
            self.array = self.later
        return super().read(start, stop, check)


def test_nan_reaching_the_second_pass_unscanned_is_still_named(data):
    X, y = data
    with pytest.raises(RalifInputError, match=r"contains NaN in rows \[805\]"):
        streamed_select(_NanAfterFirstPass(X), y, BUDGET, l2=0.05, block_rows=128)


def test_every_strategy_with_a_plan_streams_and_no_other():
    from ralif.pools.streaming import check_streamable, streamable
    from ralif.strategies import STRATEGIES, Margin

    assert set(streamable()) == {
        "ralif", "ralif_influence", "random", "margin", "entropy", "least_confidence",
        "badge", "coreset", "subsample", "bald", "isal", "margin_kmeans", "cluster_margin",
        "typiclust",
    }  # fmt: skip
    assert all(STRATEGIES[n][0].plan is not ralif.Strategy.plan for n in streamable())
    assert isinstance(check_streamable(RALIF(score="authors")), RALIF)
    with pytest.raises(RalifInputError, match="random_share cannot be streamed"):
        check_streamable("random_share")

    class Rewritten(Margin):  # a query of its own replaces the plan: not streamed
        def query(self, model, X, y, pool, budget, rng):
            return pool[:budget], np.zeros(len(pool))

    with pytest.raises(RalifInputError, match="cannot be streamed"):
        check_streamable(Rewritten())

    class Smallest(Margin):  # a measure of its own runs in the same plan, streamed too
        measure = staticmethod(lambda P: -P.max(axis=1))

    assert isinstance(check_streamable(Smallest()), Smallest)


def test_results_not_finite_from_finite_features_are_an_error():
    from ralif.pools.sources import checked_results

    reread = []
    ok = {"score": np.array([1.0, 2.0])}
    assert checked_results((ok, {"g": 3.0}), lambda: reread.append(1), "X", 0, 2) == (
        ok,
        {"g": 3.0},
    )
    assert reread == []  # finite results: no second read
    with pytest.raises(RalifInputError, match="X: rows 10 to 19 give scores that are not finite"):
        checked_results(({"score": np.array([np.inf])}, {}), lambda: reread.append(1), "X", 10, 20)
    assert reread == [1]


def test_labeled_features_handed_in_are_not_read_again(data):
    X, y = data
    src = _CountingPool(X)
    labeled = np.flatnonzero(y >= 0)
    got = streamed_select(src, y, BUDGET, l2=0.05, random_state=3, X_labeled=X[labeled])
    want = ralif.select(X, y, BUDGET, l2=0.05, random_state=3)
    np.testing.assert_array_equal(got.picks, want)
    assert src.taken == got.n_candidates  # only the candidates, by index
    with pytest.raises(RalifInputError, match="X_labeled must hold the 80 labeled items"):
        streamed_select(X, y, BUDGET, l2=0.05, X_labeled=X[labeled[:-1]])


def test_select_reads_a_path_by_the_one_rule(data, tmp_path):
    from ralif.pools.sources import stream_reason

    X, y = data
    for k, part in enumerate(np.array_split(X, 3)):
        np.save(tmp_path / f"part-{k}.npy", part)
    np.save(tmp_path / "X.npy", X)
    want = ralif.select(X, y, BUDGET, l2=0.05, random_state=0)
    # A folder of shards is streamed, a file that fits is read whole: the same picks.
    assert stream_reason(str(tmp_path)) == "a folder or glob of shards"
    assert stream_reason(str(tmp_path / "X.npy")) is None
    assert stream_reason(X) is None and stream_reason(open_pool(X)) == "a pool source"
    shards = sorted(str(p) for p in tmp_path.glob("part-*.npy"))
    glob = str(tmp_path / "part-*.npy")
    assert ralif.select(glob, y, BUDGET, l2=0.05, random_state=0).tolist() == want.tolist()
    whole = ralif.select(str(tmp_path / "X.npy"), y, BUDGET, l2=0.05, random_state=0)
    assert whole.tolist() == want.tolist() and len(shards) == 3
    held = np.arange(0, len(y), 7)
    kept = ralif.select(X, y, BUDGET, l2=0.05, random_state=0, exclude=held)
    streamed = ralif.select(glob, y, BUDGET, l2=0.05, random_state=0, exclude=held)
    assert streamed.tolist() == kept.tolist() and not set(held) & set(streamed.tolist())
