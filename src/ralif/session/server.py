"""``ralif serve``: a local page for labeling the current batch, one item at a time.

Flask app served by waitress. Every label is committed to the session database before
the page is told it succeeded. Writes (and reads of the batch) need the session's secret
token; the server binds to 127.0.0.1 unless told otherwise; item files are served only
from inside the items folder.
"""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path

from ralif._validation import RalifInputError
from ralif.session.store import SessionStore, open_session

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ralif labeling</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; color: #222; }
 #item { min-height: 16rem; display: flex; align-items: center; justify-content: center;
         border: 1px solid #ccc; border-radius: 8px; padding: 1rem; margin: 1rem 0; font-size: 1.2rem; }
 #item img { max-width: 100%; max-height: 24rem; image-rendering: pixelated; min-width: 12rem; }
 .classes button { font-size: 1rem; margin: .25rem; padding: .5rem .9rem; cursor: pointer; }
 .classes button kbd { color: #777; margin-right: .4rem; }
 #status { color: #555; } #error { color: #b00; }
</style></head>
<body>
<h1>Label the batch</h1>
<p id="status">Loading…</p>
<div id="item"></div>
<div class="classes" id="classes"></div>
<p><button id="undo" title="Take back the last label (u or Backspace)">Undo</button>
   <span id="error"></span></p>
<script>
const TOKEN = {{ token|tojson }};
let state = null;
async function api(path, body) {
  const opts = {headers: {"X-Ralif-Token": TOKEN, "Content-Type": "application/json"}};
  if (body !== undefined) { opts.method = "POST"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
function show() {
  const s = state, status = document.getElementById("status"), box = document.getElementById("item");
  if (s.round === null) { status.textContent = "No batch yet: run ralif session next."; box.innerHTML = ""; return; }
  status.textContent = `Round ${s.round}: ${s.done} of ${s.items.length} labeled`;
  const next = s.items.find(it => it.label === null);
  box.innerHTML = "";
  box.dataset.item = next ? next.id : "";
  if (!next) { box.textContent = "Batch done. Thank you!"; return; }
  if (next.kind === "image") {
    const img = document.createElement("img");
    img.src = `/items/${next.id}?token=${encodeURIComponent(TOKEN)}`; img.alt = `item ${next.id}`;
    box.appendChild(img);
  } else { box.textContent = next.text || `item ${next.id}`; }
}
async function refresh() { state = await api("/api/state"); show(); }
async function label(k) {
  const item = document.getElementById("item").dataset.item;
  if (item === "" || item === undefined) return;
  try { state = await api("/api/label", {item: Number(item), label: k, request_id: crypto.randomUUID()});
        document.getElementById("error").textContent = ""; show(); }
  catch (e) { document.getElementById("error").textContent = e.message; }
}
async function undo() {
  try { state = await api("/api/undo", {}); show(); }
  catch (e) { document.getElementById("error").textContent = e.message; }
}
document.getElementById("undo").onclick = undo;
document.addEventListener("keydown", ev => {
  if (ev.key === "u" || ev.key === "Backspace") { ev.preventDefault(); undo(); return; }
  const k = "123456789".indexOf(ev.key);
  if (k >= 0 && state && k < state.classes.length) label(k);
});
api("/api/state").then(s => {
  state = s;
  const div = document.getElementById("classes");
  s.classes.forEach((name, k) => {
    const b = document.createElement("button");
    b.innerHTML = (k < 9 ? `<kbd>${k + 1}</kbd>` : "") + name; b.dataset.class = k;
    b.onclick = () => label(k); div.appendChild(b);
  });
  show();
}).catch(e => { document.getElementById("status").textContent = e.message; });
</script>
</body></html>
"""


def safe_item_path(root: Path | None, relative: str | None) -> Path | None:
    """The item's file inside ``root``, or None if it would escape it (or is missing)."""
    if root is None or not relative:
        return None
    root = root.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def create_app(db_path: str | os.PathLike, who: str = "web"):
    """The Flask application for one session database."""
    try:
        from flask import Flask, abort, jsonify, render_template_string, request, send_file
    except ImportError:
        raise RalifInputError(
            "ralif serve needs the serve extra: pip install 'ralif[serve]'"
        ) from None

    probe = open_session(db_path)
    token = probe.token
    root = probe.items_root
    probe.close()
    local = threading.local()
    app = Flask("ralif.session")

    def store() -> SessionStore:
        # One connection per server thread: SQLite connections are not shared.
        if getattr(local, "store", None) is None:
            local.store = open_session(db_path)
        return local.store

    def authorized() -> bool:
        given = request.headers.get("X-Ralif-Token") or request.args.get("token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    @app.errorhandler(RalifInputError)
    def bad_input(exc):
        return jsonify(error=str(exc)), 400

    @app.before_request
    def check_token():
        if request.path != "/" and not authorized():
            return jsonify(error="missing or wrong session token"), 403
        return None

    def state() -> dict:
        s = store()
        rid, items = s.current_batch()
        labels = s.current_labels()
        rows = []
        for i in items:
            path, text = s.item(i)
            kind = "image" if safe_item_path(root, path) is not None else "text"
            rows.append({"id": i, "kind": kind, "text": text, "label": labels.get(i, (None,))[0]})
        return {
            "round": rid,
            "classes": s.classes(),
            "items": rows,
            "done": sum(r["label"] is not None for r in rows),
        }

    @app.get("/")
    def page():
        if not authorized():
            return "Open the address printed by ralif serve (it carries the session token).", 403
        return render_template_string(PAGE, token=token)

    @app.get("/api/state")
    def get_state():
        return jsonify(state())

    @app.post("/api/label")
    def post_label():
        body = request.get_json(silent=True) or {}
        if "item" not in body or "label" not in body:
            raise RalifInputError("a label needs 'item' and 'label'")
        store().add_label(
            body["item"],
            body["label"],
            who=body.get("who") or who,
            request_id=body.get("request_id"),
        )
        return jsonify(state())

    @app.post("/api/undo")
    def post_undo():
        s = store()
        _, items = s.current_batch()
        if not items:
            raise RalifInputError("no batch to undo in")
        marks = ",".join("?" * len(items))
        # The most recent label in the batch that still stands: repeated undos walk back.
        row = s.db.execute(
            f"SELECT e.item_id FROM label_events e WHERE e.item_id IN ({marks}) AND e.class_id IS NOT NULL "
            "AND e.id = (SELECT MAX(id) FROM label_events WHERE item_id = e.item_id) ORDER BY e.id DESC LIMIT 1",
            items,
        ).fetchone()
        if row is not None:
            s.add_label(row[0], None, who=who, source="undo")
        return jsonify(state())

    @app.get("/items/<int:item_id>")
    def item_file(item_id: int):
        entry = store().item(item_id)
        if entry is None:
            abort(404)
        target = safe_item_path(root, entry[0])
        if target is None:
            abort(404)
        return send_file(target)

    return app


def serve(
    db_path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, threads: int = 8
) -> None:
    """Serve the labeling page until interrupted (waitress, ``threads`` workers)."""
    app = create_app(db_path)
    try:
        from waitress import serve as waitress_serve
    except ImportError:
        raise RalifInputError(
            "ralif serve needs the serve extra: pip install 'ralif[serve]'"
        ) from None

    with open_session(db_path) as s:
        token = s.token
    print(f"ralif: labeling page at http://{host}:{port}/?token={token}", flush=True)
    waitress_serve(app, host=host, port=port, threads=threads, ident="ralif")
