"""The labeling page's server: what it lets a client do, and what it refuses."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.test_session import Client, Running, make_session, serve_batch

pytest.importorskip("flask")
pytest.importorskip("waitress")


@pytest.fixture()
def session(tmp_path, blobs):
    store, y = make_session(tmp_path, blobs)
    yield store, y
    store.close()


@pytest.fixture()
def server(session):
    s, y = session
    running = serve_batch(s, y)
    yield s, Client(f"http://127.0.0.1:{running.port}", s.token)
    running.close()


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


# ------------------------------------------------------------------- what the server sends
def _get(c: Client, path: str, token: bool = True):
    sep = "&" if "?" in path else "?"
    url = c.base + path + (f"{sep}token={c.token}" if token else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_page_allows_no_inline_script(server):
    s, c = server
    s.db.execute(
        "INSERT INTO classes (id, name) VALUES (3, ?)", ('<img src=x onerror="alert(1)">',)
    )
    code, headers, body = _get(c, "/")
    assert code == 200
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    scripts = re.findall(rb"<script([^>]*)>(.*?)</script>", body, re.S)
    assert scripts and all(b"src=" in attrs and not inner.strip() for attrs, inner in scripts)


def test_page_script_never_writes_markup(server):
    _, c = server
    code, headers, body = _get(c, "/app.js", token=False)
    assert code == 200 and headers["Content-Type"].startswith("text/javascript")
    assert (
        b"innerHTML" not in body and b"outerHTML" not in body and b"insertAdjacentHTML" not in body
    )


@pytest.mark.parametrize("item", [3, 4], ids=["html", "svg"])
def test_active_item_files_are_not_served(server, item):
    _, c = server
    assert _get(c, f"/items/{item}")[0] == 404


def test_image_files_are_served_as_inert_images(server):
    _, c = server
    code, headers, body = _get(c, "/items/0")
    assert code == 200 and body.startswith(b"\x89PNG")
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Content-Disposition"] == 'inline; filename="item-0.png"'


# ------------------------------------------------------------------------- request bodies
def _raw(port: int, request: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_a_large_declared_body_is_refused_before_it_is_sent(server):
    _, c = server
    port = int(c.base.rsplit(":", 1)[1])
    head = (
        b"POST /api/label HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )
    start = time.monotonic()
    reply = _raw(port, head)  # not one byte of the body is sent
    assert reply.startswith(b"HTTP/1.1 413") and time.monotonic() - start < 5


def test_a_large_chunked_body_is_cut_off(server):
    _, c = server
    port = int(c.base.rsplit(":", 1)[1])
    chunk = b"[" * 20000
    request = (
        b"POST /api/label HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + f"X-Ralif-Token: {c.token}\r\n\r\n".encode()
        + f"{len(chunk):x}\r\n".encode()
        + chunk
        + b"\r\n"
    )
    assert _raw(port, request).startswith(b"HTTP/1.1 413")


# -------------------------------------------------------------------- malformed requests
def test_a_huge_item_number_is_a_400(server):
    _, c = server
    code, body = c.call("/api/label", {"item": 10**30, "label": 0})
    assert code == 400 and b"unknown item" in body


def test_a_huge_item_file_number_is_a_404(server):
    _, c = server
    assert _get(c, f"/items/{10**30}")[0] == 404


def test_deeply_nested_json_is_a_400(server):
    _, c = server
    req = urllib.request.Request(
        c.base + "/api/label", data=b"[" * 4000 + b"]" * 4000, method="POST"
    )
    req.add_header("X-Ralif-Token", c.token)
    req.add_header("Content-Type", "application/json")
    try:
        code = urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    assert code == 400 and b"not valid JSON" in body


def test_a_request_id_that_is_not_text_is_a_400(server):
    s, c = server
    item = s.current_batch()[1][0]
    code, body = c.call("/api/label", {"item": item, "label": 0, "request_id": 5})
    assert code == 400 and b"request_id" in body
    assert item not in s.current_labels()


def test_a_request_id_reused_for_another_label_is_refused(server):
    s, c = server
    a, b = s.current_batch()[1][:2]
    assert c.call("/api/label", {"item": a, "label": 0, "request_id": "r-1"})[0] == 200
    code, body = c.call("/api/label", {"item": b, "label": 1, "request_id": "r-1"})
    assert code == 400 and b"already used" in body
    assert b not in s.current_labels() and s.current_labels()[a] == (0, False)
