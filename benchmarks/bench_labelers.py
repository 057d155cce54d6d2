"""Eight labelers at once through ``ralif serve``, with undo, while the server is SIGKILLed.

Run:  .venv/bin/python benchmarks/bench_labelers.py [--clients 8] [--seconds 60] [--seed 0] [--quiet]

Each client is a thread with a labeler identity of its own (``bench-K``), labeling random
items of one open batch of 200 (so the clients often label the same items) and, with
probability --undo, undoing instead: an undo must take back that client's own latest
label still standing, never another client's. Meanwhile the server process is SIGKILLed
at random intervals (--kill-every) and restarted on the same port. Every label and undo
carries a request id, and a client sends the same request again after a connection error
or a busy answer until it gets a definite one, so retries are safe.

At the end the database is checked: every acknowledged label is there under its
labeler; the labels still standing for each client are exactly those it was told were
given and not undone (none lost, none extra); every undo took back its own labeler's
label (the client's own bookkeeping and the database's agree: 0 misattributed); and each
item's label is its latest standing label. Throughput counts acknowledged labels over
the whole run, restarts included; latency is per label, from its first send to its
acknowledgement, retries included.

Threads: the server is one ``ralif serve`` process (waitress, 8 threads; BLAS and OpenMP
limited to 1 thread); the clients are --clients threads in this process, one HTTP
connection per request. Seeded: the session, the batch, each client's choices and the
kill intervals follow --seed (the timing, and so the interleaving, does not).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_session import Client, _free_port, start_serve

from bench_session import make_session
from ralif.session import open_session

CLASSES = ("a", "b", "c")
# A label still standing: not an undo, and not taken back by one.
STANDING = (
    "{e}.undoes IS NULL AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = {e}.id)"
)
RETRY_PAUSE = 0.05  # seconds between tries of one request while the server is down


@dataclass
class Labeler:
    """One client's own account of what the server acknowledged."""

    who: str
    standing: list[tuple[str, int, int]] = field(default_factory=list)  # (request id, item, class)
    acked: list[tuple[str, int, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    undos: int = 0
    undos_empty: int = 0  # an undo answered "nothing to undo" while the client had labels
    misattributed: int = 0  # an undo took back another label than this client's latest
    refused: int = 0  # a 4xx: none expected
    retries: int = 0
    unresolved: int = 0  # no definite answer before the hard deadline


def call_until_answered(
    c: Client, path: str, body: dict, me: Labeler, hard_deadline: float
) -> tuple[int, dict] | None:
    """Send one request until a definite answer (2xx or 4xx); the same body, so the same id."""
    while time.monotonic() < hard_deadline:
        try:
            code, raw = c.call(path, body, timeout=5)
        except (OSError, http.client.HTTPException):  # refused, reset, cut off mid-answer
            code, raw = None, b""
        if code is not None and code != 503:
            return code, (json.loads(raw) if raw else {})
        me.retries += 1
        time.sleep(RETRY_PAUSE)
    me.unresolved += 1
    return None


def client(
    k: int, batch: list[int], c: Client, args: argparse.Namespace, end: float, hard_deadline: float
) -> Labeler:
    me = Labeler(f"bench-{k}")
    rng = np.random.default_rng([args.seed, k])
    n = 0
    while time.monotonic() < end:
        n += 1
        if me.standing and rng.random() < args.undo:
            body = {"who": me.who, "request_id": f"{me.who}-u{n}"}
            answer = call_until_answered(c, "/api/undo", body, me, hard_deadline)
            if answer is None:
                break
            code, state = answer
            if code != 200:
                me.refused += 1
                continue
            me.undos += 1
            undone = state.get("undone")
            expected = me.standing.pop()
            if undone is None:
                me.undos_empty += 1
            elif undone["request_id"] != expected[0]:
                me.misattributed += 1
            continue
        item, cls = int(rng.choice(batch)), int(rng.integers(len(CLASSES)))
        rid = f"{me.who}-{n}"
        body = {"item": item, "label": CLASSES[cls], "who": me.who, "request_id": rid}
        t = time.perf_counter()
        answer = call_until_answered(c, "/api/label", body, me, hard_deadline)
        if answer is None:
            break
        if answer[0] != 200:
            me.refused += 1
            continue
        me.latencies.append(time.perf_counter() - t)
        me.standing.append((rid, item, cls))
        me.acked.append((rid, item, cls))
    return me


def check_store(db: Path, labelers: list[Labeler]) -> dict:
    """What the database says against what the clients were told."""
    with open_session(db) as s:
        rows = s.db.execute(
            "SELECT request_id, item_id, class_id, who FROM label_events"
        ).fetchall()
        events = {r[0]: r[1:] for r in rows}
        standing = s.db.execute(
            "SELECT request_id, item_id, class_id, who FROM label_events e "
            "WHERE e.source = 'web' AND " + STANDING.format(e="e")
        ).fetchall()
        undo_wrong = s.db.execute(
            "SELECT COUNT(*) FROM label_events u JOIN label_events t ON t.id = u.undoes "
            "WHERE u.source = 'undo' AND t.who != u.who"
        ).fetchone()[0]
        undo_events = s.db.execute(
            "SELECT COUNT(*) FROM label_events WHERE source = 'undo'"
        ).fetchone()[0]
        # Each item's label (its latest event) is its latest standing label.
        inconsistent = s.db.execute(
            "SELECT COUNT(*) FROM label_events e WHERE e.id = "
            "(SELECT MAX(id) FROM label_events WHERE item_id = e.item_id) AND "
            "COALESCE(e.class_id, -1) != COALESCE((SELECT s.class_id FROM label_events s "
            "WHERE s.item_id = e.item_id AND " + STANDING.format(e="s") + " "
            "ORDER BY s.id DESC LIMIT 1), -1)"
        ).fetchone()[0]
        integrity = s.db.execute("PRAGMA integrity_check").fetchone()[0]
    by_who: dict[str, set] = {}
    for rid, item, cls, who in standing:
        by_who.setdefault(who, set()).add((rid, item, cls))
    lost = extra = 0
    for me in labelers:
        for rid, item, cls in me.acked:  # acknowledged, so recorded as sent, under its labeler
            if events.get(rid) != (item, cls, me.who):
                lost += 1
        expected = set(me.standing)
        found = by_who.get(me.who, set())
        lost += len(expected - found)
        extra += len(found - expected)
    ours = {me.who for me in labelers}
    wrong_labeler = sum(len(found) for who, found in by_who.items() if who not in ours)
    return {
        "lost": lost,
        "extra": extra,
        "wrong_labeler": wrong_labeler,
        "undo_events": undo_events,
        "undo_misattributed_db": undo_wrong,
        "inconsistent_items": inconsistent,
        "integrity": integrity,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the clients label")
    ap.add_argument("--undo", type=float, default=0.2, help="chance that an action is an undo")
    ap.add_argument(
        "--kill-every", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"),
        help="seconds between SIGKILLs, uniform in [MIN, MAX] (default 1 4)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="print only the results")
    args = ap.parse_args()
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    with tempfile.TemporaryDirectory() as tmp:
        s = make_session(Path(tmp), seed=args.seed)  # 2000 items; a batch of 200 is open
        token, db, batch = s.token, s.path, s.current_batch()[1]
        s.close()
        port = _free_port()
        proc, c = start_serve(db, token, port=port, env=env)
        say(
            f"threads: server 1 process (waitress 8 threads, BLAS/OpenMP 1); clients {args.clients} threads"
        )
        rng = np.random.default_rng(args.seed)
        t0 = time.monotonic()
        end = t0 + args.seconds
        hard_deadline = end + 60
        results: list[Labeler | None] = [None] * args.clients

        def run(k: int) -> None:
            results[k] = client(k, batch, c, args, end, hard_deadline)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        kills, down = 0, 0.0
        while True:
            pause = rng.uniform(*args.kill_every)
            if time.monotonic() + pause >= end:
                break
            time.sleep(pause)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            t_down = time.monotonic()
            proc, _ = start_serve(db, token, port=port, env=env)
            down += time.monotonic() - t_down
            kills += 1
            say(
                f"  SIGKILL {kills} at {t_down - t0:5.1f} s, serving again after {time.monotonic() - t_down:.2f} s"
            )
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        labelers = [r for r in results if r is not None]
        check = check_store(db, labelers)
    lat = np.array([x for me in labelers for x in me.latencies]) * 1000
    labels = len(lat)
    undos = sum(me.undos for me in labelers)
    client_misattributed = sum(me.misattributed + me.undos_empty for me in labelers)
    print(
        f"{args.clients} labelers, {wall:.0f} s, {kills} SIGKILLs (down {down:.1f} s in all): "
        f"{labels} labels acknowledged ({labels / wall:.0f} labels/s), {undos} undos "
        f"({undos / wall:.1f}/s), {sum(me.retries for me in labelers)} retries"
    )
    print(
        f"latency per label (first send to acknowledgement, retries included): "
        f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.0f} ms"
    )
    print(
        f"check: lost {check['lost']}, extra {check['extra']}, under a wrong labeler "
        f"{check['wrong_labeler']}; undos misattributed {client_misattributed} (as answered), "
        f"{check['undo_misattributed_db']} of {check['undo_events']} (in the database); items "
        f"whose label is not their latest standing one {check['inconsistent_items']}; refused "
        f"{sum(me.refused for me in labelers)}, unresolved {sum(me.unresolved for me in labelers)}; "
        f"integrity {check['integrity']}"
    )  # fmt: skip
    bad = (
        check["lost"] + check["extra"] + check["wrong_labeler"] + check["undo_misattributed_db"]
        + check["inconsistent_items"] + client_misattributed
        + sum(me.refused + me.unresolved for me in labelers)
    )  # fmt: skip
    return 1 if bad or check["integrity"] != "ok" or undos != check["undo_events"] else 0


if __name__ == "__main__":
    sys.exit(main())
