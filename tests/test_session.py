"""Labeling sessions: the store, the workflow, the server, crashes and a real browser."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.session import create_session, open_session
from ralif.session import workflow as wf
from tests.conftest import missing, require

CLASSES = ["cat", "dog", "bird"]


def make_session(tmp_path, blobs):
    """A session over the blobs with a manifest: an image, a path escaping the folder, texts."""
    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (tmp_path / "imgs" / "page.html").write_text("<script>alert(1)</script>")
    (tmp_path / "imgs" / "pic.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "secret.txt").write_text("do not serve me")
    files = {0: "imgs/a.png", 1: "../secret.txt", 3: "imgs/page.html", 4: "imgs/pic.svg"}
    with open(tmp_path / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "text"])
        for i in range(len(X)):
            w.writerow([files.get(i, ""), f"item number {i}"])
    store = wf.init_session(tmp_path / "s.db", tmp_path / "X.npy", CLASSES, tmp_path / "items.csv")
    return store, y % 3


@pytest.fixture()
def session(tmp_path, blobs):
    store, y = make_session(tmp_path, blobs)
    yield store, y
    store.close()


def test_labels_keep_history_and_the_last_write_wins(session):
    s, _ = session
    s.add_label(5, "cat", who="ann")
    s.add_label(5, "dog", who="bob")
    s.add_label(6, 2)
    assert s.current_labels()[5] == (1, False)
    assert [h["class_id"] for h in s.history(5)] == [0, 1]
    s.add_label(5, None, who="ann", source="undo")
    assert 5 not in s.current_labels()
    assert len(s.history(5)) == 3


def test_unknown_item_or_class_is_refused(session):
    s, _ = session
    with pytest.raises(RalifInputError, match="unknown item 100000"):
        s.add_label(100000, "cat")
    with pytest.raises(RalifInputError, match="unknown class 'fish'"):
        s.add_label(3, "fish")
    with pytest.raises(RalifInputError, match="unknown class 7"):
        s.add_label(3, 7)
    assert s.current_labels() == {}


@pytest.mark.parametrize(
    "item", [10**30, -1, 3.5, True, "x"], ids=["huge", "negative", "float", "bool", "text"]
)
def test_an_item_that_is_not_an_item_number_is_refused(session, item):
    s, _ = session
    with pytest.raises(RalifInputError, match="unknown item"):
        s.add_label(item, "cat")
    assert s.current_labels() == {}


def test_import_is_all_or_nothing(session, tmp_path):
    s, _ = session
    (tmp_path / "bad.csv").write_text("item,label\n1,cat\n2,dog\n3,fish\n")
    with pytest.raises(RalifInputError, match="unknown class 'fish'"):
        wf.import_labels_csv(s, tmp_path / "bad.csv", who="x")
    assert s.current_labels() == {}
    (tmp_path / "good.csv").write_text("item,label\n1,cat\n2,1\n")
    assert wf.import_labels_csv(s, tmp_path / "good.csv", who="x") == 2
    assert s.current_labels() == {1: (0, False), 2: (1, False)}


def test_same_request_twice_is_recorded_once(session):
    s, _ = session
    a = s.add_label(4, "cat", request_id="r1")
    b = s.add_label(4, "cat", request_id="r1")
    assert b.duplicate and a.event_id == b.event_id and len(s.history(4)) == 1


def _label_first(s, y, n):
    s.import_labels([(i, int(y[i])) for i in range(n)], who="seed")


def test_next_refuses_a_strategy_that_learns_across_batches(session):
    s, y = session
    _label_first(s, y, 30)
    with pytest.raises(RalifInputError, match="albl learns from one batch to the next"):
        wf.next_batch(s, 10, "albl")
    assert s.current_batch() == (None, []) and wf.status(s)["rounds"] == 0


def test_next_records_the_batch_and_skips_held_out_and_pending(session):
    s, y = session
    _label_first(s, y, 30)
    s.import_labels([(i, int(y[i])) for i in range(30, 60)], who="qa", held_out=True)
    rid, picks = wf.next_batch(s, 10, "ralif", l2=0.1)
    assert s.current_batch() == (rid, picks)  # on disk before anyone sees it
    assert len(set(picks)) == 10 and all(i >= 60 for i in picks)
    _rid2, picks2 = wf.next_batch(s, 10, "random", force=True)
    assert not set(picks) & set(picks2)  # the first batch is still waiting for labels
    st = wf.status(s)
    assert (
        st["labeled"] == 30 and st["held_out"] == 30 and st["pending"] == 20 and st["rounds"] == 2
    )
    assert st["curve"] and 0 <= st["curve"][-1]["held_out_accuracy"] <= 1


def test_export_csv_and_parquet(session, tmp_path):
    s, y = session
    _label_first(s, y, 12)
    assert wf.export(s, tmp_path / "l.csv") == 12
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert rows[0]["class_name"] in CLASSES and int(rows[0]["item"]) == 0
    pq = require("pyarrow.parquet")
    wf.export(s, tmp_path / "l.parquet", "parquet")
    assert pq.read_table(tmp_path / "l.parquet").num_rows == 12


def test_corrupt_foreign_and_newer_databases_get_clear_errors(tmp_path, session):
    (tmp_path / "junk.db").write_bytes(os.urandom(4096))
    with pytest.raises(RalifInputError, match="not a ralif session database"):
        open_session(tmp_path / "junk.db")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(RalifInputError, match="SQLite file but not a ralif session"):
        open_session(tmp_path / "other.db")
    with pytest.raises(RalifInputError, match="not found"):
        open_session(tmp_path / "missing.db")
    s, _ = session
    s.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RalifInputError, match="newer ralif"):
        open_session(s.path)
    with pytest.raises(RalifInputError, match="already exists"):
        create_session(s.path, tmp_path / "X.npy", 3)


# ----------------------------------------------------------------------------- server
class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(
        self, path: str, body: dict | None = None, token: str | None = None, timeout: float = 10
    ):
        req = urllib.request.Request(self.base + path, method="POST" if body is not None else "GET")
        req.add_header("X-Ralif-Token", self.token if token is None else token)
        if body is not None:
            req.add_header("Content-Type", "application/json")
            req.data = json.dumps(body).encode()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def require_server() -> None:
    """The page's server needs flask and waitress (the store tests need neither)."""
    require("flask")
    require("waitress")


