"""Streamed RALIF queries as the pool grows, against the floor measured in the same run.

Run:
  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_stream.py --sizes 10k,100k \\
      --folder /tmp/ralif-stream
  ... --sizes 1m,10m --dask-workers 1,2 --dask-size 1m --delete

Each pool is N x 768 float32 features (Gaussian class clusters, C = 10) written once,
deterministically, as .npy shards of 250,000 rows, stream-written (never held whole);
1,000 items are labeled and the budget is 1,000. Every size runs in a child process, so
that its peak resident memory (VmHWM) is its own. In that process:

  floor  one read of the pool plus one pool-by-weights product (block @ W.T, W of C x d),
         with plain file reads of the shards: what any query must at least do;
  query  ralif.pools.streaming.streamed_select with RALIF's defaults (l2 fixed at 0.01, so
         that the head's cross-validation is not timed), reading the same shards.

The floor is measured before and after the query; the smaller is reported. Both read the
next block in a second thread while the current one is computed. At 10M the
pool (31 GB) is larger than this machine's memory, so both read from disk.
``--dask-workers`` times the same query on a LocalCluster of 1 and 2 worker processes
(one thread each; the cluster's start is not timed) at ``--dask-size``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np

D, C, N_LABELED, BUDGET, SHARD_ROWS, SEED = 768, 10, 1000, 1000, 250_000, 0
_CHUNK = 1 << 16


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def pool_folder(root: Path, n: int) -> Path:
    return root / f"pool-{n}"


def write_pool(folder: Path, n: int) -> None:
    """Write N x D float32 shards and the labels, deterministically, a chunk at a time."""
    done = folder / "DONE"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    centers = np.random.default_rng(SEED).normal(size=(C, D)) * (12.0 / np.sqrt(D))
    centers = centers.astype(np.float32)
    y = np.full(n, -1, dtype=np.int64)
    for k, start in enumerate(range(0, n, SHARD_ROWS)):
        rows = min(SHARD_ROWS, n - start)
        path = folder / f"part-{k:05d}.npy"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            header = {"descr": "<f4", "fortran_order": False, "shape": (rows, D)}
            np.lib.format.write_array_header_1_0(fh, header)
            for c, lo in enumerate(range(0, rows, _CHUNK)):
                m = min(_CHUNK, rows - lo)
                rng = np.random.default_rng([SEED, k, c])
                cls = rng.integers(C, size=m)
                block = rng.standard_normal((m, D), dtype=np.float32)
                block += centers[cls]
                fh.write(block.tobytes())
                first = start + lo
                if first < N_LABELED:
                    take = min(m, N_LABELED - first)
                    y[first : first + take] = cls[:take]
        os.replace(tmp, path)
    np.save(folder / "labels.npy", y)
    done.write_text("ok\n")


def floor_seconds(folder: Path) -> float:
    """One read of every shard plus ``block @ W.T``: the least any query does.

    Plain positioned reads of 32 MiB, the next one issued by a second thread while the
    product of the current one runs (as the streamed query does).
    """
    from ralif._files import _npy_layout  # the one .npy header reader

    W = np.random.default_rng(1).normal(size=(C, D)).astype(np.float32)
    rows = max(1, (32 << 20) // (D * 4))
    tasks = []
    for path in sorted(folder.glob("part-*.npy")):
        with open(path, "rb") as fh:
            shape, _, _, offset = _npy_layout(fh, f"pool shard {path}")
        tasks += [
            (path, offset + lo * D * 4, min(rows, shape[0] - lo)) for lo in range(0, shape[0], rows)
        ]

    def read(task):
        path, offset, m = task
        buf = np.empty((m, D), dtype=np.float32)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.preadv(fd, [memoryview(buf).cast("B")], offset)
        finally:
            os.close(fd)
        return buf

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as reader:
        ahead = reader.submit(read, tasks[0])
        for i in range(len(tasks)):
            block = ahead.result()
            if i + 1 < len(tasks):
                ahead = reader.submit(read, tasks[i + 1])
            block @ W.T
    return time.perf_counter() - t


def peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(folder: Path, dask_workers: int) -> dict:
    from ralif.pools.streaming import streamed_select

    y = np.load(folder / "labels.npy")
    pattern = str(folder / "part-*.npy")
    out = {"n": len(y)}
    floors = [floor_seconds(folder)]
    if dask_workers:
        from ralif.pools.cluster import dask_client

        with dask_client(f"local:{dask_workers}") as client:
            # Workers import ralif on their first task: done before the clock starts.
            client.run(importlib.import_module, "ralif.pools.streaming")
            t = time.perf_counter()
            q = streamed_select(pattern, y, BUDGET, random_state=0, l2=0.01, client=client)
            out["query_s"] = time.perf_counter() - t
    else:
        t = time.perf_counter()
        q = streamed_select(pattern, y, BUDGET, random_state=0, l2=0.01)
        out["query_s"] = time.perf_counter() - t
    floors.append(floor_seconds(folder))
    out.update(
        floor_s=min(floors),
        floors=floors,
        n_candidates=q.n_candidates,
        capped=q.capped,
        picks_head=q.picks[:5].tolist(),
        seconds=q.seconds,
        peak_rss_mib=peak_rss_mib(),
    )
    return out


def in_memory_seconds(folder: Path) -> float:
    import ralif

    X = np.concatenate([np.load(p) for p in sorted(folder.glob("part-*.npy"))])
    y = np.load(folder / "labels.npy")
    t = time.perf_counter()
    ralif.select(X, y, BUDGET, l2=0.01, random_state=0)
    return time.perf_counter() - t


def passes_seconds(r: dict) -> float:
    return r["seconds"].get("pass 1", 0.0) + r["seconds"].get("pass 2", 0.0)


def stages(r: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in r["seconds"].items())


def run_child(folder: Path, dask_workers: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), "--workers", str(dask_workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"child failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k,100k")
    ap.add_argument("--folder", default="/tmp/ralif-stream")
    ap.add_argument("--dask-workers", default="", help="e.g. 1,2")
    ap.add_argument("--dask-size", default="1m")
    ap.add_argument("--in-memory", action="store_true", help="also time ralif.select in memory")
    ap.add_argument("--delete", action="store_true", help="delete each pool after its runs")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.workers)))
        return
    root = Path(args.folder)
    print(
        f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; d={D}, C={C}, "
        f"labeled={N_LABELED}, budget={BUDGET}, float32 .npy shards of {SHARD_ROWS} rows"
    )
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    dask_size = parse_size(args.dask_size)
    workers = [int(w) for w in args.dask_workers.split(",") if w.strip()]
    if workers and dask_size not in sizes:
        sizes.append(dask_size)
    print(
        "| N | on disk | write | floor | query | query/floor | passes/floor | per item "
        "| peak RSS | candidates | stages (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        folder = pool_folder(root, n)
        t = time.perf_counter()
        write_pool(folder, n)
        written = time.perf_counter() - t
        gb = sum(p.stat().st_size for p in folder.glob("part-*.npy")) / 1e9
        r = run_child(folder)
        passes = passes_seconds(r)
        print(
            f"| {n:,} | {gb:.2f} GB | {written:.0f} s | {r['floor_s']:.2f} s | "
            f"{r['query_s']:.2f} s | {r['query_s'] / r['floor_s']:.2f} | "
            f"{passes / r['floor_s']:.2f} | {r['query_s'] / n * 1e6:.2f} µs | "
            f"{r['peak_rss_mib']:.0f} MiB | "
            f"{r['n_candidates']:,}{' (capped)' if r['capped'] else ''} | {stages(r)} |",
            flush=True,
        )
        if args.in_memory:
            print(
                f"| in memory: ralif.select on the loaded array | {in_memory_seconds(folder):.2f} s |"
            )
        if n == dask_size and workers:
            for w in workers:
                d = run_child(folder, w)
                same = "same picks" if d["picks_head"] == r["picks_head"] else "PICKS DIFFER"
                dpass = passes_seconds(d)
                print(
                    f"| dask LocalCluster, {w} worker(s), N={n:,} | query {d['query_s']:.2f} s "
                    f"= {d['query_s'] / r['query_s']:.2f}x single process | passes "
                    f"{dpass:.2f} s = {dpass / passes:.2f}x single process | client peak RSS "
                    f"{d['peak_rss_mib']:.0f} MiB | {same} | {stages(d)} |",
                    flush=True,
                )
        if args.delete:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
