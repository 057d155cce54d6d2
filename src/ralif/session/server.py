"""``ralif serve``: a local page for labeling the open batches, one item at a time.

Flask app served by waitress. Every label is committed to the session database before
the page is told it succeeded. Every request but the page's static script and style
needs the session's secret token, checked before the body is read; bodies are capped at
a few kilobytes. The page labels only items of the batches it serves, never a held-out
item. It shows data as text only, under a Content-Security-Policy that allows no inline
script; item files are served only from inside the items folder, and only as the image
types the page shows. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hmac
import ipaddress
import json
import os
import signal
import sqlite3
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ralif._validation import RalifInputError
from ralif.session.store import SessionStore, check_labeler, open_session
from ralif.strategies import RALIF, strategy_class
from ralif.strategies.ralif import upgrade_params

if TYPE_CHECKING:
    from flask import Flask, Request
    from waitress.server import BaseWSGIServer, MultiSocketServer

# A label is a few dozen bytes; nothing the page sends comes near this.
MAX_BODY = 8 * 1024
# The only item files served: images the page shows in an <img>, none that can run script.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
PUBLIC_PATHS = ("/app.js", "/app.css")
MIN_TOKEN = 16

# The page's files are package data (ralif/session/page/), read once and then served from
# memory: path -> (file, content type). Everything the page shows from the session goes
# through textContent in page.js: a class name or a text is data, never markup.
PAGE_FILES = {
    "/": ("index.html", "text/html"),
    "/app.js": ("page.js", "text/javascript"),
    "/app.css": ("page.css", "text/css"),
}


@functools.cache
def page_file(name: str) -> str:
    """The text of one of the page's files, read from the installed package once.

    Parameters
    ----------
    name : str
        A file of ``ralif/session/page/``: ``index.html``, ``page.js`` or ``page.css``.

    Returns
    -------
    str
    """
    return resources.files("ralif.session").joinpath("page", name).read_text(encoding="utf-8")


def safe_item_path(root: Path | None, relative: str | None) -> Path | None:
    """The item's file inside ``root``, or None if it would escape it (or is missing)."""
    if root is None or not relative:
        return None
    try:
        root = root.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
    except (OSError, ValueError):
        return None
    return target


def image_type(target: Path | None) -> str | None:
    """The MIME type the page may show ``target`` as, or None if it is not an allowed image."""
    return None if target is None else IMAGE_TYPES.get(target.suffix.lower())


def _json_body() -> dict:
    from flask import abort, request

    if (request.content_length or 0) > MAX_BODY:
        abort(413)
    data = request.get_data(cache=False)
    if len(data) > MAX_BODY:
        abort(413)
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise RalifInputError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RalifInputError("the request body must be a JSON object")
    return body


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RalifInputError(f"{what} must be a positive whole number, got {value!r:.40}")
    return value


def _open_probe(db_path: str | os.PathLike) -> tuple[str, Path | None]:
    """The session's token and items folder, refusing a session without a real token."""
    with open_session(db_path) as probe:
        token = probe.token
        root = probe.items_root
    if len(token) < MIN_TOKEN:
        # An empty token would compare equal to a request without one: refuse to serve.
        raise RalifInputError(
            f"{db_path} is a damaged ralif session database (its secret token is missing)"
        )
    return token, root


class _Session:
    """What every route needs: the database, its token and items folder, the labeler."""

    def __init__(self, db_path: str | os.PathLike, who: str) -> None:
        self.db_path, self.who = db_path, who
        self.token, self.root = _open_probe(db_path)
        self._local = threading.local()

    def store(self) -> SessionStore:
        # One connection per server thread: SQLite connections are not shared.
        if getattr(self._local, "store", None) is None:
            self._local.store = open_session(self.db_path, check=False)
        return self._local.store

    def authorized(self, request: Request) -> bool:
        given = request.headers.get("X-Ralif-Token") or request.args.get("token") or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def state(self) -> dict:
        return page_state(self.store(), self.root)


def page_state(s: SessionStore, root: Path | None) -> dict:
    """What the page shows: the served batches' items with their state, and the classes."""
    with s.reading():
        served = s.served_rounds()
        batch = [(rid, i) for rid in served for i in s.round_items(rid)]
        latest = {
            int(i): (c, bool(h), bool(u)) for i, c, h, u in s.latest_events([i for _, i in batch])
        }
        classes = s.classes()
        rounds = s.rounds()
        entries = {i: s.item(i) for _, i in batch}
    rows, seen = [], set()
    for rid, i in batch:
        if i in seen:
            continue
        seen.add(i)
        entry = entries[i]
        assert entry is not None  # a batch holds only the session's items
        path, text = entry
        c, held, unsure = latest.get(i, (None, False, False))
        kind = "image" if image_type(safe_item_path(root, path)) else "text"
        if c is not None:
            st = "held_out" if held else "labeled"
        else:
            st = "unsure" if unsure else "waiting"
        rows.append({"id": i, "round": rid, "kind": kind, "text": text, "label": c, "state": st})
    last = rounds[-1]["params"].get("budget") if rounds else None
    return {
        "round": served[-1] if served else None,
        "rounds": served,
        "classes": classes,
        "items": rows,
        "done": sum(r["state"] == "labeled" for r in rows),
        "unsure": sum(r["state"] == "unsure" for r in rows),
        "waiting": sum(r["state"] == "waiting" for r in rows),
        "next_budget": last if isinstance(last, int) and last > 0 else 10,
    }


