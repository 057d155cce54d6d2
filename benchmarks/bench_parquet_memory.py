"""Peak memory of reading a Parquet pool with one huge row group, streamed and in memory.

Run:
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_parquet_memory.py --rows 8000000 \\
      --cols 8 --cap 100000000

Writes a Parquet file of ``rows x cols`` float64 in a single row group (zeros, which
compress to a few hundred KB, and random numbers, stored uncompressed), then in a fresh
process per case reads it as ``ralif`` does with ``RALIF_MAX_ARRAY_BYTES=cap``: streamed
(every block, then three rows by index) and in memory (``load_features``, which refuses a
file over the cap). Prints each case's peak resident memory above the process's peak
before the read (``VmHWM``, MiB) and whether the cap was held.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

CHILD = """
import sys, numpy as np
from ralif.io import load_features
from ralif.pools.sources import open_pool
from ralif._validation import RalifInputError

def hwm():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

path, mode = sys.argv[1], sys.argv[2]
pool = open_pool(path)
before = hwm()
try:
    if mode == "streamed":
        for _ in pool.blocks(pool.block_rows_for()):
            pass
        pool.take(np.array([pool.n_rows - 1, 3, pool.n_rows // 2]))
        outcome = "read"
    else:
        load_features(path)
        outcome = "read"
except RalifInputError as exc:
    outcome = "refused: " + str(exc)[:60] + "..."
print(hwm() - before, outcome)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--cap", type=int, default=100_000_000, help="RALIF_MAX_ARRAY_BYTES")
    args = ap.parse_args()
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    env = {**os.environ, "RALIF_MAX_ARRAY_BYTES": str(args.cap)}
    print(f"{args.rows} rows x {args.cols} float64 in one row group; cap {args.cap >> 20} MiB")
    print(f"{'data':8} {'file MiB':>9} {'mode':10} {'peak MiB':>9}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for data in ("zeros", "random"):
            path = os.path.join(tmp, f"{data}.parquet")
            cols = {
                f"c{i}": np.zeros(args.rows) if data == "zeros" else rng.standard_normal(args.rows)
                for i in range(args.cols)
            }
            pq.write_table(
                pa.table(cols),
                path,
                row_group_size=args.rows,
                compression="snappy" if data == "zeros" else "none",
            )
            del cols
            size = os.path.getsize(path) / 2**20
            for mode in ("streamed", "in-memory"):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, path, mode],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split(" ", 1)
                peak = int(out[0]) / 2**20
                print(f"{data:8} {size:9.1f} {mode:10} {peak:9.1f}  {out[1].strip()}")


if __name__ == "__main__":
    main()
