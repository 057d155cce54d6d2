"""Backup and migration: the schema, its checks and upgrades, the file's permissions, backup.

The file holds the session's secret token, so it (and its ``-wal`` and ``-shm``
companions, which SQLite creates with the same permissions) is readable by its owner only.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

from ralif._validation import RalifInputError
from ralif.session._common import _short

APP_ID = "ralif-session"
SCHEMA_VERSION = 2
TABLES = ("meta", "items", "classes", "rounds", "round_items", "label_events")
OWNER_ONLY = 0o600

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


def _check_session_file(path: Path) -> None:
    """A clear error unless ``path`` is a file that can be read and written, in a folder
    where SQLite can create the ``-wal`` and ``-shm`` files."""
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


def _schema_version(db: sqlite3.Connection, path: Path) -> int:
    """The schema version of a ralif session database with every table; an error for a
    foreign file, a damaged one, or one written by a newer ralif."""
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
    return version


def _open_checked(path: Path, check: bool) -> sqlite3.Connection:
    """A connection to the session database at ``path``: checked (every page with
    ``check``), in WAL mode and upgraded to the current schema; a clear error otherwise."""
    db = None
    try:
        db = _connect(path)
        version = _schema_version(db, path)
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
    return db


class BackupMixin:
    """Folding the write-ahead log in and copying the whole session, for a
    :class:`~ralif.session.store.SessionStore`."""

    db: sqlite3.Connection

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the write-ahead log into the main file, so the ``.db`` alone is complete.

        Parameters
        ----------
        mode : {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
            SQLite's checkpoint mode (``PRAGMA wal_checkpoint``); ``TRUNCATE`` also empties
            the log.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> _ = s.add_label(0, "cat")
        >>> s.checkpoint("TRUNCATE")
        >>> (folder / "s.db-wal").stat().st_size
        0
        >>> s.close()
        """
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"unknown checkpoint mode {mode!r}")
        self.db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    def backup(self, out: str | os.PathLike) -> str:
        """Write a complete, consistent copy of the session at this moment (SQLite's online backup).

        Safe while the session is being served. ``out`` follows the rule of every
        ``--out`` (:func:`ralif.io.open_output`): ``-`` is standard output, a device or
        FIFO is written as it is, and a read-only folder is refused; a file is never
        overwritten, and it holds the token, so it is created readable by its owner only.

        Parameters
        ----------
        out : str or path-like
            Where to write the copy: a new file, ``-``, a device or a FIFO.

        Returns
        -------
        str
            ``out``, as text.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session, open_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> _ = s.add_label(0, "cat")
        >>> copy = s.backup(folder / "copy.db")
        >>> with open_session(copy) as c:
        ...     c.label_array()[0].tolist()
        [0, -1, -1]
        >>> s.close()
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
