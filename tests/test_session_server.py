"""The labeling page's server: what it lets a client do, and what it refuses."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import threading
import urllib.error
import urllib.request

import pytest

from ralif.session import workflow as wf
from tests.conftest import require
from tests.test_session import (
    Client,
    Running,
    make_session,
    serve_batch,
    serve_until,
    start_serve,
    stop_serve,
    stop_serving,
)

require("flask")
require("waitress")


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


# ------------------------------------------------------------------------- who labels
def _undo(c: Client, who: str | None = None, **extra):
    body = {} if who is None else {"who": who}
    code, raw = c.call("/api/undo", {**body, **extra})
    return code, json.loads(raw)


def _whos(s, item: int) -> list[tuple]:
    return s.db.execute(
        "SELECT class_id, who, source FROM label_events WHERE item_id = ? ORDER BY id", (item,)
    ).fetchall()


def test_undo_takes_back_the_callers_own_label_not_another_labelers(server):
    s, c = server
    a, b = _batch(s)[:2]
    assert c.call("/api/label", {"item": a, "label": 0, "who": "ann-1"})[0] == 200
    assert c.call("/api/label", {"item": b, "label": 2, "who": "bob-2"})[0] == 200
    code, state = _undo(c, "ann-1")
    assert code == 200 and state["undone"]["item"] == a
    assert a not in s.current_labels() and s.current_labels()[b] == (2, False)
    code, state = _undo(c, "ann-1")  # ann has nothing left to take back; bob's label stays
    assert code == 200 and state["undone"] is None and s.current_labels()[b] == (2, False)


def test_undo_of_a_label_another_labeler_changed_since_keeps_the_later_label(server):
    s, c = server
    a = _batch(s)[0]
    c.call("/api/label", {"item": a, "label": 0, "who": "ann"})
    c.call("/api/label", {"item": a, "label": 1, "who": "bob"})
    code, state = _undo(c, "ann")
    assert code == 200 and (state["undone"]["item"], state["undone"]["label"]) == (a, 1)
    assert s.current_labels()[a] == (1, False)  # bob's label still stands
    _undo(c, "bob")  # ann's label was taken back: nothing is left under bob's
    assert a not in s.current_labels()


def test_an_anonymous_undo_takes_back_only_anonymous_labels(server):
    s, c = server
    a, b = _batch(s)[:2]
    c.call("/api/label", {"item": a, "label": 0})
    c.call("/api/label", {"item": b, "label": 1, "who": "bob"})
    _undo(c)
    assert a not in s.current_labels() and s.current_labels()[b] == (1, False)


def test_export_names_who_gave_each_label(server, tmp_path):
    s, c = server
    a, b = _batch(s)[:2]
    c.call("/api/label", {"item": a, "label": 0, "who": "ann"})
    c.call("/api/label", {"item": b, "label": 2, "who": "bob"})
    c.call("/api/label", {"item": b, "label": 1, "who": "ann"})
    _undo(c, "ann")  # b is bob's "bird" again, though ann took it back
    wf.export(s, tmp_path / "l.csv")
    rows = {int(r["item"]): r for r in csv.DictReader(open(tmp_path / "l.csv"))}
    assert (rows[a]["class_name"], rows[a]["who"]) == ("cat", "ann")
    assert (rows[b]["class_name"], rows[b]["who"]) == ("bird", "bob")


@pytest.mark.parametrize(
    "who",
    ["", " ", "a" * 65, "ann smith", "<script>", "é", "a\nb", 5, None, ["ann"], {"x": 1}, True],
    ids=repr,
)
def test_a_bad_labeler_id_is_refused_and_changes_nothing(server, who):
    s, c = server
    a = _batch(s)[0]
    c.call("/api/label", {"item": a, "label": 0, "who": "ann"})
    before = s.db.execute("SELECT * FROM label_events").fetchall()
    code, body = c.call("/api/label", {"item": a, "label": 1, "who": who})
    assert code == 400 and b"'who'" in body
    code, body = c.call("/api/undo", {"who": who})
    assert code == 400 and b"'who'" in body
    assert s.db.execute("SELECT * FROM label_events").fetchall() == before


def test_a_retried_undo_is_taken_back_once(server):
    s, c = server
    a, b = _batch(s)[:2]
    c.call("/api/label", {"item": a, "label": 0, "who": "ann"})
    c.call("/api/label", {"item": b, "label": 1, "who": "ann"})
    first = _undo(c, "ann", request_id="undo-1")
    again = _undo(c, "ann", request_id="undo-1")  # the answer was lost: sent again
    assert first[0] == again[0] == 200 and first[1]["undone"] == again[1]["undone"]
    assert s.current_labels()[a] == (0, False) and b not in s.current_labels()
    code, body = c.call("/api/undo", {"who": "bob", "request_id": "undo-1"})
    assert code == 400 and b"already used" in body
    code, body = c.call("/api/label", {"item": a, "label": 0, "who": "ann", "request_id": "undo-1"})
    assert code == 400 and b"already used" in body
    assert s.current_labels()[a] == (0, False)


def test_a_label_request_id_reused_by_another_labeler_is_refused(server):
    s, c = server
    a = _batch(s)[0]
    assert c.call("/api/label", {"item": a, "label": 0, "who": "ann", "request_id": "r"})[0] == 200
    code, body = c.call("/api/label", {"item": a, "label": 0, "who": "bob", "request_id": "r"})
    assert code == 400 and b"already used" in body
    assert _whos(s, a) == [(0, "ann", "web")]


def test_the_undo_answer_names_the_label_taken_back(server):
    s, c = server
    a = _batch(s)[0]
    c.call("/api/label", {"item": a, "label": 2, "who": "ann", "request_id": "lab-1"})
    code, state = _undo(c, "ann")
    assert code == 200 and state["undone"] == {"item": a, "label": None, "request_id": "lab-1"}


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


@pytest.mark.parametrize(
    "path, name, mimetype",
    [("/", "index.html", "text/html"), ("/app.js", "page.js", "text/javascript"),
     ("/app.css", "page.css", "text/css")],
)  # fmt: skip
def test_the_page_its_script_and_style_are_the_packages_files(server, path, name, mimetype):
    from importlib import resources

    _, c = server
    code, headers, body = _get(c, path)
    assert code == 200 and headers["Content-Type"] == f"{mimetype}; charset=utf-8"
    assert body == resources.files("ralif.session").joinpath("page", name).read_bytes()


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
# How long a raw request waits for the first bytes of the answer: a bound, never a measure.
REPLY_TIMEOUT = 10


def _raw(port: int, request: bytes, timeout: float = REPLY_TIMEOUT) -> bytes:
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
    # Not one byte of the body is sent, and the connection stays open: a server that
    # waited for the body would never answer (the wait ends at the timeout and fails).
    try:
        reply = _raw(port, head)
    except TimeoutError:
        pytest.fail(f"no answer within {REPLY_TIMEOUT} s: the server waits for the body")
    assert reply.startswith(b"HTTP/1.1 413")


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


# ------------------------------------------------------------------------- ralif serve
def _serve_and_fetch(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str, int]:
    """Run ``ralif serve`` in-process; while it serves, fetch the address it printed.

    Returns the exit code, everything printed (out, err) and the status of the fetch.
    """
    from ralif.cli import main
    from ralif.session import server as server_mod

    real = server_mod.make_server
    printed, status = [], []

    def serving(*args, **kwargs):
        srv = real(*args, **kwargs)

        def run() -> None:
            printed.append(capsys.readouterr())  # what was printed before serving began
            url = re.search(r"http://\S+", printed[0].out).group(0)
            stop = threading.Event()
            t = threading.Thread(target=serve_until, args=(srv, stop))
            t.start()
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    status.append(r.status)
            finally:
                stop_serving(srv, stop, t)

        srv.run = run
        return srv

    monkeypatch.setattr(server_mod, "make_server", serving)
    rc = main(["serve", *argv])
    rest = capsys.readouterr()
    out = (printed[0].out if printed else "") + rest.out
    err = (printed[0].err if printed else "") + rest.err
    return rc, out, err, status[0] if status else None


def test_an_ipv6_address_is_printed_in_brackets(session, monkeypatch, capsys):
    s, _ = session
    rc, out, _, status = _serve_and_fetch(
        monkeypatch, capsys, ["--db", str(s.path), "--host", "::1", "--port", "0"]
    )
    assert rc == 0 and status == 200
    assert re.search(r"http://\[::1\]:\d+/\?token=", out)


def test_serving_on_all_addresses_warns_the_page_is_reachable_from_the_network(
    session, monkeypatch, capsys
):
    s, _ = session
    rc, out, err, status = _serve_and_fetch(
        monkeypatch, capsys, ["--db", str(s.path), "--host", "0.0.0.0", "--port", "0"]
    )
    assert rc == 0 and status == 200
    assert "reachable from the network" in err
    assert re.search(r"http://127\.0\.0\.1:\d+/\?token=", out)


def test_serving_on_loopback_gives_no_network_warning(session, monkeypatch, capsys):
    s, _ = session
    rc, _, err, status = _serve_and_fetch(monkeypatch, capsys, ["--db", str(s.path), "--port", "0"])
    assert rc == 0 and status == 200 and "reachable from the network" not in err


def test_a_busy_port_is_one_line_and_shows_no_token(session, capsys):
    from ralif.cli import main

    s, _ = session
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        rc = main(["serve", "--db", str(s.path), "--port", str(taken.getsockname()[1])])
    out, err = capsys.readouterr()
    assert rc == 2 and "in use" in err and err.count("\n") == 1
    assert s.token not in out + err


def test_a_port_out_of_range_is_refused(capsys):
    from ralif.cli import make_parser

    with pytest.raises(SystemExit) as exit_:
        make_parser().parse_args(["serve", "--port", "99999"])
    assert exit_.value.code == 2 and "0 to 65535" in capsys.readouterr().err


def test_a_clean_stop_leaves_every_label_in_the_db_file(session, tmp_path):
    s, _ = session
    wf.next_batch(s, 30, "random")
    proc, c = start_serve(s.path, s.token)  # returns once the server listens
    try:
        for k, item in enumerate(s.current_batch()[1][:24]):  # the batch stays unfinished
            assert c.call("/api/label", {"item": item, "label": k % 3})[0] == 200
    finally:
        code = stop_serve(proc, signal.SIGTERM)  # killed if it is not done within the bound
    assert code == 0
    shutil.copy(s.path, tmp_path / "copy.db")  # the .db alone, as a careless copy would
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == 24
    copy.close()


def test_the_db_file_alone_is_complete_once_a_batch_is_done(server, tmp_path):
    s, c = server
    for k, item in enumerate(s.current_batch()[1]):
        assert c.call("/api/label", {"item": item, "label": k % 3})[0] == 200
    shutil.copy(s.path, tmp_path / "copy.db")
    copy = sqlite3.connect(tmp_path / "copy.db")
    n = copy.execute("SELECT COUNT(*) FROM label_events WHERE source = 'web'").fetchone()[0]
    copy.close()
    assert n == 12


def test_backup_copies_a_served_session_completely_and_privately(server, tmp_path, capsys):
    from ralif.cli import main

    s, c = server
    for item in s.current_batch()[1][:3]:
        assert c.call("/api/label", {"item": item, "label": 1})[0] == 200
    out = tmp_path / "backup.db"
    assert main(["session", "backup", "--db", str(s.path), "--out", str(out)]) == 0
    assert os.stat(out).st_mode & 0o777 == 0o600
    copy = sqlite3.connect(out)
    rows = copy.execute("SELECT item_id, class_id FROM label_events WHERE source='web'").fetchall()
    copy.close()
    assert sorted(rows) == sorted((i, 1) for i in s.current_batch()[1][:3])


def test_backup_never_overwrites(server, tmp_path, capsys):
    from ralif.cli import main

    s, _ = server
    out = tmp_path / "backup.db"
    out.write_text("keep me")
    assert main(["session", "backup", "--db", str(s.path), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"


# --------------------------------------------------------------------- what the page offers
def test_page_can_mark_an_item_unsure(server):
    s, c = server
    item = _batch(s)[0]
    code, body = c.call("/api/label", {"item": item, "unsure": True})
    state = json.loads(body)
    assert code == 200 and state["unsure"] == 1 and state["waiting"] == 11
    assert next(r["state"] for r in state["items"] if r["id"] == item) == "unsure"
    assert item not in s.current_labels()


def test_page_serves_every_open_batch(server):
    s, c = server
    first = _batch(s)
    _, second = wf.next_batch(s, 4, "random", force=True)
    state = json.loads(c.call("/api/state")[1])
    assert [r["id"] for r in state["items"]] == first + second
    assert c.call("/api/label", {"item": first[0], "label": 0})[0] == 200


def test_page_refuses_a_next_batch_while_one_is_open(server):
    s, c = server
    code, body = c.call("/api/next", {"budget": 5})
    assert code == 400 and b"still open" in body and len(s.rounds()) == 1


def test_page_picks_the_next_batch_as_session_next_does(server, tmp_path):
    s, c = server
    for k, item in enumerate(_batch(s)):
        c.call("/api/label", {"item": item, "label": k % 3})
    s.backup(tmp_path / "twin.db")  # the same session, for session next to pick from
    code, body = c.call("/api/next", {"budget": 5})
    assert code == 200
    from ralif.session import open_session

    with open_session(tmp_path / "twin.db") as twin:
        _, expected = wf.next_batch(twin, 5, "random")
        assert s.rounds()[-1]["params"] == twin.rounds()[-1]["params"]
    assert _batch(s) == expected
    assert [r["id"] for r in json.loads(body)["items"]] == expected


def test_page_reads_ralif_parameters_stored_under_their_former_names(server, tmp_path):
    s, c = server
    for k, item in enumerate(_batch(s)):
        c.call("/api/label", {"item": item, "label": k % 3})
    former = {"l2": 0.1, "candidate_fraction": None, "candidate_multiple": 3.0,
              "balanced_target": True, "diversity": False, "seed": 7, "budget": 12}  # fmt: skip
    with s.db:
        s.db.execute(
            "UPDATE rounds SET strategy = 'ralif', params = ? WHERE id = (SELECT MAX(id) FROM rounds)",
            (json.dumps(former),),
        )
    s.backup(tmp_path / "twin.db")
    code, body = c.call("/api/next", {"budget": 5})
    assert code == 200, body
    from ralif.session import open_session

    with open_session(tmp_path / "twin.db") as twin:
        _, expected = wf.next_batch(
            twin, 5, "ralif", l2=0.1, n_candidates=15, weighting="balanced", diversity="none"
        )
    assert _batch(s) == expected


def test_a_session_without_a_token_is_not_served(session):
    from ralif import RalifInputError
    from ralif.session.server import create_app

    s, _ = session
    s.db.execute("UPDATE meta SET value = '' WHERE key = 'token'")
    with pytest.raises(RalifInputError, match="token is missing"):
        create_app(s.path)


def test_the_page_cannot_be_framed_or_cached(server):
    _, c = server
    code, headers, _ = _get(c, "/")
    assert code == 200 and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"  # the address carries the token


def test_a_server_default_labeler_that_is_not_an_identity_is_refused_up_front(session):
    from ralif import RalifInputError
    from ralif.session.server import create_app

    s, _ = session
    with pytest.raises(RalifInputError, match="'who' must be 1 to 64"):
        create_app(s.path, who="ann smith")
    assert create_app(s.path, who="ann") is not None
