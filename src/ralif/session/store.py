"""The session store: one SQLite file holding items, classes, rounds and every label given.

Labels are never overwritten: each one given (or taken back) is a new row of
``label_events``; an item's label is its latest event. Every write is one transaction,
committed before the caller is told it succeeded, so a crash loses nothing acknowledged.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError

APP_ID = "ralif-session"
SCHEMA_VERSION = 1

# Migrations from version k-1 to k; index 0 creates version 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,          -- the row of the item in the features file
        path TEXT,                       -- image file, relative to the items folder
        text TEXT                        -- or the text to show
    );
    CREATE TABLE classes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        strategy TEXT NOT NULL,
        params TEXT NOT NULL,
        created_at TEXT NOT NULL,
        metrics TEXT
    );
    CREATE TABLE round_items (
        round_id INTEGER NOT NULL REFERENCES rounds(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        position INTEGER NOT NULL,
        PRIMARY KEY (round_id, item_id)
    );
    CREATE TABLE label_events (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        class_id INTEGER REFERENCES classes(id),   -- NULL: the label was taken back
        who TEXT NOT NULL,
        at TEXT NOT NULL,
        held_out INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL,
        request_id TEXT UNIQUE
    );
    CREATE INDEX label_events_item ON label_events (item_id, id);
    """,
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 30000")
    return db


@dataclass
class LabelResult:
    """What a label write changed."""

    event_id: int
    item: int
    class_id: int | None
    duplicate: bool = False


