"""The session's classes: their names, checked by one rule, added, renamed and removed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import numpy as np

from ralif._validation import RalifInputError
from ralif.session._common import MAX_NAME, _short


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


class ClassesMixin:
    """The classes of a :class:`~ralif.session.store.SessionStore`: listed, added, renamed,
    removed, and a label read as one of them."""

    db: sqlite3.Connection

    if TYPE_CHECKING:  # from SessionStore and its labels

        def writing(self) -> AbstractContextManager[None]: ...
        def current_labels(
            self, as_of: str | None = None, items: Sequence[int] | None = None
        ) -> dict[int, tuple[int, bool]]: ...

    def classes(self) -> list[str]:
        """Return the class names, in the order of their numbers.

        Returns
        -------
        list of str
            The names; a class's number is its position in the list.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.classes()
        ['cat', 'dog']
        >>> s.close()
        """
        return [r[0] for r in self.db.execute("SELECT name FROM classes ORDER BY id")]

    def add_classes(self, names: Sequence[str]) -> list[str]:
        """Append classes (numbered after the existing ones); all of them or none.

        Parameters
        ----------
        names : sequence of str
            The new classes' names, checked by :func:`check_class_names`.

        Returns
        -------
        list of str
            The classes after the addition.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_classes(["owl", "emu"])
        ['cat', 'dog', 'owl', 'emu']
        >>> s.close()
        """
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
        >>> from ralif.session.store import create_session
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
        >>> from ralif.session.store import create_session
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
