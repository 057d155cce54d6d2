"""Every strategy picks today what it picked when the reference was recorded.

``tests/data/picks_reference.json`` was written by ``benchmarks/record_picks.py`` on the
revision before the query code was made one path (strategies written once over a pool,
in memory and streamed alike), and again after it: byte-identical. This test runs the
same script on the code under test and compares every pick list, in memory and from a
pool of ``.npy`` shards read in blocks, for every registered strategy class (those that
need a network aside) and ten RALIF variants; and every streamed pick list, from shards
and from Parquet, against the in-memory one of the same code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_picks_equal_the_recorded_reference():
    reference = json.loads((ROOT / "tests/data/picks_reference.json").read_text())
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/record_picks.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
        check=True,
    )
    now = json.loads(out.stdout)
    for kind in ("memory", "shards"):
        # Every recorded strategy still runs (a strategy added since has no reference).
        assert set(reference[kind]) <= set(now[kind]), kind
        differ = [k for k in reference[kind] if now[kind][k] != reference[kind][k]]
        assert differ == [], f"{kind}: other picks from {', '.join(differ)}"
    # Every strategy that streams picks the same from shards and from Parquet (a pool kind
    # recorded since) as in memory.
    assert all(now["shards"][k] == now["memory"][k] for k in now["shards"])
    assert sorted(now["parquet"]) == sorted(now["shards"])
    assert all(now["parquet"][k] == now["memory"][k] for k in now["parquet"])