class Running:
    """A waitress server on a free loopback port, served from a thread until stopped.

    The thread waits on the server's sockets and its trigger, and looks at ``stop`` after
    each event; :meth:`close` sets ``stop`` and pulls the trigger, so the loop ends at once
    (not at the next poll), before the sockets close under it.
    """

    def __init__(self, db_path) -> None:
        require_server()
        from ralif.session.server import make_server

        self.srv = make_server(db_path, host="127.0.0.1", port=0, threads=8)
        self.port = self.srv.effective_port
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve_until, args=(self.srv, self.stop), daemon=True)
        self.thread.start()

    def close(self) -> None:
        stop_serving(self.srv, self.stop, self.thread)
        self.srv.task_dispatcher.shutdown()
        self.srv.close()


def serve_until(srv, stop: threading.Event) -> None:
    """Run a waitress server's loop until ``stop`` is set (and its trigger pulled)."""
    while not stop.is_set():
        srv.asyncore.loop(timeout=srv.adj.asyncore_loop_timeout, map=srv._map, count=1)


def stop_serving(srv, stop: threading.Event, thread: threading.Thread) -> None:
    """End :func:`serve_until` in ``thread``: the trigger wakes the loop, which sees ``stop``."""
    stop.set()
    srv.pull_trigger()
    thread.join()


def serve_batch(s, y):
    """Label 30 items, pick a batch of 12 and serve the session; returns the running server."""
    _label_first(s, y, 30)
    wf.next_batch(s, 12, "random")
    return Running(s.path)


@pytest.fixture()
def server(session):
    s, y = session
    running = serve_batch(s, y)
    yield s, Client(f"http://127.0.0.1:{running.port}", s.token)
    running.close()


def test_server_needs_the_token_and_refuses_bad_labels(server):
    s, c = server
    assert c.call("/api/state", token="wrong")[0] == 403
    assert c.call("/api/label", {"item": 3, "label": 0}, token="")[0] == 403
    _, items = s.current_batch()
    code, body = c.call("/api/label", {"item": 10**6, "label": 0})
    assert code == 400 and b"unknown item" in body
    code, body = c.call("/api/label", {"item": items[0], "label": "fish"})
    assert code == 400 and b"unknown class" in body
    code, body = c.call("/api/label", {"item": items[0], "label": "dog"})
    assert code == 200 and json.loads(body)["done"] == 1
    assert s.current_labels()[items[0]] == (1, False)


def test_item_files_cannot_escape_the_items_folder(server):
    _, c = server
    code, body = c.call("/items/0")
    assert code == 200 and body.startswith(b"\x89PNG")
    assert c.call("/items/1")[0] == 404  # ../secret.txt
    assert c.call("/items/2")[0] == 404  # no file


def test_undo_walks_back_the_labels_of_the_batch(server):
    s, c = server
    _, items = s.current_batch()
    for k, i in enumerate(items[:3]):
        c.call("/api/label", {"item": i, "label": k % 3})
    c.call("/api/undo", {})
    c.call("/api/undo", {})
    labels = s.current_labels()
    assert items[0] in labels and items[1] not in labels and items[2] not in labels


