"""Benchmark results in SQLite (the source of truth) mirrored to ``results.csv``.

Every (strategy, seed, round) row is committed the moment it is known, so a killed run
loses at most the round in flight; the CSV is rebuilt from the database on open.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError
from ralif.io import write_csv
from ralif.loop import RoundResult

SCHEMA_VERSION = 2
COLUMNS = (
    "strategy", "seed", "round", "n_labeled", "accuracy", "macro_f1",
    "select_seconds", "fit_seconds", "l2", "net_accuracy", "train_seconds", "extract_seconds",
)  # fmt: skip
# Columns added after version 1, with their types: the migration adds them.
_ADDED_IN_2 = (("net_accuracy", "REAL"), ("train_seconds", "REAL"), ("extract_seconds", "REAL"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    strategy TEXT NOT NULL,
    seed INTEGER NOT NULL,
    round INTEGER NOT NULL,
    n_labeled INTEGER NOT NULL,
    accuracy REAL NOT NULL,
    macro_f1 REAL NOT NULL,
    select_seconds REAL NOT NULL,
    fit_seconds REAL NOT NULL,
    l2 REAL,
    picks TEXT NOT NULL,
    net_accuracy REAL,
    train_seconds REAL,
    extract_seconds REAL,
    PRIMARY KEY (strategy, seed, round)
);
"""


class ResultStore:
    """The results of one benchmark configuration in a folder.

    Parameters
    ----------
    folder : path-like
        Holds ``results.sqlite`` and ``results.csv``.
    config : dict, optional
        What defines the benchmark (dataset, sizes...). A folder that already holds a
        different configuration is refused, so results of two setups never mix.
    """

    def __init__(self, folder: str | os.PathLike, config: dict | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.folder / "results.sqlite"
        self.csv_path = self.folder / "results.csv"
        try:
            self.db = sqlite3.connect(self.db_path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RalifInputError(
                f"{self.db_path} is not a ralif results database ({exc})"
            ) from None
        self._check_meta(config)
        self._rewrite_csv()

    def _check_meta(self, config: dict | None) -> None:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise RalifInputError(f"{self.db_path} was written by a newer ralif (schema {version})")
        stored = json.loads(meta["config"]) if "config" in meta else None
        if config is not None and stored is not None and stored != config:
            diff = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
            raise RalifInputError(
                f"{self.folder} holds results of a different benchmark (differs in {', '.join(diff)}); "
                "use another --out folder"
            )
        self.config = stored if stored is not None else config
        present = {row[1] for row in self.db.execute("PRAGMA table_info(results)")}
        with self.db:
            for name, kind in _ADDED_IN_2:
                if name not in present:
                    self.db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            if config is not None and stored is None:
                self.db.execute(
                    "INSERT INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True),)
                )

    def done_picks(self, strategy: str, seed: int) -> list[np.ndarray]:
        """Picks of the finished rounds 0, 1, ... of a run, stopping at the first gap."""
        rows = self.db.execute(
            "SELECT round, picks FROM results WHERE strategy=? AND seed=? ORDER BY round",
            (strategy, seed),
        ).fetchall()
        out = []
        for k, (r, picks) in enumerate(rows):
            if r != k:
                break
            out.append(np.asarray(json.loads(picks), dtype=np.intp))
        return out

    def add(self, strategy: str, seed: int, result: RoundResult) -> None:
        """Commit one round, then append it to the CSV."""
        row = (
            strategy, seed, result.round, result.n_labeled, result.accuracy, result.macro_f1,
            result.select_seconds, result.fit_seconds, result.l2, _nullable(result.net_accuracy),
            _nullable(result.train_seconds), _nullable(result.extract_seconds),
        )  # fmt: skip
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}, picks) "
                f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})",
                (*row, json.dumps(result.picks.tolist())),
            )
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(_format(row))
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self) -> list[dict]:
        """All rows as dicts, ordered by strategy, seed, round."""
        cur = self.db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY strategy, seed, round"
        )
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def _rewrite_csv(self) -> None:
        rows = (_format(tuple(r[c] for c in COLUMNS)) for r in self.rows())
        write_csv(self.csv_path, COLUMNS, rows, "results CSV")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_results(folder: str | os.PathLike) -> ResultStore:
    """Open an existing results folder for reading."""
    if not (Path(folder) / "results.sqlite").is_file():
        raise RalifInputError(f"{folder} holds no benchmark results (no results.sqlite)")
    return ResultStore(folder)


def _nullable(v: float) -> float | None:
    return None if v is None or np.isnan(v) else float(v)


def _format(row: tuple) -> list:
    return ["" if v is None else f"{v:.6g}" if isinstance(v, float) else v for v in row]
