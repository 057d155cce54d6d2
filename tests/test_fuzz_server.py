"""Hostile requests to every endpoint of the labeling page's server (property-based).

Whatever a client sends (wrong types, huge numbers, unicode, missing fields, a wrong
token, bodies that are not JSON or nest deeply, very long text, odd headers and query
strings), the answer is a 2xx for a valid request and a 4xx otherwise, never a 5xx or an
exception, and a refused request leaves every label, batch and class as it was.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import require

require("hypothesis")
require("flask")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ralif.session import workflow as wf  # noqa: E402
from ralif.session.server import MAX_BODY, create_app  # noqa: E402
from tests.test_session import CLASSES, _label_first, make_session  # noqa: E402

ENDPOINTS = [
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/app.css"),
    ("GET", "/api/state"),
    ("POST", "/api/label"),
    ("POST", "/api/undo"),
    ("POST", "/api/next"),
    ("GET", "/items/0"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, blobs):
    """One session with a batch of 12 being labeled, and a test client of its server."""
    store, y = make_session(tmp_path_factory.mktemp("fuzz"), blobs)
    _label_first(store, y, 30)
    wf.next_batch(store, 12, "random")
    app = create_app(store.path)
    app.config["PROPAGATE_EXCEPTIONS"] = True  # an unhandled error fails the test, loudly
    yield store, app.test_client()
    store.close()


def _snapshot(store) -> tuple:
    return tuple(
        store.db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        for table in ("label_events", "rounds", "round_items", "classes")
    )


def _check(store, resp, before: tuple) -> None:
    """A 2xx or a 4xx with a JSON error (the page and its files aside); refused: nothing changed."""
    assert resp.status_code < 500, resp.get_data()[:300]
    if resp.status_code >= 400:
        assert _snapshot(store) == before
        if resp.mimetype == "application/json":
            assert isinstance(json.loads(resp.get_data())["error"], str)


# ------------------------------------------------------------------------- what is sent
# Latin-1 without control characters: what an HTTP header can carry at all.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"))
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=50)
long_text = st.integers(100, 6000).map(lambda n: "é" * n)
numbers = (
    st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 2**63, 2**63 - 1, 2**64, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | any_text | long_text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=8,
)  # fmt: skip


def _field(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a value the field could take, else anything at all."""
    return valid | json_values


@st.composite
def label_bodies(draw, items: list[int]) -> dict:
    fields = {
        "item": _field(st.sampled_from(items) | st.sampled_from([str(i) for i in items])),
        "label": _field(st.sampled_from([*CLASSES, 0, 1, 2, "2", 3, "fish"])),
        "unsure": _field(st.booleans()),
        "who": _field(st.sampled_from(["ann", "bob-2", "web", "x" * 64, "x" * 65, ""])),
        "request_id": _field(st.sampled_from(["r-1", "r-2", "undo-1", "a" * 65, ""])),
        "budget": _field(st.integers(1, 20)),
    }
    body = {k: draw(v) for k, v in fields.items() if draw(st.booleans())}
    if draw(st.booleans()):
        body.update(draw(st.dictionaries(any_text, json_values, max_size=3)))
    return body


def _deep(n: int, kind: str) -> bytes:
    return (b"[" * n + b"]" * n) if kind == "list" else (b'{"a":' * n + b"1" + b"}" * n)


raw_bodies = (
    st.binary(max_size=300)
    | any_text.map(str.encode)
    | st.builds(_deep, st.integers(1, 6000), st.sampled_from(["list", "dict"]))
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.integers(MAX_BODY - 10, MAX_BODY + 100).map(lambda n: b'{"item": "' + b"9" * n + b'"}')
)
tokens = st.sampled_from(["good", "wrong", "empty", "missing", "query", "both"]) | header_text
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "multipart/form-data",
    ]
)


def _auth(token_kind: str, good: str) -> tuple[dict, dict]:
    """Headers and query arguments carrying the token as ``token_kind`` says."""
    table = {
        "good": ({"X-Ralif-Token": good}, {}),
        "wrong": ({"X-Ralif-Token": good[:-1] + ("A" if good[-1] != "A" else "B")}, {}),
        "empty": ({"X-Ralif-Token": ""}, {}),
        "missing": ({}, {}),
        "query": ({}, {"token": good}),
        "both": ({"X-Ralif-Token": "wrong"}, {"token": good}),
    }
    return table.get(token_kind, ({"X-Ralif-Token": token_kind}, {}))


def _send(client, method: str, path: str, **kw):
    return client.open(path, method=method, **kw)


