"""Labeling sessions over a pool of shards: created from headers, next streamed."""

from __future__ import annotations

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.session import workflow as wf
from tests.conftest import gaussian_blobs

CLASSES = ["a", "b", "c"]


def _sessions(tmp_path):
    X, y = gaussian_blobs(n=900, d=6, C=3, seed=2)
    X = X.astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "sh").mkdir()
    for k in range(3):
        np.save(tmp_path / "sh" / f"part-{k}.npy", X[k * 300 : (k + 1) * 300])
    whole = wf.init_session(tmp_path / "a.db", tmp_path / "X.npy", CLASSES)
    shards = wf.init_session(tmp_path / "b.db", str(tmp_path / "sh" / "*.npy"), CLASSES)
    for s in (whole, shards):
        s.import_labels([(i, int(y[i])) for i in range(30)], who="seed")
        s.import_labels([(i, int(y[i])) for i in range(30, 60)], who="qa", held_out=True)
    return whole, shards


def test_next_over_shards_records_the_picks_of_the_whole_file(tmp_path):
    whole, shards = _sessions(tmp_path)
    try:
        assert shards.n_items() == 900
        _, want = wf.next_batch(whole, 10, "ralif", seed=3, l2=0.1)
        _, got = wf.next_batch(shards, 10, "ralif", seed=3, l2=0.1)
        assert got == want and all(i >= 60 for i in got)
        # The open batch is left out of the next pick, as with a whole file.
        _, want2 = wf.next_batch(whole, 10, "margin", seed=3, force=True, l2=0.1)
        _, got2 = wf.next_batch(shards, 10, "margin", seed=3, force=True, l2=0.1)
        assert got2 == want2 and not set(got2) & set(got)
    finally:
        whole.close()
        shards.close()


def test_status_curve_over_shards_equals_the_whole_file(tmp_path):
    whole, shards = _sessions(tmp_path)
    try:
        assert wf.status(shards)["curve"] == wf.status(whole)["curve"]
    finally:
        whole.close()
        shards.close()


def test_a_shard_added_after_init_is_refused_by_next(tmp_path):
    _, shards = _sessions(tmp_path)
    try:
        np.save(tmp_path / "sh" / "part-3.npy", np.zeros((5, 6), np.float32))
        with pytest.raises(RalifInputError, match="now has 905 rows but the session has 900"):
            wf.next_batch(shards, 5, "ralif", l2=0.1)
    finally:
        shards.close()
