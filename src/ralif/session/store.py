"""The session store: one SQLite file holding items, classes, rounds and every label given.

Labels are never overwritten: each one given (or taken back) is a new row of
``label_events``; an item's label is its latest event. Every write is one transaction,
committed before the caller is told it succeeded, so a crash loses nothing acknowledged.

The file holds the session's secret token, so it (and its ``-wal`` and ``-shm``
companions, which SQLite creates with the same permissions) is readable by its owner only.
"""

from __future__ import annotations

import contextlib
import operator
import os
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import SupportsIndex, cast

from ralif._files import os_error
from ralif._validation import RalifInputError
from ralif.session._backup import (
    APP_ID,
    MIGRATIONS,
    OWNER_ONLY,
    SCHEMA_VERSION,
    TABLES,
    BackupMixin,
    _check_session_file,
    _companions,
    _connect,
    _create_owner_only,
    _migrate,
    _open_checked,
    _owner_only,
)
from ralif.session._classes import ClassesMixin, check_class_names, split_class_names
from ralif.session._common import MAX_NAME, MAX_SQL_INT, _now, _short
from ralif.session._labels import LABELER, REQUEST_ID, LabelResult, LabelsMixin, check_labeler
from ralif.session._rounds import RoundsMixin

__all__ = [
    "APP_ID",
    "LABELER",
    "MAX_NAME",
    "MAX_SQL_INT",
    "MIGRATIONS",
    "OWNER_ONLY",
    "REQUEST_ID",
    "SCHEMA_VERSION",
    "TABLES",
    "LabelResult",
    "SessionStore",
    "check_class_names",
    "check_labeler",
    "create_session",
    "open_session",
    "split_class_names",
]