# ------------------------------------------------------------------------------ the tests
@given(data=st.data())
def test_label_bodies_are_answered_2xx_or_4xx_and_a_refusal_changes_nothing(served, data):
    store, client = served
    items = store.current_batch()[1] + [0, 10**6]
    body = data.draw(label_bodies(items))
    before = _snapshot(store)
    resp = _send(client, "POST", "/api/label", json=body, headers={"X-Ralif-Token": store.token})
    _check(store, resp, before)
    if resp.status_code == 200:  # recorded for the labeler the request named
        who = store.db.execute("SELECT who FROM label_events ORDER BY id DESC LIMIT 1").fetchone()
        assert who[0] == body.get("who", "web")


@given(data=st.data())
def test_undo_and_next_bodies_are_answered_2xx_or_4xx(served, data):
    store, client = served
    path = data.draw(st.sampled_from(["/api/undo", "/api/next"]))
    body = data.draw(label_bodies(store.current_batch()[1]))
    before = _snapshot(store)
    resp = _send(client, "POST", path, json=body, headers={"X-Ralif-Token": store.token})
    _check(store, resp, before)
    if path == "/api/undo" and resp.status_code == 200:
        undone = json.loads(resp.get_data())["undone"]
        if undone is not None:  # the labeler's own label, never another's
            row = store.db.execute(
                "SELECT t.who, u.who FROM label_events u JOIN label_events t ON t.id = u.undoes "
                "ORDER BY u.id DESC LIMIT 1"
            ).fetchone()
            assert row[0] == row[1] == body.get("who", "web")


@given(
    endpoint=st.sampled_from(ENDPOINTS),
    raw=raw_bodies,
    content_type=content_types,
    token=tokens,
)
def test_raw_bodies_that_are_not_json_objects_are_refused(
    served, endpoint, raw, content_type, token
):
    store, client = served
    method, path = endpoint
    headers, query = _auth(token, store.token)
    before = _snapshot(store)
    resp = _send(
        client, method, path, data=raw, headers={**headers, "Content-Type": content_type},
        query_string=query,
    )  # fmt: skip
    _check(store, resp, before)
    if method == "GET":
        assert _snapshot(store) == before


@given(
    endpoint=st.sampled_from(ENDPOINTS),
    method=st.sampled_from(METHODS),
    token=tokens,
    headers=st.dictionaries(
        st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=20),
        header_text, max_size=4,
    ),
    query=st.dictionaries(any_text, any_text | long_text, max_size=4),
)  # fmt: skip
def test_any_method_header_and_query_string_is_answered_without_a_5xx(
    served, endpoint, method, token, headers, query
):
    store, client = served
    _, path = endpoint
    auth, auth_query = _auth(token, store.token)
    before = _snapshot(store)
    resp = _send(
        client, method, path, headers={**headers, **auth}, query_string={**query, **auth_query},
        json={} if method == "POST" else None,
    )  # fmt: skip
    assert resp.status_code < 500
    # An empty body is a valid undo (and a valid next, refused while a batch is open); no
    # other request here may change anything.
    if not (method == "POST" and path in ("/api/undo", "/api/next") and resp.status_code == 200):
        assert _snapshot(store) == before


@given(
    item=st.integers(-(10**40), 10**40).map(str)
    | any_text.filter(lambda t: "/" not in t and "?" not in t and "#" not in t)
    | st.sampled_from(
        ["0", "00", "+1", "-1", "1e3", "0x10", "٣", " 1", "%00", "..%2f..%2fsecret.txt"]
    ),
    token=tokens,
)
def test_item_files_are_a_200_image_or_a_4xx(served, item, token):
    store, client = served
    headers, query = _auth(token, store.token)
    before = _snapshot(store)
    resp = _send(client, "GET", f"/items/{item}", headers=headers, query_string=query)
    _check(store, resp, before)
    if resp.status_code == 200:
        assert resp.mimetype == "image/png" and resp.get_data().startswith(b"\x89PNG")
    assert _snapshot(store) == before


@given(
    token=header_text
    | st.binary(max_size=80)
    .map(lambda b: b.decode("latin-1"))
    .filter(lambda t: "\n" not in t and "\r" not in t)
)
def test_a_wrong_token_is_a_403_on_every_endpoint(served, token):
    store, client = served
    for method, path in ENDPOINTS:
        if path in ("/app.js", "/app.css"):
            continue
        before = _snapshot(store)
        resp = _send(
            client, method, path, headers={"X-Ralif-Token": token}, json={"item": 0, "label": 0}
        )
        assert resp.status_code == (200 if token == store.token else 403)
        assert _snapshot(store) == before or token == store.token
