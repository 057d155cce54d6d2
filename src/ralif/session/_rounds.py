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
            rid = int(cast(int, cur.lastrowid))
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
