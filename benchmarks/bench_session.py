"""Label throughput and latency of ``ralif serve``, and the kill test repeated.

Run:  .venv/bin/python benchmarks/bench_session.py [--clients 4] [--seconds 10] [--kills 30]

Loopback only: the server runs here (waitress, 8 threads) on 127.0.0.1; clients are
threads posting labels for the items of the open batch, each request bounded by a timeout and the
whole load by --seconds. Then the kill test: the server is SIGKILLed at a random moment
while a client labels, restarted, and every acknowledged label is looked for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_session import kill_test_once, start_serve

from ralif.session import open_session
from ralif.session import workflow as wf


def make_session(folder: Path, seed: int = 0):
    """2000 items of 16 features, classes a, b, c, 30 labeled, and an open batch of 200."""
    rng = np.random.default_rng(seed)
    np.save(folder / "X.npy", rng.normal(size=(2000, 16)))
    s = wf.init_session(folder / "s.db", folder / "X.npy", ["a", "b", "c"])
    s.import_labels([(i, i % 3) for i in range(30)], who="seed")
    wf.next_batch(s, 200, "random", seed=seed)
    return s


def load_test(db: Path, token: str, clients: int, seconds: float) -> dict:
    with open_session(db) as s:
        batch = s.current_batch()[1]  # the page labels only the items of the open batches
    proc, c = start_serve(db, token)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def worker(k: int) -> None:
        rng = np.random.default_rng(k)
        items = batch
        while time.perf_counter() < end:
            body = {
                "item": int(rng.choice(items)),
                "label": int(rng.integers(3)),
                "request_id": uuid.uuid4().hex,
            }
            t = time.perf_counter()
            code, _ = c.call("/api/label", body, timeout=5)
            dt = time.perf_counter() - t
            with lock:
                if code == 200:
                    latencies.append(dt)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    proc.terminate()
    proc.wait()
    lat = np.array(latencies) * 1000
    return {
        "labels": len(lat), "errors": errors[0], "per_second": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--kills", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s = make_session(folder)
        token, db = s.token, s.path
        s.close()
        for clients in sorted({1, args.clients}):
            r = load_test(db, token, clients, args.seconds)
            print(f"load, {clients} client(s), {args.seconds:g} s: {r['labels']} labels, {r['per_second']:.0f} labels/s, "
                  f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, errors {r['errors']}",
                  flush=True)  # fmt: skip
        totals = [kill_test_once(db, token, seed) for seed in range(args.kills)]
        acked = sum(a for a, _ in totals)
        found = sum(f for _, f in totals)
        lost = sum(a - f for a, f in totals)
        print(
            f"kill test: {args.kills} SIGKILLs at random moments; labels acknowledged {acked}, found after restart "
            f"{found}, lost {lost}; per kill acknowledged median {statistics.median(a for a, _ in totals):.0f}"
        )


if __name__ == "__main__":
    main()
