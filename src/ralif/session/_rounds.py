"""Rounds: the batches picked, recorded before anyone sees them, served, closed, reopened."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, cast

import numpy as np

from ralif._validation import RalifInputError
from ralif.session._common import MAX_SQL_INT, _now, _short


class RoundsMixin:
    """The rounds of a :class:`~ralif.session.store.SessionStore`: each batch picked, which
    of them are open and served, and closing or reopening one."""

    db: sqlite3.Connection

    if TYPE_CHECKING:  # from SessionStore

        def writing(self) -> AbstractContextManager[None]: ...

    def snapshot(self) -> tuple[int, int]:
        """Return ``(latest round, latest event)``: what a batch was picked from.

        Returns
        -------
        tuple of (int, int)
            The latest round's id and the latest label event's id (0 where there is none).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.snapshot()
        (0, 0)
        >>> s.add_round("random", {}, [0, 1])
        1
        >>> s.snapshot()
        (1, 0)
        >>> s.close()
        """
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

        Parameters
        ----------
        strategy : str
            The name of the strategy that picked the batch.
        params : dict
            Its parameters, stored as JSON.
        items : sequence of int
            The batch's items, in the order picked.
        metrics : dict, optional
            Measurements to keep with the round, stored as JSON.
        picked_from : tuple of (int, int), optional
            The :meth:`snapshot` the batch was picked from.
        force : bool
            Record the batch even while another is open.

        Returns
        -------
        int or None
            The new round's id; None if nothing was recorded (see ``picked_from``).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> before = s.snapshot()
        >>> s.add_round("random", {"seed": 0}, [2, 0], picked_from=before)
        1
        >>> print(s.add_round("random", {"seed": 1}, [1], picked_from=before))
        None
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
            rid = int(cast(int, cur.lastrowid))
            self.db.executemany(
                "INSERT INTO round_items (round_id, item_id, position) VALUES (?, ?, ?)",
                [(rid, int(i), k) for k, i in enumerate(items)],
            )
        return rid

    def rounds(self) -> list[dict]:
        """Return every recorded batch: id, strategy, params, created_at, metrics, closed_at.

        Returns
        -------
        list of dict
            One per round, oldest first; ``closed_at`` is None for a batch not closed.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {"seed": 0}, [2, 0])
        1
        >>> batch = s.rounds()[0]
        >>> batch["id"], batch["strategy"], batch["params"], batch["closed_at"]
        (1, 'random', {'seed': 0}, None)
        >>> s.close()
        """
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
        """Return the items of one batch, in the order picked.

        Parameters
        ----------
        round_id : int
            The round's id.

        Returns
        -------
        list of int
            The item numbers (none for an unknown round).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [2, 0])
        1
        >>> s.round_items(1)
        [2, 0]
        >>> s.close()
        """
        rows = self.db.execute(
            "SELECT item_id FROM round_items WHERE round_id = ? ORDER BY position", (round_id,)
        )
        return [int(r[0]) for r in rows]

    def current_batch(self) -> tuple[int | None, list[int]]:
        """Return the latest round and its items in the order picked.

        Returns
        -------
        round : int or None
            The latest round's id; None before the first.
        items : list of int
            Its items, in the order picked.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.current_batch()
        (None, [])
        >>> s.add_round("random", {}, [2, 0])
        1
        >>> s.current_batch()
        (1, [2, 0])
        >>> s.close()
        """
        row = self.db.execute("SELECT MAX(id) FROM rounds").fetchone()
        if row[0] is None:
            return None, []
        return int(row[0]), self.round_items(int(row[0]))

    def waiting_by_round(self) -> dict[int, list[int]]:
        """Return each unclosed round's items still waiting (neither labeled nor marked unsure).

        Held-out items never wait: they are labeled by the held-out set, not on the page.

        Returns
        -------
        dict of int to list of int
            ``round -> items still waiting``, in the order picked; a round with none waiting
            is left out.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [2, 0])
        1
        >>> _ = s.add_label(2, "dog")
        >>> s.waiting_by_round()
        {1: [0]}
        >>> s.close()
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
        """Return the batches not closed that still have items waiting for a label.

        Returns
        -------
        list of int
            Their round ids, in order.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [0])
        1
        >>> s.open_rounds()
        [1]
        >>> _ = s.add_label(0, "cat")
        >>> s.open_rounds()
        []
        >>> s.close()
        """
        return sorted(self.waiting_by_round())

    def served_rounds(self) -> list[int]:
        """Return the batches the labeling page shows: every open batch and the latest unclosed one.

        Returns
        -------
        list of int
            Their round ids, in order.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [0])
        1
        >>> _ = s.add_label(0, "cat")
        >>> s.open_rounds(), s.served_rounds()
        ([], [1])
        >>> s.close()
        """
        served = set(self.open_rounds())
        row = self.db.execute("SELECT MAX(id) FROM rounds WHERE closed_at IS NULL").fetchone()
        if row[0] is not None:
            served.add(int(row[0]))
        return sorted(served)

    def served_items(self) -> set[int]:
        """Return the items the labeling page may label: those of the served batches.

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
        >>> s.add_round("random", {}, [2, 0])
        1
        >>> sorted(s.served_items())
        [0, 2]
        >>> s.close()
        """
        out: set[int] = set()
        for rid in self.served_rounds():
            out.update(self.round_items(rid))
        return out

    def pending_items(self) -> set[int]:
        """Return the items of unclosed batches that are still waiting for a label.

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
        >>> s.add_round("random", {}, [2, 0])
        1
        >>> _ = s.add_label(2, "dog")
        >>> s.pending_items()
        {0}
        >>> s.close()
        """
        return {i for items in self.waiting_by_round().values() for i in items}

    def refuse_if_open(self) -> None:
        """Raise a clear error naming the open batches, if there are any.

        Raises
        ------
        RalifInputError
            If a batch not closed still has items waiting for a label.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.refuse_if_open()
        >>> s.add_round("random", {}, [0, 1])
        1
        >>> s.refuse_if_open()
        Traceback (most recent call last):
        ...
        ralif._validation.RalifInputError: batch 1 (2 waiting) is still open: label it with ralif serve, close it with ralif session close ROUND, or pass --force to pick another batch beside it
        >>> s.close()
        """
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

        Parameters
        ----------
        round_id : int
            The round's id.

        Returns
        -------
        int
            How many of its items were waiting for a label.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [0, 1])
        1
        >>> _ = s.add_label(0, "cat")
        >>> s.close_round(1)
        1
        >>> s.open_rounds()
        []
        >>> s.close()
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

        Parameters
        ----------
        round_id : int
            The round's id.

        Returns
        -------
        int
            How many of its items wait for a label again.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ralif.session.store import create_session
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> s = create_session(folder / "s.db", folder / "X.npy", 3, ["cat", "dog"])
        >>> s.add_round("random", {}, [0, 1])
        1
        >>> s.close_round(1)
        2
        >>> s.reopen_round(1)
        2
        >>> s.open_rounds()
        [1]
        >>> s.close()
        """
        with self.writing():
            rid = self._check_round(round_id)
            if self._closed_at(rid) is None:
                raise RalifInputError(f"round {rid} is not closed, so there is nothing to reopen")
            self.db.execute("UPDATE rounds SET closed_at = NULL WHERE id = ?", (rid,))
            return len(self.waiting_by_round().get(rid, []))
