"""Labels: given (from the page, an import or Python), taken back, read and exported.

Labels are never overwritten: each one given (or taken back) is a new row of
``label_events``; an item's label is its latest event.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from ralif._validation import RalifInputError
from ralif.session._common import MAX_NAME, _now, _short

REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A labeler's identity as the page sends it (made by the browser, so hostile until checked).
LABELER = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Events that still count: neither an undo nor undone. The item's effective history is
# these events in order; undoing its last one restores the one before.
_STANDING = (
    "{e}.undoes IS NULL AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = {e}.id)"
)


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


class LabelsMixin:
    """The labels of a :class:`~ralif.session.store.SessionStore`: written one transaction
    at a time, taken back by undo, read as each item's latest event."""

    db: sqlite3.Connection

    if TYPE_CHECKING:  # from SessionStore and its other parts

        def writing(self) -> AbstractContextManager[None]: ...
        def reading(self) -> AbstractContextManager[None]: ...
        def n_items(self) -> int: ...
        def check_item(self, item: object) -> int: ...
        def _class_id(self, label: object) -> int: ...
        def served_items(self) -> set[int]: ...
        def checkpoint(self, mode: str = "PASSIVE") -> None: ...

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

        Parameters
        ----------
        item, label : object
            The item's number, and its class by name or number (None takes the label back).
        who, source, request_id : str
            Who gave it, from where (``"web"``, ``"import"``), and an optional request id.
        held_out, unsure : bool
            Whether the item is held out; whether it is marked unsure (with no label).

        Returns
        -------
        LabelResult
            The event; ``duplicate`` if its ``request_id`` was recorded before (a retry).

        Examples
        --------
        >>> import tempfile, ralif.session.store as store
        >>> with store.create_session(tempfile.mkdtemp() + "/s.db", "X", 3, ["cat", "dog"]) as s:
        ...     s.add_label(0, "dog").class_id
        1
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
        return LabelResult(int(cast(int, cur.lastrowid)), item, class_id)

    def label_from_page(
        self,
        item: object,
        label: object,
        who: str,
        request_id: str | None = None,
        unsure: bool = False,
    ) -> LabelResult:
        """Record a label from the labeling page: only items of the served batches, never held out.

        The check and the write are one transaction, so a batch closed meanwhile cannot be
        written into.

        Parameters
        ----------
        item : object
            The item's number (see :meth:`check_item`).
        label : object
            Its class, by name or number; None takes the item's label back.
        who : str
            The labeler's identity (see :func:`check_labeler`).
        request_id : str, optional
            Makes a retry safe: the same request twice is recorded once.
        unsure : bool
            Mark the item as one the labeler could not decide instead of labeling it.

        Returns
        -------
        LabelResult
            The event recorded (see :meth:`add_label`).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [0, 1])
        1
        >>> s.label_from_page(0, "dog", who="web-1").class_id
        1
        >>> s.label_from_page(2, "dog", who="web-1")
        Traceback (most recent call last):
        ...
        ralif._validation.RalifInputError: item 2 is not in a batch being labeled; the page labels only the items of the open batches
        >>> s.close()
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

        Parameters
        ----------
        who : str
            The labeler's identity (see :func:`check_labeler`).
        request_id : str, optional
            The undo's id: 1 to 64 letters, digits, ``-`` or ``_``.

        Returns
        -------
        LabelResult or None
            The undo: ``item`` is the item, ``class_id`` its label now and ``took_back`` the
            request id of the label taken back; None if ``who`` has no label to take back.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [0, 1])
        1
        >>> s.label_from_page(0, "dog", who="web-1").class_id
        1
        >>> undo = s.undo_last("web-1")
        >>> undo.item, undo.class_id
        (0, None)
        >>> print(s.undo_last("web-1"))
        None
        >>> s.close()
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
        return LabelResult(int(cast(int, cur.lastrowid)), item, class_id, took_back=took_back)

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
        """Record many labels in one transaction: all of them, or none if any is bad.

        Parameters
        ----------
        rows : sequence of (int, object)
            ``(item, label)`` pairs; a label is a class name or number (None takes it back).
        who : str
            Who gave the labels (the ``--who`` of an import).
        held_out : bool
            Whether the items belong to the held-out evaluation set.

        Returns
        -------
        int
            How many labels were recorded.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.import_labels([(0, "cat"), (2, "dog")], who="ann")
        2
        >>> s.import_labels([(1, "cat"), (5, "dog")], who="ann")
        Traceback (most recent call last):
        ...
        ralif._validation.RalifInputError: unknown item 5; items are 0..2
        >>> s.label_array()[0].tolist()
        [0, -1, 1]
        >>> s.close()
        """
        with self.writing():
            for item, label in rows:
                self.add_label(item, label, who=who, held_out=held_out, source="import")
        self.checkpoint()
        return len(rows)

    def labels_for_export(self, with_items: bool = False) -> tuple[list[str], list[tuple]]:
        """Return the column names and one row per labeled item, for the export.

        The columns are ``item, label, class_name, held_out, who, at`` (and the item's
        ``path, text`` with ``with_items``). ``who`` and ``at`` say who gave the label and
        when (the page's labeler identity, or the ``--who`` of an import), even where an
        undo since gave the label back. Read in one transaction, so the rows are a complete
        picture of one moment even while the session is being labeled.

        Parameters
        ----------
        with_items : bool
            Add each item's ``path`` and ``text`` columns.

        Returns
        -------
        list of str
            The column names.
        list of tuple
            One row per labeled item, in the order of the items.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_label(1, "dog", who="ann").class_id
        1
        >>> columns, rows = s.labels_for_export()
        >>> columns
        ['item', 'label', 'class_name', 'held_out', 'who', 'at']
        >>> rows[0][:5]
        (1, 1, 'dog', 0, 'ann')
        >>> s.close()
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
        """Return each item's latest event as ``(item, class_id, held_out, unsure)``.

        Parameters
        ----------
        items : sequence of int, optional
            Only these items; by default every item that has an event.
        as_of : str, optional
            An ISO time: the latest event before it.

        Returns
        -------
        list of tuple
            One ``(item, class_id, held_out, unsure)`` per item, in no particular order;
            ``class_id`` is None where the label was taken back or the item marked unsure.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> _ = s.add_label(2, "dog"), s.add_label(0, None, unsure=True)
        >>> sorted(s.latest_events())
        [(0, None, 0, 1), (2, 1, 0, 0)]
        >>> s.close()
        """
        where: list[str] = []
        args: list[str | int] = []
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
        """Return ``item -> (class_id, held_out)`` for every item whose latest event is a label.

        Parameters
        ----------
        as_of : str, optional
            An ISO time: the labels as they stood just before that time.
        items : sequence of int, optional
            Only those items.

        Returns
        -------
        dict of int to (int, bool)
            Each labeled item's class number and whether it is held out.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_label(1, "dog", held_out=True).class_id
        1
        >>> s.current_labels()
        {1: (1, True)}
        >>> s.close()
        """
        return {
            int(i): (int(c), bool(h))
            for i, c, h, _ in self.latest_events(items, as_of)
            if c is not None
        }

    def unsure_items(self) -> set[int]:
        """Return the items whose latest event marks them unsure (the labeler could not decide).

        Returns
        -------
        set of int
            The item numbers.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> _ = s.add_label(2, None, unsure=True)
        >>> s.unsure_items()
        {2}
        >>> s.close()
        """
        return {int(i) for i, c, _, u in self.latest_events() if c is None and u}

    def label_array(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(y, held_out)`` over all items: ``y`` is -1 where unlabeled.

        Returns
        -------
        y : numpy.ndarray of int64
            Each item's class number; -1 where unlabeled.
        held_out : numpy.ndarray of bool
            Whether each item belongs to the held-out evaluation set.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_label(1, "dog").class_id
        1
        >>> y, held_out = s.label_array()
        >>> y.tolist(), held_out.tolist()
        ([-1, 1, -1], [False, False, False])
        >>> s.close()
        """
        n = self.n_items()
        y = np.full(n, -1, dtype=np.int64)
        held = np.zeros(n, dtype=bool)
        for item, (c, h) in self.current_labels().items():
            y[item] = c
            held[item] = h
        return y, held

    def history(self, item: int) -> list[dict]:
        """Return every event of one item, oldest first.

        Parameters
        ----------
        item : int
            The item's number.

        Returns
        -------
        list of dict
            One ``{class_id, who, at, source}`` per event; ``class_id`` is None where the
            label was taken back or the item marked unsure.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> _ = s.add_label(0, "cat", who="ann"), s.add_label(0, "dog", who="bob")
        >>> [(event["class_id"], event["who"]) for event in s.history(0)]
        [(0, 'ann'), (1, 'bob')]
        >>> s.close()
        """
        rows = self.db.execute(
            "SELECT class_id, who, at, source FROM label_events WHERE item_id = ? ORDER BY id",
            (self.check_item(item),),
        )
        return [dict(class_id=c, who=w, at=a, source=s) for c, w, a, s in rows]