def _label_request(body: dict, who: str) -> tuple[object, object, str, object, bool]:
    """``(item, label, giver, request_id, unsure)`` of a label request, checked."""
    unsure = body.get("unsure", False)
    if not isinstance(unsure, bool):
        raise RalifInputError("'unsure' must be true or false")
    if "item" not in body or ("label" not in body) == (not unsure):
        raise RalifInputError("a label needs 'item' and either 'label' or 'unsure': true")
    if not unsure and body["label"] is None:
        raise RalifInputError("'label' must be a class (use undo to take a label back)")
    label = None if unsure else body["label"]
    return body["item"], label, _labeler(body, who), body.get("request_id"), unsure


def _labeler(body: dict, who: str) -> str:
    """The labeler a request speaks for: its ``who`` (checked), else the server's default."""
    return check_labeler(body["who"]) if "who" in body else who


def _add_error_handlers(app) -> None:
    """Every error as JSON naming it: bad input 400, HTTP errors as they are, a busy
    database 503, a damaged one 500."""
    from flask import jsonify
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(RalifInputError)
    def bad_input(exc):
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(sqlite3.OperationalError)
    def busy(exc):
        return jsonify(error=f"the session database is busy, try again ({exc})"), 503

    @app.errorhandler(sqlite3.DatabaseError)
    def damaged(exc):
        return jsonify(error=f"the session database is damaged: {exc}"), 500


def _add_guards(app, session: _Session) -> None:
    """The token check before every request but the static files, and the headers that
    keep every answer from being framed, sniffed, cached or leaked as a referrer."""
    from flask import Response, jsonify, request

    @app.before_request
    def check_token():
        # Before anything reads the body: a request without the token costs nothing.
        if request.path in PUBLIC_PATHS:
            return None
        if not session.authorized(request):
            if request.path == "/":
                return Response(
                    "Open the address printed by ralif serve (it carries the session token).",
                    403,
                    mimetype="text/plain",
                )
            return jsonify(error="missing or wrong session token"), 403
        return None

    @app.after_request
    def headers(resp):
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers.setdefault("Content-Security-Policy", DATA_CSP)
        if request.path not in PUBLIC_PATHS:
            resp.headers["Cache-Control"] = "no-store"
        return resp


def _add_page_routes(app) -> None:
    """The page, its script and its style."""
    from flask import Response

    @app.get("/")
    def page():
        resp = Response(page_file(PAGE_FILES["/"][0]), mimetype=PAGE_FILES["/"][1])
        resp.headers["Content-Security-Policy"] = PAGE_CSP
        return resp

    @app.get("/app.js")
    def script():
        name, mimetype = PAGE_FILES["/app.js"]
        return Response(page_file(name), mimetype=mimetype)

    @app.get("/app.css")
    def style():
        name, mimetype = PAGE_FILES["/app.css"]
        return Response(page_file(name), mimetype=mimetype)


def _add_api_routes(app, session: _Session) -> None:
    """State, label, undo and next batch: the page's whole conversation with the store."""
    from flask import jsonify

    from ralif.session import workflow as wf

    @app.get("/api/state")
    def get_state():
        return jsonify(session.state())

    @app.post("/api/label")
    def post_label():
        item, label, giver, request_id, unsure = _label_request(_json_body(), session.who)
        session.store().label_from_page(
            item, label, who=giver, request_id=request_id, unsure=unsure
        )
        out = session.state()
        if out["waiting"] == 0:
            # The batch is done: fold the log into the .db so a plain copy of it is complete.
            session.store().checkpoint()
        return jsonify(out)

    @app.post("/api/undo")
    def post_undo():
        body = _json_body()
        undone = session.store().undo_last(
            _labeler(body, session.who), request_id=body.get("request_id")
        )
        out = session.state()
        out["undone"] = (
            None
            if undone is None
            else {"item": undone.item, "label": undone.class_id, "request_id": undone.took_back}
        )
        return jsonify(out)

    @app.post("/api/next")
    def post_next():
        body = _json_body()
        s = session.store()
        rounds = s.rounds()
        last = rounds[-1] if rounds else {"strategy": "ralif", "params": {}}
        budget = _positive_int(body.get("budget", session.state()["next_budget"]), "budget")
        params = {k: v for k, v in last["params"].items() if k not in ("seed", "budget")}
        if issubclass(strategy_class(last["strategy"])[0], RALIF):  # former names?
            params = upgrade_params(params, budget)
        try:
            wf.next_batch(s, budget, last["strategy"], None, **params)
        except ValueError as exc:
            raise RalifInputError(str(exc)) from None
        return jsonify(session.state())


