"""The session store: one SQLite file holding items, classes, rounds and every label given.

Labels are never overwritten: each one given (or taken back) is a new row of
``label_events``; an item's label is its latest event. Every write is one transaction,
committed before the caller is told it succeeded, so a crash loses nothing acknowledged.

The file holds the session's secret token, so it (and its ``-wal`` and ``-shm``
companions, which SQLite creates with the same permissions) is readable by its owner only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import os
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError

APP_ID = "ralif-session"
SCHEMA_VERSION = 2
TABLES = ("meta", "items", "classes", "rounds", "round_items", "label_events")
OWNER_ONLY = 0o600
MAX_NAME = 100
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A labeler's identity as the page sends it (made by the browser, so hostile until checked).
LABELER = re.compile(r"[A-Za-z0-9_-]{1,64}")
# SQLite integers are signed 64-bit; anything larger must be refused before it reaches SQLite.
MAX_SQL_INT = 2**63 - 1

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
    """
    ALTER TABLE label_events ADD COLUMN undoes INTEGER REFERENCES label_events(id);
    ALTER TABLE label_events ADD COLUMN unsure INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX label_events_undoes ON label_events (undoes);
    ALTER TABLE rounds ADD COLUMN closed_at TEXT;
    """,
)

# Events that still count: neither an undo nor undone. The item's effective history is
# these events in order; undoing its last one restores the one before.
_STANDING = (
    "{e}.undoes IS NULL AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = {e}.id)"
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)

    def text(raw: bytes) -> str:  # a damaged page can hold any bytes in a text column
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _damaged(path, "a text value is not UTF-8") from None

    db.text_factory = text
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 30000")
    return db


def _companions(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def _owner_only(path: Path) -> None:
    """Take group and other permissions off the database files we own (older sessions were 0644)."""
    for p in _companions(path):
        try:
            st = p.stat()
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.chmod(p, stat.S_IMODE(st.st_mode) & 0o700)
        except OSError:
            continue


def _readonly_error(path: Path) -> RalifInputError:
    return RalifInputError(
        f"{path} is read-only (or its folder is): a session needs to write the file and to "
        f"create {path.name}-wal and {path.name}-shm beside it; fix the permissions or copy "
        "the file somewhere writable"
    )


def _is_readonly_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def split_class_names(texts: Sequence[str]) -> list[str]:
    """Class names from the command line: each text is a comma-separated list.

    ``session init --classes`` and ``session add-class`` read names this one way, so a
    comma always separates two classes; pieces are stripped and empty ones dropped.

    Parameters
    ----------
    texts : sequence of str
        As typed, e.g. ``["owl,cat2"]`` or ``["owl", "cat2"]``.

    Returns
    -------
    list of str

    Examples
    --------
    >>> split_class_names(["owl,cat2", " emu "])
    ['owl', 'cat2', 'emu']
    """
    return [piece.strip() for text in texts for piece in text.split(",") if piece.strip()]


def check_class_names(names: Sequence[str], first_position: int = 0) -> list[str]:
    """Validate class names: the one rule for every class a session gets, made or renamed.

    A name is non-empty printable text without outer spaces and without a comma (class
    lists are comma-separated, see :func:`split_class_names`), at most 100 characters,
    unique; a name that is a number names its own position: a label such as ``"2"`` is
    read as a class name first and as a position second, so a class called ``"2"``
    anywhere but at position 2 would make labels ambiguous.

    Parameters
    ----------
    names : sequence of str
        The names, in the order of their positions.
    first_position : int
        The position of the first name.

    Returns
    -------
    list of str

    Examples
    --------
    >>> check_class_names(["cat", "dog", "2"])
    ['cat', 'dog', '2']
    >>> check_class_names(["owl,cat2"])
    Traceback (most recent call last):
    ...
    ralif._validation.RalifInputError: class name 'owl,cat2' has a comma, which separates class names; give them as separate names
    """
    out = []
    for k, name in enumerate(names, start=first_position):
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise RalifInputError(
                f"class name {name!r} must be non-empty text without outer spaces"
            )
        if "," in name:
            raise RalifInputError(
                f"class name {name[:40]!r} has a comma, which separates class names; "
                "give them as separate names"
            )
        if len(name) > MAX_NAME or any(ord(ch) < 32 for ch in name):
            raise RalifInputError(
                f"class name {name[:40]!r} must be at most {MAX_NAME} printable characters"
            )
        if name.isdigit() and int(name) != k:
            raise RalifInputError(
                f"class name {name!r} is a number but would be class {k}; numbers name positions"
            )
        out.append(name)
    if len(set(out)) != len(out):
        raise RalifInputError(f"class names must be unique, got {list(out)}")
    return out


def check_labeler(who: object) -> str:
    """A labeler's identity from the labeling page: 1 to 64 letters, digits, ``-`` or ``_``.

    The page makes one per browser and sends it with every label and undo; it comes from
    the client, so anything else is refused rather than stored.

    Parameters
    ----------
    who : object
        The identity as received.

    Returns
    -------
    str
        ``who``, checked.

    Examples
    --------
    >>> check_labeler("web-3f9a0c2e")
    'web-3f9a0c2e'
    >>> check_labeler("ann smith")
    Traceback (most recent call last):
    ...
    ralif._validation.RalifInputError: 'who' must be 1 to 64 letters, digits, '-' or '_', got 'ann smith'
    """
    if not isinstance(who, str) or not LABELER.fullmatch(who):
        raise RalifInputError(
            f"'who' must be 1 to 64 letters, digits, '-' or '_', got {_short(who)}"
        )
    return who


def _check_request_id(request_id: object) -> str:
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise RalifInputError(
            f"request_id must be 1 to 64 letters, digits, '-' or '_', got {_short(request_id)}"
        )
    return request_id


@dataclass
class LabelResult:
    """What a label write changed.

    ``class_id`` is the item's label after the write (None: unlabeled); for an undo,
    ``took_back`` is the request id of the label taken back.
    """

    event_id: int
    item: int
    class_id: int | None
    duplicate: bool = False
    took_back: str | None = None


class SessionStore:
    """An open session database. Use :func:`create_session` or :func:`open_session`."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db
        self._n_items: int | None = None

    # ------------------------------------------------------------------ metadata
    def meta(self, key: str) -> str | None:
        """The value stored under ``key`` in the session's metadata, or None."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def token(self) -> str:
        """The secret every request to the labeling page must carry."""
        return self.meta("token") or ""

    @property
    def features_path(self) -> Path:
        """The features file the session was created over."""
        return Path(self.meta("features") or "")

    @property
    def items_root(self) -> Path | None:
        """The folder item paths are relative to (the manifest's folder), if any."""
        root = self.meta("items_root")
        return Path(root) if root else None

    def n_items(self) -> int:
        """How many items (rows of the features file) the session has."""
        if self._n_items is None:
            self._n_items = int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        return self._n_items

    def classes(self) -> list[str]:
        """The class names, in the order of their numbers."""
        return [r[0] for r in self.db.execute("SELECT name FROM classes ORDER BY id")]

    def add_classes(self, names: Sequence[str]) -> list[str]:
        """Append classes (numbered after the existing ones); all of them or none."""
        with self.writing():
            have = self.classes()
            new = check_class_names(list(names), first_position=len(have))
            clash = sorted(set(new) & set(have))
            if clash:
                raise RalifInputError(f"the session already has class(es) {', '.join(clash)}")
            self.db.executemany(
                "INSERT INTO classes (id, name) VALUES (?, ?)",
                [(len(have) + k, n) for k, n in enumerate(new)],
            )
        return self.classes()

    def rename_class(self, old: object, new: str) -> list[str]:
        """Rename a class (given by name or number); every label of it keeps pointing at it.

        Labels store the class's number, so they follow the new name: the export and the
        page show it at once. The new name follows :func:`check_class_names`.

        Parameters
        ----------
        old : str or int
            The class's name or number.
        new : str
            Its new name.

        Returns
        -------
        list of str
            The classes after the rename.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dgo"])
        >>> s.rename_class("dgo", "dog")
        ['cat', 'dog']
        """
        with self.writing():
            names = self.classes()
            k = self._class_id(old)
            if new == names[k]:
                raise RalifInputError(f"class {k} is already called {new}")
            check_class_names([new], first_position=k)
            if new in names:
                raise RalifInputError(f"the session already has a class {new}")
            self.db.execute("UPDATE classes SET name = ? WHERE id = ?", (new, k))
        return self.classes()

    def remove_class(self, name: object) -> list[str]:
        """Remove a class no label has ever used; the classes after it move up one number.

        A class that has been given as a label, even one since corrected or taken back,
        stays: the label history names it. Rename it (:meth:`rename_class`) instead.
        Labels of the classes after it keep their class (their numbers move with it).

        Parameters
        ----------
        name : str or int
            The class's name or number.

        Returns
        -------
        list of str
            The classes after the removal.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "owl", "dog"])
        >>> s.remove_class("owl")
        ['cat', 'dog']
        """
        with self.writing():
            names = self.classes()
            k = self._class_id(name)
            given = self.db.execute(
                "SELECT COUNT(*) FROM label_events WHERE class_id = ? AND undoes IS NULL", (k,)
            ).fetchone()[0]
            if given:
                now = sum(c == k for c, _ in self.current_labels().values())
                has = (
                    "no item has it now"
                    if not now
                    else f"{now} item{' has' if now == 1 else 's have'} it now"
                )
                raise RalifInputError(
                    f"class {names[k]} has been given as a label ({has}, {given} label"
                    f"{'' if given == 1 else 's'} in all) and the label history keeps it; "
                    "a class labels have used cannot be removed: rename it with "
                    "ralif session rename-class"
                )
            rest = names[:k] + names[k + 1 :]
            for pos, moved in enumerate(rest[k:], start=k):
                if moved.isdigit():
                    raise RalifInputError(
                        f"without {names[k]}, class '{moved}' would move to position {pos}, but "
                        "a class named by a number stays at its position; rename it first"
                    )
            # Numbers of the later classes move down, in the classes and in every event;
            # the foreign keys are checked once all of it is done.
            self.db.execute("PRAGMA defer_foreign_keys = ON")
            self.db.execute("DELETE FROM classes WHERE id = ?", (k,))
            for j in range(k + 1, len(names)):
                self.db.execute("UPDATE classes SET id = ? WHERE id = ?", (j - 1, j))
            self.db.execute(
                "UPDATE label_events SET class_id = class_id - 1 WHERE class_id > ?", (k,)
            )
        return self.classes()

    def check_item(self, item: object) -> int:
        """The item number ``item`` stands for; a clear error if it is not one of the session's."""
        if isinstance(item, bool):
            raise RalifInputError(f"unknown item {item!r}: item numbers are integers")
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        try:
            value = operator.index(item)
        except TypeError:
            raise RalifInputError(
                f"unknown item {_short(item)}: item numbers are integers"
            ) from None
        if not 0 <= value < self.n_items():
            raise RalifInputError(
                f"unknown item {_short(value)}; items are 0..{self.n_items() - 1}"
            )
        return value

    def item(self, item_id: int) -> tuple[str | None, str | None] | None:
        """``(path, text)`` of an item, or None if there is no such item."""
        if not isinstance(item_id, int) or not 0 <= item_id <= MAX_SQL_INT:
            return None
        row = self.db.execute("SELECT path, text FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    # -------------------------------------------------------------- transactions
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One write transaction, taken at once so that what is read inside stays true."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same state of the file."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the write-ahead log into the main file, so the ``.db`` alone is complete."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"unknown checkpoint mode {mode!r}")
        self.db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    def backup(self, out: str | os.PathLike) -> str:
        """A complete, consistent copy of the session at this moment (SQLite's online backup).

        Safe while the session is being served. ``out`` follows the rule of every
        ``--out`` (:func:`ralif.io.open_output`): ``-`` is standard output, a device or
        FIFO is written as it is, and a read-only folder is refused; a file is never
        overwritten, and it holds the token, so it is created readable by its owner only.
        """
        from ralif.io import check_output, open_output

        check_output(out, "session backup", exclusive=True)
        with tempfile.TemporaryDirectory(prefix="ralif-backup-") as tmp:
            copy_path = Path(tmp) / "session.db"  # the folder is the owner's only
            copy = sqlite3.connect(copy_path)
            try:
                self.db.backup(copy)
                copy.execute("PRAGMA journal_mode = DELETE")
            finally:
                copy.close()
            with (
                open(copy_path, "rb") as src,
                open_output(out, "session backup", binary=True, exclusive=True, mode=0o600) as fh,
            ):
                shutil.copyfileobj(src, fh, 1 << 20)
        return str(out)

    # -------------------------------------------------------------------- labels
    def _class_id(self, label: object) -> int:
        names = self.classes()
        if isinstance(label, str) and label in names:
            return names.index(label)
        value = None
        if isinstance(label, int) and not isinstance(label, bool):
            value = label
        elif isinstance(label, np.integer):
            value = int(label)
        elif isinstance(label, str) and label.strip().isdigit():
            value = int(label.strip())
        if value is not None and 0 <= value < len(names):
            return value
        raise RalifInputError(
            f"unknown class {_short(label)}; classes are {', '.join(names) or '(none defined)'}"
        )

    def add_label(
        self,
        item: object,
        label: object,
        who: str = "anonymous",
        held_out: bool = False,
        source: str = "web",
        request_id: str | None = None,
        unsure: bool = False,
    ) -> LabelResult:
        """Record one label; committed on return.

        ``label=None`` takes the item's label back; ``unsure=True`` (with no label) marks the
        item as one the labeler could not decide. A ``request_id`` makes retries safe: the
        same request twice is recorded once, and an id reused for another label is refused.
        """
        item = self.check_item(item)
        if unsure and label is not None:
            raise RalifInputError("an item is either labeled or marked unsure, not both")
        class_id = None if label is None else self._class_id(label)
        request_id = uuid.uuid4().hex if request_id is None else _check_request_id(request_id)
        if not isinstance(who, str):
            raise RalifInputError(f"who must be text, got {_short(who)}")
        who = who[:MAX_NAME]
        try:
            cur = self.db.execute(
                "INSERT INTO label_events "
                "(item_id, class_id, who, at, held_out, source, request_id, unsure) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    item,
                    class_id,
                    who,
                    _now(),
                    int(held_out),
                    source,
                    request_id,
                    int(unsure),
                ),
            )
        except sqlite3.IntegrityError:
            row = self.db.execute(
                "SELECT id, item_id, class_id, unsure, who, source FROM label_events "
                "WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                raise
            if (row[1], row[2], bool(row[3]), row[4], row[5]) != (
                item,
                class_id,
                unsure,
                who,
                source,
            ):
                raise RalifInputError(
                    f"request_id {request_id} was already used for another label "
                    f"(item {row[1]}); send a new id for a new label"
                ) from None
            # The same request sent twice (a retry after a lost answer): already recorded.
            return LabelResult(row[0], row[1], row[2], duplicate=True)
        return LabelResult(int(cur.lastrowid), item, class_id)

    def label_from_page(
        self,
        item: object,
        label: object,
        who: str,
        request_id: str | None = None,
        unsure: bool = False,
    ) -> LabelResult:
        """A label given on the labeling page: only items of the served batches, never held out.

        ``who`` is the labeler's identity (see :func:`check_labeler`). The check and the
        write are one transaction, so a batch closed meanwhile cannot be written into.
        """
        who = check_labeler(who)
        with self.writing():
            item = self.check_item(item)
            if item not in self.served_items():
                raise RalifInputError(
                    f"item {item} is not in a batch being labeled; "
                    "the page labels only the items of the open batches"
                )
            standing = self.current_labels(items=[item]).get(item)
            if standing is not None and standing[1]:
                raise RalifInputError(
                    f"item {item} belongs to the held-out evaluation set; "
                    "it cannot be relabeled on the page"
                )
            result = self.add_label(
                item, label, who=who, source="web", request_id=request_id, unsure=unsure
            )
        return result

    def undo_last(self, who: str, request_id: str | None = None) -> LabelResult | None:
        """Take back ``who``'s latest standing page label in the served batches; None if none.

        Only the caller's own labels are taken back, never another labeler's. The label
        leaves the item's history: the item gets back its latest label still standing, so
        undoing a correction restores the original, repeated undos walk back one label at a
        time, and a label someone else gave since stays. One transaction: concurrent undos
        each take back a different label. A ``request_id`` makes a retry safe: the same
        undo sent twice takes back one label.
        """
        who = check_labeler(who)
        with self.writing():
            if request_id is not None:
                request_id = _check_request_id(request_id)
                done = self._undo_done(request_id, who)
                if done is not None:
                    return done
            items = sorted(self.served_items())
            if not items:
                return None
            marks = ",".join("?" * len(items))
            row = self.db.execute(
                "SELECT e.id, e.item_id, e.request_id FROM label_events e "
                f"WHERE e.source = 'web' AND e.who = ? AND e.item_id IN ({marks}) AND "
                + _STANDING.format(e="e")
                + " ORDER BY e.id DESC LIMIT 1",
                [who, *items],
            ).fetchone()
            if row is None:
                return None
            target, item, took_back = int(row[0]), int(row[1]), row[2]
            # What the item is once the target leaves its history: its latest other standing
            # event (a later label by someone else, or the one before).
            rest = self.db.execute(
                "SELECT p.class_id, p.held_out, p.unsure FROM label_events p "
                "WHERE p.item_id = ? AND p.id != ? AND " + _STANDING.format(e="p") + " "
                "ORDER BY p.id DESC LIMIT 1",
                (item, target),
            ).fetchone()
            class_id, held, unsure = rest if rest is not None else (None, 0, 0)
            cur = self.db.execute(
                "INSERT INTO label_events "
                "(item_id, class_id, who, at, held_out, source, request_id, unsure, undoes) "
                "VALUES (?, ?, ?, ?, ?, 'undo', ?, ?, ?)",
                (item, class_id, who, _now(), held, request_id or uuid.uuid4().hex, unsure, target),
            )
        return LabelResult(int(cur.lastrowid), item, class_id, took_back=took_back)

    def _undo_done(self, request_id: str, who: str) -> LabelResult | None:
        """The undo already recorded under ``request_id``; an error if the id names another event."""
        row = self.db.execute(
            "SELECT u.id, u.item_id, u.who, u.source, t.request_id, u.class_id "
            "FROM label_events u LEFT JOIN label_events t ON t.id = u.undoes "
            "WHERE u.request_id = ?",
            (request_id,),
        ).fetchone()
        if row is None:
            return None
        if row[3] != "undo" or row[2] != who:
            raise RalifInputError(
                f"request_id {request_id} was already used for another request; "
                "send a new id for a new undo"
            )
        return LabelResult(int(row[0]), int(row[1]), row[5], duplicate=True, took_back=row[4])

    def import_labels(
        self, rows: Sequence[tuple[int, object]], who: str, held_out: bool = False
    ) -> int:
        """Record many labels in one transaction: all of them, or none if any is bad."""
        with self.writing():
            for item, label in rows:
                self.add_label(item, label, who=who, held_out=held_out, source="import")
        self.checkpoint()
        return len(rows)

    def labels_for_export(self, with_items: bool = False) -> tuple[list[str], list[tuple]]:
        """Column names and one row per labeled item: ``item, label, class_name, held_out,
        who, at`` (and the item's ``path, text`` with ``with_items``).

        ``who`` and ``at`` say who gave the label and when (the page's labeler identity,
        or the ``--who`` of an import), even where an undo since gave the label back.
        Read in one transaction, so the rows are a complete picture of one moment even
        while the session is being labeled.
        """
        extra = ", i.path, i.text" if with_items else ""
        with self.reading():
            rows = self.db.execute(
                "SELECT e.item_id, e.class_id, c.name, e.held_out, "
                f"COALESCE(g.who, e.who), COALESCE(g.at, e.at){extra} "
                "FROM label_events e JOIN classes c ON c.id = e.class_id "
                "JOIN items i ON i.id = e.item_id "
                "LEFT JOIN label_events g ON g.id = (SELECT MAX(s.id) FROM label_events s "
                "WHERE s.item_id = e.item_id AND " + _STANDING.format(e="s") + ") "
                "WHERE e.id = (SELECT MAX(id) FROM label_events WHERE item_id = e.item_id) "
                "ORDER BY e.item_id"
            ).fetchall()
        cols = ["item", "label", "class_name", "held_out", "who", "at"]
        return cols + (["path", "text"] if with_items else []), rows

    def latest_events(
        self, items: Sequence[int] | None = None, as_of: str | None = None
    ) -> list[tuple[int, int | None, int, int]]:
        """``(item, class_id, held_out, unsure)`` of each item's latest event (before ``as_of``)."""
        where, args = [], []
        if as_of:
            where.append("at < ?")
            args.append(as_of)
        if items is not None:
            where.append(f"item_id IN ({','.join('?' * len(items))})")
            args.extend(int(i) for i in items)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self.db.execute(
            "SELECT e.item_id, e.class_id, e.held_out, e.unsure FROM label_events e "
            f"JOIN (SELECT item_id, MAX(id) AS last FROM label_events {clause} GROUP BY item_id) m "
            "ON e.id = m.last",
            args,
        ).fetchall()

    def current_labels(
        self, as_of: str | None = None, items: Sequence[int] | None = None
    ) -> dict[int, tuple[int, bool]]:
        """``item -> (class_id, held_out)`` for every item whose latest event is a label.

        With ``as_of`` (an ISO time), the labels as they stood just before that time; with
        ``items``, only those items.
        """
        return {
            int(i): (int(c), bool(h))
            for i, c, h, _ in self.latest_events(items, as_of)
            if c is not None
        }

    def unsure_items(self) -> set[int]:
        """Items whose latest event marks them unsure (the labeler could not decide)."""
        return {int(i) for i, c, _, u in self.latest_events() if c is None and u}

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
        """Every event of one item, oldest first."""
        rows = self.db.execute(
            "SELECT class_id, who, at, source FROM label_events WHERE item_id = ? ORDER BY id",
            (self.check_item(item),),
        )
        return [dict(class_id=c, who=w, at=a, source=s) for c, w, a, s in rows]

    # -------------------------------------------------------------------- rounds
    def snapshot(self) -> tuple[int, int]:
        """``(latest round, latest event)``: what a batch was picked from."""
        row = self.db.execute(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM rounds), "
            "(SELECT COALESCE(MAX(id), 0) FROM label_events)"
        ).fetchone()
        return int(row[0]), int(row[1])

    def add_round(
        self,
        strategy: str,
        params: dict,
        items: Sequence[int],
        metrics: dict | None = None,
        picked_from: tuple[int, int] | None = None,
        force: bool = True,
    ) -> int | None:
        """Record a picked batch (before anyone sees it), in one transaction.

        With ``picked_from`` (the :meth:`snapshot` the batch was picked from), nothing is
        recorded and None is returned when another batch was recorded since, or one of the
        items was labeled since: the caller picks again. Without ``force``, an open batch
        is refused.
        """
        with self.writing():
            if not force:
                self.refuse_if_open()
            if picked_from is not None:
                last_round, last_event = picked_from
                if self.snapshot()[0] != last_round:
                    return None
                items = [int(i) for i in items]
                marks = ",".join("?" * len(items))
                touched = self.db.execute(
                    f"SELECT 1 FROM label_events WHERE id > ? AND item_id IN ({marks}) LIMIT 1",
                    [last_event, *items],
                ).fetchone()
                if touched:
                    return None
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
        return rid

    def rounds(self) -> list[dict]:
        """Every recorded batch: id, strategy, params, created_at, metrics, closed_at."""
        rows = self.db.execute(
            "SELECT id, strategy, params, created_at, metrics, closed_at FROM rounds ORDER BY id"
        )
        return [
            dict(
                id=i,
                strategy=s,
                params=json.loads(p),
                created_at=c,
                metrics=json.loads(m or "{}"),
                closed_at=x,
            )
            for i, s, p, c, m, x in rows
        ]

    def round_items(self, round_id: int) -> list[int]:
        """The items of one batch, in the order picked."""
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

    def waiting_by_round(self) -> dict[int, list[int]]:
        """``round -> items still waiting`` (neither labeled nor marked unsure) of unclosed rounds.

        Held-out items never wait: they are labeled by the held-out set, not on the page.
        """
        # Each item's latest event by an index seek, not a pass over every event: this runs
        # on every label the page gives.
        rows = self.db.execute(
            "SELECT r.round_id, r.item_id FROM round_items r JOIN rounds o ON o.id = r.round_id "
            "LEFT JOIN label_events e ON e.id = "
            "(SELECT MAX(id) FROM label_events WHERE item_id = r.item_id) "
            "WHERE o.closed_at IS NULL AND (e.id IS NULL OR (e.class_id IS NULL AND e.unsure = 0)) "
            "ORDER BY r.round_id, r.position"
        )
        out: dict[int, list[int]] = {}
        for rid, item in rows:
            out.setdefault(int(rid), []).append(int(item))
        return out

    def open_rounds(self) -> list[int]:
        """Batches not closed that still have items waiting for a label."""
        return sorted(self.waiting_by_round())

    def served_rounds(self) -> list[int]:
        """The batches the labeling page shows: every open batch and the latest unclosed one."""
        served = set(self.open_rounds())
        row = self.db.execute("SELECT MAX(id) FROM rounds WHERE closed_at IS NULL").fetchone()
        if row[0] is not None:
            served.add(int(row[0]))
        return sorted(served)

    def served_items(self) -> set[int]:
        """Items the labeling page may label: those of the served batches."""
        out: set[int] = set()
        for rid in self.served_rounds():
            out.update(self.round_items(rid))
        return out

    def pending_items(self) -> set[int]:
        """Items of unclosed batches that are still waiting for a label."""
        return {i for items in self.waiting_by_round().values() for i in items}

    def refuse_if_open(self) -> None:
        """A clear error naming the open batches, if there are any."""
        waiting = self.waiting_by_round()
        if waiting:
            names = ", ".join(f"{rid} ({len(items)} waiting)" for rid, items in waiting.items())
            raise RalifInputError(
                f"batch {names} is still open: label it with ralif serve, close it with "
                "ralif session close ROUND, or pass --force to pick another batch beside it"
            )

    def _check_round(self, round_id: object) -> int:
        if isinstance(round_id, bool) or not isinstance(round_id, int | np.integer):
            raise RalifInputError(f"unknown round {_short(round_id)}")
        rid = int(round_id)
        if (
            not 0 < rid <= MAX_SQL_INT
            or self.db.execute("SELECT 1 FROM rounds WHERE id = ?", (rid,)).fetchone() is None
        ):
            ids = [r["id"] for r in self.rounds()]
            raise RalifInputError(
                f"unknown round {_short(rid)}; rounds are {', '.join(map(str, ids)) or '(none yet)'}"
            )
        return rid

    def _closed_at(self, rid: int) -> str | None:
        return self.db.execute("SELECT closed_at FROM rounds WHERE id = ?", (rid,)).fetchone()[0]

    def close_round(self, round_id: int) -> int:
        """Close a batch: its waiting items go back to the pool; returns how many were waiting.

        An unknown batch, or one already closed, is refused (nothing changes).
        """
        with self.writing():
            rid = self._check_round(round_id)
            closed_at = self._closed_at(rid)
            if closed_at is not None:
                raise RalifInputError(
                    f"round {rid} is already closed (since {closed_at}); "
                    f"reopen it with ralif session reopen {rid}"
                )
            waiting = len(self.waiting_by_round().get(rid, []))
            self.db.execute("UPDATE rounds SET closed_at = ? WHERE id = ?", (_now(), rid))
        return waiting

    def reopen_round(self, round_id: int) -> int:
        """Reopen a closed batch; returns how many of its items wait for a label again.

        An unknown batch, or one that is not closed, is refused (nothing changes).
        """
        with self.writing():
            rid = self._check_round(round_id)
            if self._closed_at(rid) is None:
                raise RalifInputError(f"round {rid} is not closed, so there is nothing to reopen")
            self.db.execute("UPDATE rounds SET closed_at = NULL WHERE id = ?", (rid,))
            return len(self.waiting_by_round().get(rid, []))

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _migrate(db: sqlite3.Connection, version: int) -> None:
    for k in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while this one waited for the lock.
            if k > 0:
                now = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if now is not None and now[0] != str(k):
                    db.execute("ROLLBACK")
                    continue
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


def _create_owner_only(path: Path) -> None:
    """Create an empty file readable by its owner only; an existing path (or symlink) is refused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, OWNER_ONLY)
    try:
        os.fchmod(fd, OWNER_ONLY)
    finally:
        os.close(fd)


def create_session(
    path: str | os.PathLike,
    features: str | os.PathLike,
    n_items: int,
    classes: Sequence[str] = (),
    manifest: Sequence[tuple[str | None, str | None]] | None = None,
    items_root: str | os.PathLike | None = None,
) -> SessionStore:
    """Create a new session database (refusing to overwrite an existing file).

    Parameters
    ----------
    path : path-like
        The database to create; created readable by its owner only (it holds the token).
    features : path-like
        The features file, one row per item.
    n_items : int
        Rows of the features file.
    classes : sequence of str
        The class names (at least one; more can be added later).
    manifest : sequence of (path, text), optional
        What to show for each item.
    items_root : path-like, optional
        The folder item paths are relative to.

    Returns
    -------
    SessionStore
    """
    if str(path) == "-":
        raise RalifInputError("a session database must be a file: give --db a path, not '-'")
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise RalifInputError(f"{path} already exists; pick another --db or remove it")
    classes = check_class_names(list(classes))
    if not classes:
        raise RalifInputError(
            "a session needs its classes: give them with --classes a,b,c "
            "(more can be added later with ralif session add-class)"
        )
    if manifest is not None and len(manifest) != n_items:
        raise RalifInputError(
            f"the manifest lists {len(manifest)} items but the features have {n_items} rows"
        )
    from ralif.io import _writable_folder  # the rule of every output's folder

    _writable_folder(path.parent, "session database", path)
    try:
        _create_owner_only(path)
    except FileExistsError:
        raise RalifInputError(f"{path} already exists; pick another --db or remove it") from None
    except OSError as exc:
        raise RalifInputError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
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
    except BaseException:
        # A half-made session would be refused as damaged later: leave nothing behind.
        with contextlib.suppress(Exception):
            db.close()
        for p in _companions(path):
            with contextlib.suppress(OSError):
                p.unlink()
        raise
    return SessionStore(path, db)


def _damaged(path: Path, why: str) -> RalifInputError:
    return RalifInputError(
        f"{path} is a damaged ralif session database ({why}); restore it from a backup "
        "(ralif session backup makes one)"
    )


@functools.lru_cache(maxsize=1)
def _expected_columns() -> dict[str, tuple[str, ...]]:
    """The columns of every table of a session database, as this version creates them."""
    db = sqlite3.connect(":memory:")
    try:
        _migrate(db, 0)
        return {t: tuple(r[1] for r in db.execute(f"PRAGMA table_info({t})")) for t in TABLES}
    finally:
        db.close()


def _schema_differences(db: sqlite3.Connection) -> str:
    """What differs between a database's tables and the current schema ('' if nothing)."""
    problems = []
    for table, columns in _expected_columns().items():
        have = tuple(r[1] for r in db.execute(f"PRAGMA table_info({table})"))
        lost = [c for c in columns if c not in have]
        if lost:
            problems.append(f"table {table} lacks column(s) {', '.join(lost)}")
    return "; ".join(problems)


def open_session(path: str | os.PathLike, check: bool = True) -> SessionStore:
    """Open an existing session; a missing, read-only, corrupt, damaged or foreign file gets a clear error.

    Parameters
    ----------
    path : path-like
        The session database.
    check : bool
        Read every page of the file (SQLite's ``quick_check``) so that damage anywhere is
        found now rather than halfway through a command.

    Returns
    -------
    SessionStore
    """
    path = Path(path)
    if not path.exists():
        raise RalifInputError(
            f"session database not found: {path} (create it with ralif session init)"
        )
    if not path.is_file():
        raise RalifInputError(f"{path} is not a file, so not a session database")
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(
        path.resolve().parent, os.W_OK | os.X_OK
    ):
        raise _readonly_error(path)
    db = None
    try:
        db = _connect(path)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        app = (
            db.execute("SELECT value FROM meta WHERE key='app'").fetchone()
            if "meta" in tables
            else None
        )
        if app is None or app[0] != APP_ID:
            raise RalifInputError(f"{path} is an SQLite file but not a ralif session database")
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise _damaged(path, "no schema_version")
        try:
            version = int(str(row[0]).strip())
        except ValueError:
            raise _damaged(path, f"schema_version {_short(row[0])} is not a number") from None
        if version <= 0:
            raise _damaged(path, f"schema_version {version} is not a version")
        if version > SCHEMA_VERSION:
            raise RalifInputError(
                f"{path} was written by a newer ralif (schema {version} > {SCHEMA_VERSION})"
            )
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise _damaged(path, f"missing table(s) {', '.join(missing)}")
        if check:
            problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise _damaged(path, "; ".join(problems)[:300])
        db.execute("PRAGMA journal_mode = WAL")
        _migrate(db, version)
        damaged = _schema_differences(db)
        if damaged:
            raise _damaged(path, damaged)
    except RalifInputError:
        if db is not None:
            db.close()
        raise
    except UnicodeDecodeError:  # the schema's own text is damaged
        if db is not None:
            db.close()
        raise _damaged(path, "its schema is not UTF-8 text") from None
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        if isinstance(exc, sqlite3.OperationalError) and _is_readonly_error(exc):
            raise _readonly_error(path) from None
        if "not a database" in str(exc) or "encrypted" in str(exc):
            raise RalifInputError(
                f"{path} is not a ralif session database (not SQLite, or corrupt: {exc})"
            ) from None
        raise _damaged(path, str(exc)) from None
    _owner_only(path)
    return SessionStore(path, db)
