"""Record every strategy's picks on digits, in memory and from a pool of .npy shards.

The reference for refactors of the query code: ``tests/test_picks_reference.py`` checks
that today's code picks exactly what ``tests/data/picks_reference.json`` holds.

Run (from the project root; ``--out -`` prints):
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/record_picks.py --out tests/data/picks_reference.json

Every strategy class of ``ralif.strategies`` (found by its ``name``, so the script runs on
older revisions too) picks 20 of digits' pool with 60 labels (seed 0, ridge 0.1 where the
strategy takes one), with its defaults; RALIF also with the variants below. The strategies
that can stream also pick from the same rows saved as four ``.npy`` shards and as one
Parquet file (row groups of 500), read in blocks of 97 rows
(``ralif.pools.streaming.streamed_select``). Strategies that need a network
are left out (they sample a network no fixed features come with).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import ralif.strategies as S

RALIF_VARIANTS = {
    "ralif": {},
    "ralif[score=spread]": {"score": "spread"},
    "ralif[score=authors]": {"score": "authors"},
    "ralif[candidates=influence]": {"candidates": "influence"},
    "ralif[target=entropy]": {"target": "entropy"},
    "ralif[target=all]": {"target": "all"},
    "ralif[damping=0.25]": {"damping": 0.25},
    "ralif[diversity=cluster]": {"diversity": "cluster"},
    "ralif[tau=inf]": {"tau": float("inf")},
    "ralif[l2_scale=10]": {"l2_scale": 10.0},
}


def classes() -> dict[str, type]:
    found = {}
    for obj in vars(S).values():
        if inspect.isclass(obj) and issubclass(obj, S.Strategy) and getattr(obj, "name", None):
            found[obj.name] = obj
    return dict(sorted(found.items()))


def build(cls: type, params: dict) -> object:
    takes = inspect.signature(cls).parameters
    if "l2" in takes:
        params = {"l2": 0.1, **params}
    return cls(**params, random_state=0)


def write_parquet(X: np.ndarray, path: Path) -> str | None:
    """``X`` as one Parquet file of float columns in row groups of 500 rows (None
    without pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    table = pa.table({f"f{j}": X[:, j] for j in range(X.shape[1])})
    pq.write_table(table, path, row_group_size=500)
    return str(path)


def problem():
    X, y_true = load_digits(return_X_y=True)
    X = X.astype(np.float64) / 16.0
    rng = np.random.default_rng(0)
    y = np.full(len(y_true), -1)
    known = rng.choice(len(y_true), 60, replace=False)
    y[known] = y_true[known]
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    X, y = problem()
    import ralif.pools.streaming as streaming
    from ralif.pools.streaming import streamed_select

    if hasattr(streaming, "streamable"):
        STREAMABLE = streaming.streamable()
    else:  # a revision before the one query path
        STREAMABLE = streaming.STREAMABLE

    out: dict[str, dict[str, list[int]]] = {"memory": {}, "shards": {}, "parquet": {}}
    configs = []
    for name, cls in classes().items():
        if getattr(cls, "needs_network", False):
            continue
        variants = RALIF_VARIANTS if name == "ralif" else {name: {}}
        configs += [(key, name, cls, params) for key, params in variants.items()]
    with tempfile.TemporaryDirectory() as folder:
        for k, part in enumerate(np.array_split(X, 4)):
            np.save(Path(folder) / f"part-{k}.npy", part)
        parquet = write_parquet(X, Path(folder) / "pool.parquet")
        for key, name, cls, params in configs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                picks = build(cls, params).select(X, y, 20)
                out["memory"][key] = [int(i) for i in picks]
                if name in STREAMABLE:
                    q = streamed_select(
                        f"{folder}/part-*.npy", y, 20, build(cls, params), block_rows=97
                    )
                    out["shards"][key] = [int(i) for i in q.picks]
                    if parquet is not None:
                        q = streamed_select(parquet, y, 20, build(cls, params), block_rows=97)
                        out["parquet"][key] = [int(i) for i in q.picks]
            print(f"{key}: done", file=sys.stderr)
    text = json.dumps(out, indent=1, sort_keys=True) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