class SessionStore(ClassesMixin, LabelsMixin, RoundsMixin, BackupMixin):
    """An open session database. Use :func:`create_session` or :func:`open_session`.

    The metadata, items and transactions are here; the classes, labels, rounds and
    backup live in their own modules (:mod:`ralif.session._classes`,
    :mod:`ralif.session._labels`, :mod:`ralif.session._rounds`,
    :mod:`ralif.session._backup`), combined here.

    Parameters
    ----------
    path : Path
        The database file.
    db : sqlite3.Connection
        Its open connection.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with create_session(folder / "s.db", folder / "X.npy", 4, ["a", "b"]) as s:
    ...     s.path.name, s.n_items()
    ('s.db', 4)
    """

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db
        self._n_items: int | None = None

    # ------------------------------------------------------------------ metadata
    def meta(self, key: str) -> str | None:
        """Return the value stored under ``key`` in the session's metadata, or None.

        Parameters
        ----------
        key : str
            The name of the value, e.g. ``"features"`` or ``"created_at"``.

        Returns
        -------
        str or None
            The value, or None if the metadata has no ``key``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.meta("app"), s.meta("no such key")
        ('ralif-session', None)
        >>> s.close()
        """
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def token(self) -> str:
        """The secret every request to the labeling page must carry.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> len(s.token)
        32
        >>> s.close()
        """
        return self.meta("token") or ""

    @property
    def features_path(self) -> Path:
        """The features file the session was created over.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.features_path.name
        'X.npy'
        >>> s.close()
        """
        return Path(self.meta("features") or "")

    @property
    def items_root(self) -> Path | None:
        """The folder item paths are relative to (the manifest's folder), if any.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> print(s.items_root)
        None
        >>> s.close()
        """
        root = self.meta("items_root")
        return Path(root) if root else None

    def n_items(self) -> int:
        """Return how many items (rows of the features file) the session has.

        Returns
        -------
        int
            The number of items.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.n_items()
        3
        >>> s.close()
        """
        if self._n_items is None:
            self._n_items = int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        return self._n_items

    def check_item(self, item: object) -> int:
        """Return the item number that ``item`` stands for.

        Anything that is not one of the session's items gets a clear error.

        Parameters
        ----------
        item : object
            An item number: an integer, or its digits as text (as a form sends it).

        Returns
        -------
        int
            The item number, from 0 to ``n_items() - 1``.

        Raises
        ------
        RalifInputError
            If ``item`` is not one of the session's item numbers.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.check_item("2")
        2
        >>> s.check_item(3)
        Traceback (most recent call last):
        ...
        ralif._validation.RalifInputError: unknown item 3; items are 0..2
        >>> s.close()
        """
        if isinstance(item, bool):
            raise RalifInputError(f"unknown item {item!r}: item numbers are integers")
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        try:
            value = operator.index(cast(SupportsIndex, item))  # anything else: TypeError
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
        """Return the ``(path, text)`` of an item, or None if there is no such item.

        Parameters
        ----------
        item_id : int
            The item's number.

        Returns
        -------
        tuple of (str or None, str or None), or None
            The item's image path (relative to :attr:`items_root`) and its text, each None
            where the manifest gave none; None for an unknown item.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> manifest = [("a.jpg", None), (None, "a dog")]
        >>> s = create_session(folder / "s.db", folder / "X.npy", 2, ["cat", "dog"], manifest)
        >>> s.item(0), s.item(1)
        (('a.jpg', None), (None, 'a dog'))
        >>> print(s.item(2))
        None
        >>> s.close()
        """
        if not isinstance(item_id, int) or not 0 <= item_id <= MAX_SQL_INT:
            return None
        row = self.db.execute("SELECT path, text FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    # -------------------------------------------------------------- transactions
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Run the block in one write transaction, taken at once so what is read in it stays true.

        The transaction commits when the block ends and is rolled back if it raises.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> with s.writing():
        ...     s.add_label(0, "cat").class_id
        ...     s.add_label(1, "dog").class_id
        0
        1
        >>> s.label_array()[0].tolist()
        [0, 1, -1]
        >>> s.close()
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Run the block in one read transaction: every query in it sees one state of the file.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> with s.reading():
        ...     s.n_items(), s.classes()
        (3, ['cat', 'dog'])
        >>> s.close()
        """
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.close()
        >>> s.classes()
        Traceback (most recent call last):
        ...
        sqlite3.ProgrammingError: Cannot operate on a closed database.
        """
        self.db.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_new_session(
    path: str | os.PathLike,
    n_items: int,
    classes: Sequence[str],
    manifest: Sequence[tuple[str | None, str | None]] | None,
) -> tuple[Path, list[str]]:
    """The path and checked classes of a session to create; a clear error for a bad request."""
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
    return path, classes


def _fill_new_session(
    path: Path,
    features: str | os.PathLike,
    items_root: str | os.PathLike | None,
    classes: list[str],
    rows: Sequence[tuple[str | None, str | None]],
) -> sqlite3.Connection:
    """Make the new, empty file a session in one transaction: schema, metadata, classes, items.

    On any failure the file and its companions are removed.
    """
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
    return db


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
        The new session, open.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
    >>> s.classes(), s.n_items()
    (['cat', 'dog'], 3)
    >>> s.close()
    """
    path, classes = _check_new_session(path, n_items, classes, manifest)
    from ralif.io import _writable_folder  # the rule of every output's folder

    _writable_folder(path.parent, "session database", path)
    with os_error("create", str(path)):
        try:
            _create_owner_only(path)
        except FileExistsError:
            raise RalifInputError(
                f"{path} already exists; pick another --db or remove it"
            ) from None
    rows = manifest or [(None, None)] * n_items
    return SessionStore(path, _fill_new_session(path, features, items_root, classes, rows))


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
        The session, open; close it (or use it in a ``with`` block) when done.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"]).close()
    >>> with open_session(folder / "s.db") as s:
    ...     s.classes()
    ['cat', 'dog']
    """
    path = Path(path)
    _check_session_file(path)
    db = _open_checked(path, check)
    _owner_only(path)
    return SessionStore(path, db)