class SessionStore:
    """An open session database. Use :func:`create_session` or :func:`open_session`."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db

    # ------------------------------------------------------------------ metadata
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def token(self) -> str:
        return self.meta("token") or ""

    @property
    def features_path(self) -> Path:
        return Path(self.meta("features") or "")

    @property
    def items_root(self) -> Path | None:
        root = self.meta("items_root")
        return Path(root) if root else None

    def n_items(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def classes(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM classes ORDER BY id")]

    def item(self, item_id: int) -> tuple[str | None, str | None] | None:
        row = self.db.execute("SELECT path, text FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    # -------------------------------------------------------------------- labels
    def _class_id(self, label: object) -> int:
        names = self.classes()
        if isinstance(label, str) and label in names:
            return names.index(label)
        try:
            value = int(str(label))
        except ValueError:
            value = None
        if value is not None and 0 <= value < len(names):
            return value
        raise RalifInputError(
            f"unknown class {label!r}; classes are {', '.join(names) or '(none defined)'}"
        )

    def add_label(
        self,
        item: int,
        label: object,
        who: str = "anonymous",
        held_out: bool = False,
        source: str = "web",
        request_id: str | None = None,
    ) -> LabelResult:
        """Record one label (``label=None`` takes the item's label back); committed on return."""
        try:
            item = int(item)
        except (TypeError, ValueError):
            raise RalifInputError(f"unknown item {item!r}") from None
        if self.item(item) is None:
            raise RalifInputError(f"unknown item {item}; items are 0..{self.n_items() - 1}")
        class_id = None if label is None else self._class_id(label)
        request_id = request_id or uuid.uuid4().hex
        try:
            cur = self.db.execute(
                "INSERT INTO label_events (item_id, class_id, who, at, held_out, source, request_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (item, class_id, str(who)[:100], _now(), int(held_out), source, request_id),
            )
        except sqlite3.IntegrityError:
            # The same request sent twice (a retry after a lost answer): already recorded.
            row = self.db.execute(
                "SELECT id, item_id, class_id FROM label_events WHERE request_id = ?", (request_id,)
            ).fetchone()
            return LabelResult(row[0], row[1], row[2], duplicate=True)
        return LabelResult(int(cur.lastrowid), item, class_id)

    def import_labels(
        self, rows: Sequence[tuple[int, object]], who: str, held_out: bool = False
    ) -> int:
        """Record many labels in one transaction: all of them, or none if any is bad."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for item, label in rows:
                self.add_label(item, label, who=who, held_out=held_out, source="import")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return len(rows)

    def current_labels(self, as_of: str | None = None) -> dict[int, tuple[int, bool]]:
        """``item -> (class_id, held_out)`` for every item whose latest event is a label.

        With ``as_of`` (an ISO time), the labels as they stood just before that time.
        """
        when = "WHERE at < ?" if as_of else ""
        rows = self.db.execute(
            "SELECT e.item_id, e.class_id, e.held_out FROM label_events e "
            f"JOIN (SELECT item_id, MAX(id) AS last FROM label_events {when} GROUP BY item_id) m "
            "ON e.id = m.last WHERE e.class_id IS NOT NULL",
            (as_of,) if as_of else (),
        )
        return {int(i): (int(c), bool(h)) for i, c, h in rows}

    def label_array(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y, held_out)`` over all items: ``y`` is -1 where unlabeled."""
        n = self.n_items()
        y = np.full(n, -1, dtype=np.int64)
        held = np.zeros(n, dtype=bool)
        for item, (c, h) in self.current_labels().items():
            y[item] = c
            held[item] = h
        return y, held

    def history(self, item: int) -> list[dict]:
        rows = self.db.execute(
            "SELECT class_id, who, at, source FROM label_events WHERE item_id = ? ORDER BY id",
            (item,),
        )
        return [dict(class_id=c, who=w, at=a, source=s) for c, w, a, s in rows]

    # -------------------------------------------------------------------- rounds
    def add_round(
        self, strategy: str, params: dict, items: Sequence[int], metrics: dict | None = None
    ) -> int:
        """Record a picked batch (before anyone sees it), in one transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = self.db.execute(
                "INSERT INTO rounds (strategy, params, created_at, metrics) VALUES (?, ?, ?, ?)",
                (
                    strategy,
                    json.dumps(params, sort_keys=True, default=str),
                    _now(),
                    json.dumps(metrics or {}),
                ),
            )
            rid = int(cur.lastrowid)
            self.db.executemany(
                "INSERT INTO round_items (round_id, item_id, position) VALUES (?, ?, ?)",
                [(rid, int(i), k) for k, i in enumerate(items)],
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return rid

    def rounds(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT id, strategy, params, created_at, metrics FROM rounds ORDER BY id"
        )
        return [
            dict(
                id=i, strategy=s, params=json.loads(p), created_at=c, metrics=json.loads(m or "{}")
            )
            for i, s, p, c, m in rows
        ]

    def round_items(self, round_id: int) -> list[int]:
        rows = self.db.execute(
            "SELECT item_id FROM round_items WHERE round_id = ? ORDER BY position", (round_id,)
        )
        return [int(r[0]) for r in rows]

    def current_batch(self) -> tuple[int | None, list[int]]:
        """The latest round and its items in the order picked."""
        row = self.db.execute("SELECT MAX(id) FROM rounds").fetchone()
        if row[0] is None:
            return None, []
        return int(row[0]), self.round_items(int(row[0]))

    def pending_items(self) -> set[int]:
        """Items of any batch that are not labeled yet."""
        labeled = self.current_labels()
        rows = self.db.execute("SELECT DISTINCT item_id FROM round_items")
        return {int(r[0]) for r in rows} - set(labeled)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _migrate(db: sqlite3.Connection, version: int) -> None:
    for k in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in filter(str.strip, MIGRATIONS[k].split(";")):
                db.execute(stmt)
            if k == 0:
                db.execute("INSERT INTO meta VALUES ('app', ?)", (APP_ID,))
                db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
            else:
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(k + 1),))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def create_session(
    path: str | os.PathLike,
    features: str | os.PathLike,
    n_items: int,
    classes: Sequence[str] = (),
    manifest: Sequence[tuple[str | None, str | None]] | None = None,
    items_root: str | os.PathLike | None = None,
) -> SessionStore:
    """Create a new session database (refusing to overwrite an existing file)."""
    path = Path(path)
    if path.exists():
        raise RalifInputError(f"{path} already exists; pick another --db or remove it")
    if len(set(classes)) != len(classes):
        raise RalifInputError(f"class names must be unique, got {list(classes)}")
    if manifest is not None and len(manifest) != n_items:
        raise RalifInputError(
            f"the manifest lists {len(manifest)} items but the features have {n_items} rows"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    db = _connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    _migrate(db, 0)
    db.execute("BEGIN IMMEDIATE")
    meta = {
        "features": str(Path(features).resolve()),
        "items_root": str(Path(items_root).resolve()) if items_root else "",
        "token": secrets.token_urlsafe(24),
        "created_at": _now(),
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    db.executemany("INSERT INTO classes (id, name) VALUES (?, ?)", list(enumerate(classes)))
    rows = manifest or [(None, None)] * n_items
    db.executemany(
        "INSERT INTO items (id, path, text) VALUES (?, ?, ?)",
        [(i, p, t) for i, (p, t) in enumerate(rows)],
    )
    db.execute("COMMIT")
    return SessionStore(path, db)


def open_session(path: str | os.PathLike) -> SessionStore:
    """Open an existing session; a missing, corrupt or foreign file gets a clear error."""
    path = Path(path)
    if not path.is_file():
        raise RalifInputError(
            f"session database not found: {path} (create it with ralif session init)"
        )
    try:
        db = _connect(path)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        app = (
            db.execute("SELECT value FROM meta WHERE key='app'").fetchone()
            if "meta" in tables
            else None
        )
    except sqlite3.DatabaseError as exc:
        raise RalifInputError(
            f"{path} is not a ralif session database (corrupt or not SQLite: {exc})"
        ) from None
    if app is None or app[0] != APP_ID:
        db.close()
        raise RalifInputError(f"{path} is an SQLite file but not a ralif session database")
    version = int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    if version > SCHEMA_VERSION:
        db.close()
        raise RalifInputError(
            f"{path} was written by a newer ralif (schema {version} > {SCHEMA_VERSION})"
        )
    db.execute("PRAGMA journal_mode = WAL")
    _migrate(db, version)
    return SessionStore(path, db)