def test_two_clients_on_one_batch_lose_nothing(server):
    s, c = server
    _, items = s.current_batch()
    acked: list[tuple[int, int, str]] = []
    codes: list[int] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(60):
            item, label, rid = int(rng.choice(items)), int(rng.integers(3)), uuid.uuid4().hex
            code, _ = c.call(
                "/api/label", {"item": item, "label": label, "request_id": rid, "who": f"c{seed}"}
            )
            with lock:  # checked in the main thread, where a failure is reported
                codes.append(code)
                if code == 200:
                    acked.append((item, label, rid))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 120
    rows = s.db.execute(
        "SELECT request_id, item_id, class_id FROM label_events WHERE source='web'"
    ).fetchall()
    assert {r[0] for r in rows} == {a[2] for a in acked}  # every acknowledged label is there
    assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    last = {}
    for _rid, item, cls in s.db.execute(
        "SELECT request_id, item_id, class_id FROM label_events ORDER BY id"
    ):
        last[item] = cls
    assert {i: last[i] for i in items if i in last} == {
        i: s.current_labels()[i][0] for i in items if i in last
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _printed_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first line ``proc`` prints, or '' if it prints none within ``timeout`` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def start_serve(
    db_path, token: str, port: int | None = None, env: dict | None = None, timeout: float = 20
) -> tuple[subprocess.Popen, Client]:
    """``ralif serve`` in a process of its own on loopback, listening.

    Without ``port`` the server picks a free one itself (``--port 0``), so that no other
    process can take it in between. ``ralif serve`` prints its address only once it
    listens: that line is waited for (at most ``timeout`` seconds), not polled for; the
    process's standard output stays a pipe, closed by :func:`stop_serve`. The tests and
    the benchmarks start their servers here.
    """
    require_server()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ralif.cli", "serve", "--db", str(db_path),
         "--port", str(0 if port is None else port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip
    line = _printed_line(proc, timeout)
    found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=", line)
    if found is None:
        stop_serve(proc, signal.SIGKILL)
        raise RuntimeError(f"ralif serve --db {db_path} --port {port} did not listen: {line!r}")
    return proc, Client(f"http://127.0.0.1:{found.group(1)}", token)


def stop_serve(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Send ``sig`` to a server of :func:`start_serve`; its exit status once it has ended."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    finally:
        proc.kill()  # nothing if it has ended; a server that would not stop is ended here
        proc.wait()
        proc.stdout.close()


def kill_test_once(db_path, token: str, seed: int, timeout: float = 30) -> tuple[int, int]:
    """Label until SIGKILL at a random moment; returns (acknowledged, found after restart).

    The moment is drawn after the first label is acknowledged (waited for, at most
    ``timeout`` seconds), so that the kill always lands while labels are being written.
    """
    proc, c = start_serve(db_path, token)
    labels = np.random.default_rng(seed)  # the labeling thread's own: Generators are not shared
    moment = np.random.default_rng([seed, 1])
    acked = []
    labeling = threading.Event()
    stop = threading.Event()
    with open_session(db_path) as s:
        batch = s.round_items(s.served_rounds()[-1])

    def label() -> None:
        while not stop.is_set():
            rid = uuid.uuid4().hex
            try:
                code, _ = c.call(
                    "/api/label",
                    {
                        "item": int(labels.choice(batch)),
                        "label": int(labels.integers(3)),
                        "request_id": rid,
                    },
                    timeout=2,
                )
            except (OSError, http.client.HTTPException):  # the server died mid-answer
                return
            if code == 200:
                acked.append(rid)
                labeling.set()

    t = threading.Thread(target=label)
    t.start()
    labeling.wait(timeout)  # none acknowledged in time: the caller's acked > 0 fails
    time.sleep(moment.uniform(0.05, 0.5))
    stop_serve(proc, signal.SIGKILL)
    stop.set()
    t.join()
    with open_session(db_path) as s:
        found = {r[0] for r in s.db.execute("SELECT request_id FROM label_events")}
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return len(acked), len(set(acked) & found)


@pytest.mark.slow  # three server processes killed in turn; CI runs the slow tests as their own step
def test_sigkill_at_any_moment_loses_no_acknowledged_label(session):
    s, _ = session
    wf.next_batch(s, 50, "random")
    for seed in range(3):
        acked, found = kill_test_once(s.path, s.token, seed)
        assert acked > 0 and found == acked


def test_cli_session_commands_end_to_end(tmp_path, blobs, capsys):
    from ralif.cli import main

    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "l.csv").write_text(
        "item,label\n" + "".join(f"{i},{y[i] % 3}\n" for i in range(20))
    )
    run = [sys.executable, "-m", "ralif.cli", "session"]
    db = str(tmp_path / "s.db")
    # In-process (each a fresh parse of the command line); the process exit is checked below.
    for args in (
        ["init", "--features", str(tmp_path / "X.npy"), "--classes", "a,b,c", "--db", db],
        ["import-labels", str(tmp_path / "l.csv"), "--db", db],
        ["next", "--db", db, "--budget", "5", "--l2", "0.1"],
        ["status", "--db", db],
        ["export", "--db", db, "--out", str(tmp_path / "out.csv")],
    ):
        assert main(["session", *args]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["session", "status", "--db", db]) == 0
    status = capsys.readouterr().out
    assert "labeled 20" in status and "waiting in batches 5" in status and "rounds 1" in status
    (tmp_path / "junk.db").write_text("junk")
    r = subprocess.run(
        [*run, "status", "--db", str(tmp_path / "junk.db")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "not a ralif session database" in r.stderr


# ---------------------------------------------------------------------------- browser
# A name other than localhost over plain HTTP is not a secure context: the page must work
# there (crypto.randomUUID, for one, is missing). The browser resolves it to loopback.
INSECURE_HOST = "ralif-labeling.test"


@pytest.fixture(scope="module")
def browser():
    webdriver = require("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        missing(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"):  # fmt: skip
        opts.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=opts)
    yield chrome
    chrome.quit()


def _open_page(browser, c: Client, status: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = c.base.rsplit(":", 1)[1]
    browser.get(f"http://{INSECURE_HOST}:{port}/?token={c.token}")
    wait = WebDriverWait(browser, 15)
    wait.until(lambda d: status in d.find_element(By.ID, "status").text)
    return wait


def _status(text: str):
    from selenium.webdriver.common.by import By

    return lambda d: text in d.find_element(By.ID, "status").text


def test_real_browser_labels_with_clicks_and_keys_outside_a_secure_context(server, browser):
    from selenium.webdriver.common.by import By

    s, c = server
    _, items = s.current_batch()
    wait = _open_page(browser, c, "0 of 12")
    assert browser.execute_script("return window.isSecureContext") is False
    browser.find_elements(By.CSS_SELECTOR, "#classes button")[1].click()  # "dog"
    wait.until(_status("1 of 12"))
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("3")  # "bird"
    wait.until(_status("2 of 12"))
    body.send_keys("u")  # undo "bird"
    wait.until(_status("1 of 12"))
    body.send_keys("1")  # "cat" instead
    wait.until(_status("2 of 12"))
    labels = s.current_labels()
    assert labels[items[0]] == (1, False) and labels[items[1]] == (0, False)
    assert [h["class_id"] for h in s.history(items[1])] == [2, None, 0]


def test_real_browser_shows_a_class_name_with_markup_as_text(server, browser):
    from selenium.webdriver.common.by import By

    s, c = server
    evil = "<img src=x onerror=\"document.title='pwned'\">"
    s.db.execute("INSERT INTO classes (id, name) VALUES (3, ?)", (evil,))
    _open_page(browser, c, "0 of 12")
    buttons = browser.find_elements(By.CSS_SELECTOR, "#classes button")
    assert buttons[-1].text == f"4{evil}"  # the key, then the name as typed
    assert browser.find_elements(By.CSS_SELECTOR, "#classes img") == []
    assert browser.title == "ralif labeling"


def test_real_browser_jumps_back_to_an_item_from_the_list(server, browser):
    from selenium.webdriver.common.by import By

    s, c = server
    _, items = s.current_batch()
    wait = _open_page(browser, c, "0 of 12")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("2")  # the first item: "dog"
    wait.until(_status("1 of 12"))
    assert browser.find_element(By.ID, "last").text == f"item {items[0]}: dog"
    entries = browser.find_elements(By.CSS_SELECTOR, "#list button")
    assert [e.text for e in entries[:2]] == [f"{items[0]}: dog", f"{items[1]}: waiting"]
    entries[0].click()
    wait.until(lambda d: d.find_element(By.ID, "item").get_attribute("data-item") == str(items[0]))
    body.send_keys("3")  # a correction: "bird"
    wait.until(lambda d: d.find_element(By.ID, "last").text == f"item {items[0]}: bird")
    assert s.current_labels()[items[0]] == (2, False) and items[1] not in s.current_labels()


def test_real_browser_shows_the_item_an_undo_gave_back(server, browser):
    from selenium.webdriver.common.by import By

    s, c = server
    _, items = s.current_batch()
    wait = _open_page(browser, c, "0 of 12")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("2")  # items[0]: dog
    wait.until(_status("1 of 12"))
    browser.find_elements(By.CSS_SELECTOR, "#list button")[0].click()
    body.send_keys("3")  # corrected to bird; the page moves on to items[1]
    wait.until(lambda d: d.find_element(By.ID, "last").text == f"item {items[0]}: bird")
    body.send_keys("u")
    wait.until(lambda d: d.find_element(By.ID, "last").text.startswith("undone"))
    assert browser.find_element(By.ID, "item").get_attribute("data-item") == str(items[0])
    assert browser.find_element(By.ID, "last").text == f"undone: item {items[0]} is now dog"
    assert s.current_labels()[items[0]] == (1, False)


def _labeler_of(s, item: int) -> str:
    return s.db.execute(
        "SELECT who FROM label_events WHERE item_id = ? ORDER BY id DESC LIMIT 1", (item,)
    ).fetchone()[0]


def test_real_browser_keeps_its_labeler_across_reloads_and_undoes_only_its_own(server, browser):
    from selenium.webdriver.common.by import By

    s, c = server
    _, items = s.current_batch()
    wait = _open_page(browser, c, "0 of 12")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("2")  # items[0]: dog
    wait.until(_status("1 of 12"))
    ann = browser.execute_script("return localStorage.getItem('ralif-labeler')")
    assert re.fullmatch(r"web-[0-9a-f]{12}", ann) and _labeler_of(s, items[0]) == ann
    assert browser.find_element(By.ID, "labeler").text == f"You label as {ann}."
    wait = _open_page(browser, c, "1 of 12")  # a reload keeps the identity
    browser.find_element(By.TAG_NAME, "body").send_keys("3")  # items[1]: bird
    wait.until(_status("2 of 12"))
    assert _labeler_of(s, items[1]) == ann
    browser.execute_script("localStorage.clear()")  # another browser: another labeler
    wait = _open_page(browser, c, "2 of 12")
    browser.find_element(By.TAG_NAME, "body").send_keys("1")  # items[2]: cat
    wait.until(_status("3 of 12"))
    bob = browser.execute_script("return localStorage.getItem('ralif-labeler')")
    assert bob != ann and _labeler_of(s, items[2]) == bob
    browser.execute_script(f"localStorage.setItem('ralif-labeler', '{ann}')")
    wait = _open_page(browser, c, "3 of 12")
    browser.find_element(By.TAG_NAME, "body").send_keys("u")  # ann's undo: her bird, not bob's cat
    wait.until(_status("2 of 12"))
    labels = s.current_labels()
    assert items[1] not in labels and labels[items[2]] == (0, False)
    assert labels[items[0]] == (1, False)


def test_real_browser_shows_a_class_renamed_while_the_page_is_open(server, browser):
    from selenium.webdriver.common.by import By

    s, c = server
    _, items = s.current_batch()
    wait = _open_page(browser, c, "0 of 12")
    s.rename_class("dog", "hound")
    browser.find_elements(By.CSS_SELECTOR, "#classes button")[1].click()  # still reads "dog"
    wait.until(lambda d: "unknown class 'dog'" in d.find_element(By.ID, "error").text)
    buttons = lambda d: [b.text for b in d.find_elements(By.CSS_SELECTOR, "#classes button")]  # noqa: E731
    wait.until(lambda d: buttons(d) == ["1cat", "2hound", "3bird"])
    assert items[0] not in s.current_labels()  # refused, not taken for another class
    browser.find_elements(By.CSS_SELECTOR, "#classes button")[1].click()
    wait.until(_status("1 of 12"))
    assert s.current_labels()[items[0]] == (1, False)
    assert browser.find_element(By.ID, "last").text == f"item {items[0]}: hound"


# ------------------------------------------------------------------- concurrency and files
def test_two_next_at_once_never_record_the_same_items(session, monkeypatch):
    from ralif.session import store as store_mod
    from ralif.strategies import make_strategy

    s, y = session
    _label_first(s, y, 30)
    barrier = threading.Barrier(2)

    class BothPickingAtOnce:
        def __init__(self, inner) -> None:
            self.inner = inner

        def select(self, X, y, budget):
            barrier.wait(timeout=10)  # both have read the session before either records
            return self.inner.select(X, y, budget)

    monkeypatch.setattr(
        wf, "make_strategy", lambda name, **kw: BothPickingAtOnce(make_strategy(name, **kw))
    )
    results: list[object] = []

    def pick() -> None:
        with store_mod.open_session(s.path) as own:
            try:
                results.append(wf.next_batch(own, 10, "random", seed=0))
            except RalifInputError as exc:
                results.append(exc)

    threads = [threading.Thread(target=pick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorded = [set(s.round_items(r["id"])) for r in s.rounds()]
    assert len(recorded) == sum(isinstance(r, tuple) for r in results) >= 1
    assert sum(len(b) for b in recorded) == len(set().union(*recorded))  # disjoint
    refused = [r for r in results if not isinstance(r, tuple)]
    assert all("still open" in str(r) for r in refused)


def test_two_forced_next_at_once_record_disjoint_batches(session, monkeypatch):
    from ralif.session import store as store_mod
    from ralif.strategies import make_strategy

    s, y = session
    _label_first(s, y, 30)
    barrier = threading.Barrier(2)
    first_pick = threading.local()

    class BothPickingAtOnce:
        def __init__(self, inner) -> None:
            self.inner = inner

        def select(self, X, y, budget):
            if not getattr(first_pick, "done", False):  # the loser picks again, alone
                first_pick.done = True
                barrier.wait(timeout=10)
            return self.inner.select(X, y, budget)

    monkeypatch.setattr(
        wf, "make_strategy", lambda name, **kw: BothPickingAtOnce(make_strategy(name, **kw))
    )
    results: list[object] = []

    def pick() -> None:
        with store_mod.open_session(s.path) as own:
            results.append(wf.next_batch(own, 10, "random", seed=0, force=True))

    threads = [threading.Thread(target=pick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorded = [set(s.round_items(r["id"])) for r in s.rounds()]
    assert len(results) == 2 and len(recorded) == 2
    assert not recorded[0] & recorded[1]


def test_session_files_are_readable_by_the_owner_only(tmp_path, blobs):
    X, _ = blobs
    np.save(tmp_path / "X.npy", X)
    old = os.umask(0o022)
    try:
        s = wf.init_session(tmp_path / "s.db", tmp_path / "X.npy", CLASSES)
        s.add_label(1, "cat")  # the log and its index now exist
        modes = {p: os.stat(tmp_path / p).st_mode & 0o777 for p in ("s.db", "s.db-wal", "s.db-shm")}
        s.close()
    finally:
        os.umask(old)
    assert modes == {"s.db": 0o600, "s.db-wal": 0o600, "s.db-shm": 0o600}


def test_opening_an_older_world_readable_session_makes_it_owner_only(session):
    s, _ = session
    os.chmod(s.path, 0o644)
    open_session(s.path).close()
    assert os.stat(s.path).st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- damaged or unusable files
@pytest.mark.parametrize(
    "value", ["abc", "", "0", "-3", None], ids=["text", "empty", "zero", "negative", "missing"]
)
def test_a_bad_schema_version_is_reported_as_damage(session, value):
    s, _ = session
    if value is None:
        s.db.execute("DELETE FROM meta WHERE key = 'schema_version'")
    else:
        s.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (value,))
    with pytest.raises(RalifInputError, match="damaged ralif session database"):
        open_session(s.path)


def test_a_dropped_table_is_reported_as_damage(session):
    s, _ = session
    s.db.execute("DROP TABLE round_items")
    with pytest.raises(RalifInputError, match=r"missing table.*round_items"):
        open_session(s.path)


def test_corruption_in_a_later_page_is_found_when_opening(session):
    s, _ = session
    s.import_labels([(i, i % 3) for i in range(600)], who="x")
    s.checkpoint("TRUNCATE")
    s.close()
    size = os.path.getsize(s.path)
    assert size > 8 * 4096  # the damage below is well past the schema on the first page
    with open(s.path, "r+b") as fh:
        fh.seek(size - 3 * 4096)
        fh.write(b"\xff" * 4096)
    with pytest.raises(RalifInputError, match="damaged ralif session database"):
        open_session(s.path)


def _open_as_another_user(path) -> str:
    """The error of open_session(path) for a user who may read but not write the file."""
    if os.getuid() != 0:
        return _open_error(path)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # root writes anything: drop to nobody, in a child, to see what a user sees
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            message = _open_error(path)
        except BaseException as exc:
            message = f"child failed: {exc!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        message = fh.read().decode()
    os.waitpid(pid, 0)
    return message


def _open_error(path) -> str:
    try:
        open_session(path).close()
    except RalifInputError as exc:
        return str(exc)
    return "opened"


def test_a_read_only_database_is_reported_as_read_only(tmp_path, blobs):
    X, _ = blobs
    # Another user must reach the file: pytest's own folders are private to their owner.
    folder = Path(tempfile.mkdtemp(prefix="ralif-ro-")) if os.getuid() == 0 else tmp_path
    try:
        np.save(folder / "X.npy", X)
        wf.init_session(folder / "s.db", folder / "X.npy", CLASSES).close()
        os.chmod(folder / "s.db", 0o444)
        os.chmod(folder, 0o755)
        message = _open_as_another_user(folder / "s.db")
    finally:
        os.chmod(folder, 0o755)
        if folder != tmp_path:
            shutil.rmtree(folder)
    assert "is read-only" in message and "corrupt" not in message


# ---------------------------------------------------------------------------- open batches
def test_next_refuses_while_a_batch_is_open(session):
    s, y = session
    _label_first(s, y, 30)
    rid, _ = wf.next_batch(s, 5, "random")
    with pytest.raises(RalifInputError, match=f"batch {rid} \\(5 waiting\\) is still open"):
        wf.next_batch(s, 5, "random")
    assert len(s.rounds()) == 1


def test_a_forced_batch_is_served_beside_the_open_one(session):
    s, y = session
    _label_first(s, y, 30)
    _, first = wf.next_batch(s, 5, "random")
    _, second = wf.next_batch(s, 5, "random", force=True)
    assert not set(first) & set(second)
    assert s.served_items() == set(first) | set(second)


def test_status_names_the_open_batches(session, capsys):
    from ralif.cli import main

    s, y = session
    _label_first(s, y, 30)
    rid, items = wf.next_batch(s, 5, "random")
    s.add_label(items[0], 1)
    assert main(["session", "status", "--db", str(s.path)]) == 0
    assert f"open batch: round {rid}, 4 of 5 waiting" in capsys.readouterr().out


def test_closing_a_batch_returns_its_waiting_items_to_the_pool(session):
    s, y = session
    _label_first(s, y, 30)
    rid, items = wf.next_batch(s, 5, "random")
    s.add_label(items[0], 1)
    assert s.close_round(rid) == 4
    assert s.pending_items() == set() and s.open_rounds() == []
    wf.next_batch(s, 5, "random")  # no longer refused
    s.reopen_round(rid)
    assert set(items[1:]) <= s.pending_items()


def test_an_unknown_round_cannot_be_closed(session):
    s, _ = session
    with pytest.raises(RalifInputError, match="unknown round 7"):
        s.close_round(7)


def test_closing_a_closed_batch_is_refused(session, capsys):
    from ralif.cli import main

    s, y = session
    _label_first(s, y, 30)
    rid, _ = wf.next_batch(s, 5, "random")
    assert main(["session", "close", str(rid), "--db", str(s.path)]) == 0
    closed_at = s.rounds()[-1]["closed_at"]
    capsys.readouterr()
    assert main(["session", "close", str(rid), "--db", str(s.path)]) == 2
    err = capsys.readouterr().err
    assert f"round {rid} is already closed" in err and "Traceback" not in err
    assert s.rounds()[-1]["closed_at"] == closed_at
    assert main(["session", "close", "9", "--db", str(s.path)]) == 2
    assert "unknown round 9" in capsys.readouterr().err


def test_reopening_a_batch_that_is_not_closed_is_refused(session, capsys):
    from ralif.cli import main

    s, y = session
    _label_first(s, y, 30)
    rid, items = wf.next_batch(s, 5, "random")
    assert main(["session", "reopen", str(rid), "--db", str(s.path)]) == 2
    assert f"round {rid} is not closed" in capsys.readouterr().err
    s.close_round(rid)
    assert main(["session", "reopen", str(rid), "--db", str(s.path)]) == 0
    assert s.rounds()[-1]["closed_at"] is None and set(items) <= s.pending_items()
    with pytest.raises(RalifInputError, match="unknown round 8"):
        s.reopen_round(8)


def test_a_closed_batch_takes_no_page_label_and_no_page_undo(session):
    s, y = session
    _label_first(s, y, 30)
    rid, items = wf.next_batch(s, 5, "random")
    s.label_from_page(items[0], "dog", who="ann")
    s.close_round(rid)
    with pytest.raises(RalifInputError, match="not in a batch being labeled"):
        s.label_from_page(items[1], "cat", who="ann")
    assert s.undo_last("ann") is None
    assert s.current_labels()[items[0]] == (1, False) and items[1] not in s.current_labels()


# --------------------------------------------------------------------------------- classes
def test_a_session_needs_classes(tmp_path, blobs):
    X, _ = blobs
    np.save(tmp_path / "X.npy", X)
    with pytest.raises(RalifInputError, match="needs its classes"):
        wf.init_session(tmp_path / "s.db", tmp_path / "X.npy", [])
    assert not (tmp_path / "s.db").exists()


def test_add_class_makes_a_new_label_usable(session, capsys):
    from ralif.cli import main

    s, _ = session
    assert main(["session", "add-class", "fish", "--db", str(s.path)]) == 0
    s.add_label(3, "fish")
    assert s.classes() == [*CLASSES, "fish"] and s.current_labels()[3] == (3, False)


def test_a_number_as_class_name_must_name_its_own_position(session):
    s, _ = session
    with pytest.raises(RalifInputError, match="numbers name positions"):
        s.add_classes(["0"])
    assert s.add_classes(["3"]) == [*CLASSES, "3"]


def test_add_class_splits_a_comma_list_as_init_does(session, capsys):
    from ralif.cli import main

    s, _ = session
    assert main(["session", "add-class", "owl,cat2", "--db", str(s.path)]) == 0
    assert main(["session", "add-class", " emu , yak", "fox", "--db", str(s.path)]) == 0
    assert s.classes() == [*CLASSES, "owl", "cat2", "emu", "yak", "fox"]
    assert main(["session", "add-class", ",", "--db", str(s.path)]) == 2
    assert "no class names" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["owl,cat2", "owl,", ",owl"])
def test_a_comma_in_a_class_name_is_refused_everywhere(session, tmp_path, name):
    s, _ = session
    with pytest.raises(RalifInputError, match="comma"):
        s.add_classes([name])
    with pytest.raises(RalifInputError, match="comma"):
        s.rename_class("dog", name)
    with pytest.raises(RalifInputError, match="comma"):
        create_session(tmp_path / "new.db", tmp_path / "X.npy", 3, ["a", name])
    assert s.classes() == CLASSES and not (tmp_path / "new.db").exists()


def test_rename_class_keeps_every_label_and_shows_in_export_and_on_the_page(
    session, tmp_path, capsys
):
    from ralif.cli import main
    from ralif.session.server import page_state

    s, y = session
    _label_first(s, y, 30)
    _, items = wf.next_batch(s, 5, "random")
    s.label_from_page(items[0], "dog", who="ann")
    before = s.current_labels()
    assert main(["session", "rename-class", "dog", "hound", "--db", str(s.path)]) == 0
    assert "cat, hound, bird" in capsys.readouterr().out
    assert s.classes() == ["cat", "hound", "bird"] and s.current_labels() == before
    wf.export(s, tmp_path / "l.csv")
    names = {int(r["item"]): r["class_name"] for r in csv.DictReader(open(tmp_path / "l.csv"))}
    assert {i for i, n in names.items() if n == "hound"} == {
        i for i, (c, _) in before.items() if c == 1
    }
    assert "dog" not in names.values()
    state = page_state(s, None)
    assert state["classes"] == ["cat", "hound", "bird"]
    row = next(r for r in state["items"] if r["id"] == items[0])
    assert state["classes"][row["label"]] == "hound"
    s.add_label(3, "hound")  # the new name labels; the old one no longer does
    with pytest.raises(RalifInputError, match="unknown class 'dog'"):
        s.add_label(3, "dog")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("fish", "owl", "unknown class 'fish'"),
        ("dog", "cat", "already has a class cat"),
        ("dog", "dog", "already called dog"),
        ("dog", "", "non-empty"),
        ("dog", "2", "numbers name positions"),
        ("dog", "x" * 101, "at most 100"),
    ],
)
def test_rename_class_refuses_what_would_be_ambiguous(session, capsys, old, new, message):
    from ralif.cli import main

    s, _ = session
    s.add_label(4, "dog")
    assert main(["session", "rename-class", old, new, "--db", str(s.path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert s.classes() == CLASSES and s.current_labels() == {4: (1, False)}


def test_a_class_renamed_by_its_number_and_a_number_name_at_its_own_position(session):
    s, _ = session
    assert s.rename_class("1", "1") == ["cat", "1", "bird"]
    assert s.rename_class(1, "hound") == ["cat", "hound", "bird"]


def test_remove_class_removes_a_class_never_given(session, capsys):
    from ralif.cli import main

    s, _ = session
    s.add_classes(["owlcat2", "fish"])  # a mistake, then a real class
    s.add_label(3, "fish")
    s.add_label(6, "bird")
    assert main(["session", "remove-class", "owlcat2", "--db", str(s.path)]) == 0
    assert "cat, dog, bird, fish" in capsys.readouterr().out
    assert s.classes() == [*CLASSES, "fish"]
    assert s.current_labels() == {3: (3, False), 6: (2, False)}  # fish is still fish
    assert [h["class_id"] for h in s.history(3)] == [3]
    assert s.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_remove_class_refuses_a_class_labels_have_used(session, capsys):
    from ralif.cli import main

    s, _ = session
    s.add_label(5, "bird")
    s.add_label(6, "bird")
    s.add_label(6, "cat")  # relabeled: bird stays in item 6's history
    before = s.db.execute("SELECT * FROM label_events").fetchall()
    assert main(["session", "remove-class", "bird", "--db", str(s.path)]) == 2
    err = capsys.readouterr().err
    assert "1 item has it now" in err and "2 labels in all" in err and "rename-class" in err
    s.add_label(5, "dog")  # no item has it now; the history still names it
    assert main(["session", "remove-class", "bird", "--db", str(s.path)]) == 2
    assert "no item has it now" in capsys.readouterr().err
    assert s.classes() == CLASSES
    assert s.db.execute("SELECT * FROM label_events").fetchall()[: len(before)] == before


def test_remove_class_refuses_to_move_a_number_name_off_its_position(session):
    s, _ = session
    s.add_classes(["owl", "4"])
    with pytest.raises(RalifInputError, match="'4' would move to position 3"):
        s.remove_class("owl")
    with pytest.raises(RalifInputError, match="unknown class 'emu'"):
        s.remove_class("emu")
    assert s.classes() == [*CLASSES, "owl", "4"]
    assert s.remove_class("4") == [*CLASSES, "owl"]


# ------------------------------------------------------------------ what the labeler sees
def test_next_prints_the_items_texts_and_how_to_label_them(session, capsys):
    from ralif.cli import main

    s, y = session
    _label_first(s, y, 30)
    assert (
        main(["session", "next", "--db", str(s.path), "--budget", "3", "--strategy", "random"]) == 0
    )
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["text"] for r in rows] == [f"item number {r['item']}" for r in rows]
    assert [int(r["item"]) for r in rows] == s.current_batch()[1]
    assert f"ralif serve --db {s.path}" in err


def test_export_can_include_each_items_path_and_text(session, tmp_path):
    s, _ = session
    s.import_labels([(0, 0), (5, 2)], who="x")
    assert wf.export(s, tmp_path / "l.csv", with_items=True) == 2
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert [(r["item"], r["path"], r["text"]) for r in rows] == [
        ("0", "imgs/a.png", "item number 0"),
        ("5", "", "item number 5"),
    ]


def test_unsure_items_wait_no_longer_and_are_left_out_of_later_batches(session):
    s, y = session
    _label_first(s, y, 30)
    _, items = wf.next_batch(s, 5, "random")
    for i in items[:4]:
        s.add_label(i, 0)
    s.label_from_page(items[4], None, who="ann", unsure=True)
    assert s.open_rounds() == [] and s.unsure_items() == {items[4]}
    assert items[4] not in s.current_labels()
    _, later = wf.next_batch(s, 500, "random")
    assert items[4] not in later


def test_a_session_from_the_first_schema_is_migrated_with_its_labels(tmp_path):
    from ralif.session.store import MIGRATIONS, SCHEMA_VERSION

    db = sqlite3.connect(tmp_path / "v1.db")
    db.executescript(MIGRATIONS[0])
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("app", "ralif-session"), ("schema_version", "1"), ("token", "t" * 32)],
    )
    db.executemany("INSERT INTO classes VALUES (?, ?)", [(0, "a"), (1, "b")])
    db.executemany("INSERT INTO items (id) VALUES (?)", [(i,) for i in range(5)])
    db.execute(
        "INSERT INTO label_events (item_id, class_id, who, at, source) "
        "VALUES (3, 1, 'ann', '2026-01-01T00:00:00', 'web')"
    )
    db.commit()
    db.close()
    with open_session(tmp_path / "v1.db") as s:
        assert s.meta("schema_version") == str(SCHEMA_VERSION)
        assert s.current_labels() == {3: (1, False)} and s.unsure_items() == set()
        assert s.rounds() == []


def test_real_browser_moves_focus_off_the_button_after_a_label(server, browser):
    from selenium.webdriver.common.by import By

    _, c = server
    wait = _open_page(browser, c, "0 of 12")
    for button in (
        browser.find_elements(By.CSS_SELECTOR, "#classes button")[1],
        browser.find_element(By.ID, "unsure"),
    ):
        button.click()
        # No button keeps the focus ring: it would look like an answer chosen in advance.
        wait.until(lambda d: d.switch_to.active_element.get_attribute("id") == "item")
        assert browser.switch_to.active_element.tag_name != "button"
        browser.execute_script("arguments[0].focus()", button)  # as a click leaves it


def test_status_says_when_each_stopping_rule_would_have_stopped(tmp_path, blobs, capsys):
    from ralif.cli import main
    from ralif.session import workflow as wf
    from ralif.session.store import open_session
    from ralif.stopping import RULES

    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    db = str(tmp_path / "s.db")
    assert main(["session", "init", "--features", str(tmp_path / "X.npy"), "--classes",
                 "a,b,c,d", "--db", db]) == 0  # fmt: skip
    with open_session(db) as s:
        for i in range(30):
            s.add_label(i, int(y[i]), who="me")
        for _ in range(4):  # four rounds, each labeled in full
            _, items = wf.next_batch(s, 10, "random", seed=1)
            for i in items:
                s.add_label(i, int(y[i]), who="me")
        st = wf.status(s)
    assert set(st["stopping"]) == set(RULES)
    assert st["curve"] == []  # no held-out labels: no accuracy, but the signals are there
    capsys.readouterr()
    assert main(["session", "status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "stopping rules" in out
    for name in RULES:
        assert re.search(
            rf"  {name} +(would have stopped at round \S+ \(\d+ labels\)|not yet)", out
        )
