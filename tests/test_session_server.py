"""The labeling page's server: what it lets a client do, and what it refuses."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from ralif.session import workflow as wf
from tests.test_session import Client, Running, server, session  # noqa: F401

pytest.importorskip("flask")
pytest.importorskip("waitress")


def _batch(s) -> list[int]:
    return s.current_batch()[1]


def _events(s, item: int) -> list[tuple]:
    return s.db.execute(
        "SELECT class_id, source FROM label_events WHERE item_id = ? ORDER BY id", (item,)
    ).fetchall()


# ------------------------------------------------------------------------ what can be labeled
def test_page_refuses_an_item_outside_the_batch(server):
    s, c = server
    outside = next(i for i in range(100, 600) if i not in set(_batch(s)))
    code, body = c.call("/api/label", {"item": outside, "label": 0})
    assert code == 400 and b"not in a batch being labeled" in body
    assert _events(s, outside) == []


def test_page_never_relabels_a_held_out_item(server):
    s, c = server
    item = _batch(s)[0]
    s.import_labels([(item, 2)], who="qa", held_out=True)
    code, body = c.call("/api/label", {"item": item, "label": 0})
    assert code == 400 and b"held-out" in body
    assert s.current_labels()[item] == (2, True)


def test_page_labels_nothing_before_the_first_batch(session):
    s, _ = session
    running = Running(s.path)
    try:
        c = Client(f"http://127.0.0.1:{running.port}", s.token)
        code, body = c.call("/api/label", {"item": 5, "label": 0})
    finally:
        running.close()
    assert code == 400 and b"not in a batch being labeled" in body
    assert s.current_labels() == {}


# ---------------------------------------------------------------------------------- undo
def test_undo_of_a_correction_restores_the_original_label(server):
    s, c = server
    a, b = _batch(s)[:2]
    c.call("/api/label", {"item": a, "label": 0})
    c.call("/api/label", {"item": b, "label": 2})
    c.call("/api/label", {"item": a, "label": 1})  # a correction
    c.call("/api/undo", {})
    assert s.current_labels()[a] == (0, False) and s.current_labels()[b] == (2, False)


def test_repeated_undos_walk_back_one_event_at_a_time(server):
    s, c = server
    a, b = _batch(s)[:2]
    for item, label in ((a, 0), (b, 2), (a, 1)):
        c.call("/api/label", {"item": item, "label": label})
    seen = []
    for _ in range(4):  # one more than there is to undo
        c.call("/api/undo", {})
        labels = s.current_labels()
        seen.append((labels.get(a, (None,))[0], labels.get(b, (None,))[0]))
    assert seen == [(0, 2), (0, None), (None, None), (None, None)]


def test_concurrent_undos_each_take_back_a_different_label(server):
    s, c = server
    items = _batch(s)[:10]
    for k, i in enumerate(items):
        c.call("/api/label", {"item": i, "label": k % 3})
    barrier = threading.Barrier(5)
    codes: list[int] = []

    def undo() -> None:
        barrier.wait(timeout=10)
        codes.append(c.call("/api/undo", {})[0])

    threads = [threading.Thread(target=undo) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 5
    labels = s.current_labels()
    assert [i for i in items if i in labels] == items[:5]  # the five latest were taken back
    undone = [r[0] for r in s.db.execute("SELECT undoes FROM label_events WHERE source='undo'")]
    assert len(undone) == 5 and len(set(undone)) == 5