def _add_item_route(app, session: _Session) -> None:
    """An item's file, only from inside the items folder and only as an allowed image."""
    from flask import abort, send_file

    @app.get("/items/<int:item_id>")
    def item_file(item_id: int):
        entry = session.store().item(item_id)
        if entry is None:
            abort(404)
        target = safe_item_path(session.root, entry[0])
        mimetype = image_type(target)
        if target is None or mimetype is None:
            abort(404)
        resp = send_file(target, mimetype=mimetype, conditional=True, max_age=0)
        resp.headers["Content-Disposition"] = f'inline; filename="item-{item_id}{target.suffix}"'
        return resp


def create_app(db_path: str | os.PathLike, who: str = "web") -> Flask:
    """The Flask application for one session database.

    Parameters
    ----------
    db_path : path-like
        The session database.
    who : str
        The labeler a request speaks for when it names none: each page sends its own
        identity (``who``, made by the browser and kept in its local storage), so that
        each labeler's undo takes back only that labeler's labels.

    Returns
    -------
    flask.Flask
    """
    try:
        from flask import Flask
    except ImportError:
        raise RalifInputError(
            "ralif serve needs the serve extra: pip install 'ralif[serve]'"
        ) from None
    session = _Session(db_path, check_labeler(who))
    app = Flask("ralif.session")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    _add_error_handlers(app)
    _add_guards(app, session)
    _add_page_routes(app)
    _add_api_routes(app, session)
    _add_item_route(app, session)
    return app


def page_url(host: str, port: int, token: str) -> str:
    """The address of the page; an IPv6 address goes in brackets, a wildcard becomes loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/?token={token}"


def check_port(port: object) -> int:
    """A TCP port number 0..65535 (0 picks a free one); a clear error otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise RalifInputError(f"--port must be a whole number from 0 to 65535, got {port!r}")
    return port


def _reachable_from_network(addresses: list[tuple[str, int]]) -> bool:
    for host, _ in addresses:
        try:
            if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                return True
        except ValueError:
            return True
    return False


def make_server(
    db_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, threads: int = 8
) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for the page, already listening (so its address can be printed).

    Returns
    -------
    waitress server
        Call ``run()`` to serve; ``effective_listen`` (or ``effective_host`` and
        ``effective_port``) says where it listens.
    """
    port = check_port(port)
    app = create_app(db_path)
    try:
        from waitress.server import create_server
    except ImportError:
        raise RalifInputError(
            "ralif serve needs the serve extra: pip install 'ralif[serve]'"
        ) from None
    try:
        return create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="ralif",
            max_request_body_size=MAX_BODY,
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise RalifInputError(
            f"cannot listen on {host} port {port}: {why}; pick another with --port or --host"
        ) from None
    except ValueError as exc:
        raise RalifInputError(f"cannot listen on {host} port {port}: {exc}") from None


def listening_on(server: BaseWSGIServer | MultiSocketServer) -> list[tuple[str, int]]:
    """``(host, port)`` of every socket the server listens on."""
    found = getattr(server, "effective_listen", None)
    if found:
        return [(str(h), int(p)) for h, p in found]
    return [(str(server.effective_host), int(server.effective_port))]


def serve(
    db_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, threads: int = 8
) -> None:
    """Serve the labeling page until interrupted (SIGINT, SIGTERM or SIGHUP), then fold the log in.

    The address (with the token) is printed only once the server listens. On a clean
    stop the write-ahead log is checkpointed into the ``.db`` file, so the file alone is
    a complete copy of the session.
    """
    server = make_server(db_path, host=host, port=port, threads=threads)
    addresses = listening_on(server)
    with open_session(db_path, check=False) as s:
        token = s.token
    if _reachable_from_network(addresses):
        print(
            f"ralif: warning: listening on {host}: the page is reachable from the network, "
            "over plain HTTP; anyone who sees the address below can label",
            file=sys.stderr,
            flush=True,
        )
    print(f"ralif: labeling page at {page_url(host, addresses[0][1], token)}", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    stops = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, stop) for sig in stops}
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(Exception):
            server.task_dispatcher.shutdown(timeout=5)
        with contextlib.suppress(Exception):
            server.close()
        with open_session(db_path, check=False) as s:
            s.checkpoint("TRUNCATE")
