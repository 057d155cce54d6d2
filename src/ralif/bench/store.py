"""Benchmark results in SQLite (the source of truth) mirrored to ``results.csv``.

Every (strategy, seed, round) row is committed the moment it is known, so a killed run
loses at most the round in flight; the CSV is rebuilt from the database on open.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np

from ralif._files import os_error
from ralif._validation import RalifInputError
from ralif.io import output_folder, write_csv
from ralif.loop import RoundResult

SCHEMA_VERSION = 4
APPLICATION_ID = 0x52414C46  # "RALF": SQLite's header field naming the file's owner
FORMAT = "ralif-bench-results"  # the meta row that says the same inside the database
COLUMNS = (
    "strategy", "seed", "round", "n_labeled", "accuracy", "macro_f1",
    "select_seconds", "fit_seconds", "l2", "net_accuracy", "train_seconds", "extract_seconds",
    "agreement", "max_uncertainty", "mean_uncertainty", "expected_change",
)  # fmt: skip
# Columns added after version 1, with their types: the migration adds them.
_ADDED_IN_2 = (("net_accuracy", "REAL"), ("train_seconds", "REAL"), ("extract_seconds", "REAL"))
# The stopping signals of each round (ralif.stopping.RoundSignals).
_ADDED_IN_3 = tuple((name, "REAL") for name in COLUMNS[12:16])
# Version 4 added the table ``metrics``: the further metrics a benchmark was asked to
# record (``ralif bench --metrics``), one row per (strategy, seed, round, metric); the
# CSV gives them as columns after COLUMNS.

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
CREATE TABLE IF NOT EXISTS metrics (
    strategy TEXT NOT NULL,
    seed INTEGER NOT NULL,
    round INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (strategy, seed, round, metric)
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

    def __init__(
        self, folder: str | os.PathLike, config: dict | None = None, read_only: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.read_only = read_only
        self.db_path = self.folder / "results.sqlite"
        self.csv_path = self.folder / "results.csv"
        if read_only:
            if self.folder.exists() and not self.folder.is_dir():
                raise RalifInputError(f"{folder} is a file, not a results folder")
            if not self.db_path.is_file():
                raise RalifInputError(f"{folder} holds no benchmark results (no results.sqlite)")
        else:
            output_folder(self.folder, "results folder")
            self._check_csv_is_ours()
            self._lock = _lock_folder(self.folder)
        try:
            if read_only:
                # mode=ro: reading a report can never create or change a table.
                uri = self.db_path.resolve().as_uri() + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True)
            else:
                self.db = sqlite3.connect(self.db_path)
            self._identify()
            if not read_only:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(_SCHEMA)
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                with self.db:
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT,))
            self._check_meta(config)
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise RalifInputError(f"cannot open {self.db_path}: {exc}") from None
            raise RalifInputError(
                f"{self.db_path} is not a ralif results database ({exc})"
            ) from None
        except BaseException:
            self._close_quietly()
            raise
        if not read_only:
            self._rewrite_csv()

    def _check_csv_is_ours(self) -> None:
        """Refuse to replace a ``results.csv`` that ralif did not write (before writing).

        Ours has a ``results.sqlite`` beside it and ralif's header (or an older prefix of
        it); anything else in that place (another program's file, a symlink, a FIFO) is
        someone's data, and is left alone.
        """
        with os_error("read", str(self.csv_path)):
            try:
                st = os.lstat(self.csv_path)
            except FileNotFoundError:
                return
        advice = "use another --out, or move the file away"
        if not stat.S_ISREG(st.st_mode):
            raise RalifInputError(
                f"{self.csv_path} is not a regular file, so ralif did not write it; {advice}"
            )
        if not self.db_path.is_file():
            raise RalifInputError(
                f"{self.csv_path} exists without a results.sqlite beside it, so ralif did not "
                f"write it; {advice}"
            )
        try:
            with open(self.csv_path, encoding="utf-8", newline="") as fh:
                header = next(csv.reader([fh.readline(4096)]), [])
        except (OSError, UnicodeDecodeError):
            header = []
        n = min(len(header), len(COLUMNS))  # ours: COLUMNS (or a prefix), then metrics
        if len(header) < 3 or tuple(header[:n]) != COLUMNS[:n]:
            raise RalifInputError(
                f"{self.csv_path} is not a ralif results CSV (its header is not ralif's); {advice}"
            )

    def _close_quietly(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        self._unlock()

    def _unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()  # closing the file releases its lock
            self._lock = None

    def _identify(self) -> None:
        """Refuse any database but ralif's results, before anything is written to it."""
        app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
        tables = self._tables()
        if app_id == APPLICATION_ID and {"meta", "results"} <= tables:
            return
        if app_id == 0 and not tables:
            if self.read_only:
                raise RalifInputError(f"{self.db_path} holds no benchmark results (it is empty)")
            return  # a new database: it is made ralif's below
        if app_id == 0 and tables == {"meta", "results"} and self._looks_like_results():
            return  # written by a ralif from before the application id
        what = f"application id {app_id:#x}" if app_id else f"tables {', '.join(sorted(tables))}"
        raise RalifInputError(
            f"{self.db_path} is not a ralif results database (it holds {what}); use another folder"
        )

    def _looks_like_results(self) -> bool:
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(results)")}
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        return set(COLUMNS[:8]) | {"picks"} <= columns and "schema_version" in meta

    def _check_meta(self, config: dict | None) -> None:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format", FORMAT) != FORMAT:
            raise RalifInputError(
                f"{self.db_path} is not a ralif results database (format {meta['format']!r})"
            )
        try:
            version = int(meta.get("schema_version", SCHEMA_VERSION))
        except ValueError:
            raise RalifInputError(
                f"{self.db_path}: schema_version {meta['schema_version']!r} is not a number"
            ) from None
        if not 1 <= version <= SCHEMA_VERSION:
            raise RalifInputError(
                f"{self.db_path} was written by a newer ralif (schema {version})"
                if version > SCHEMA_VERSION
                else f"{self.db_path}: schema_version {version} is not valid"
            )
        stored = None
        if "config" in meta:
            try:
                stored = json.loads(meta["config"])
            except ValueError:
                stored = None
            if not isinstance(stored, dict):
                raise RalifInputError(
                    f"{self.db_path}: the stored benchmark configuration is not a JSON object "
                    "(corrupt database)"
                )
        if config is not None and stored is not None and stored != config:
            raise RalifInputError(
                f"{self.folder} holds results of a different benchmark (differs in "
                f"{changed_fields(stored, config)}); use another --out folder"
            )
        self.config = stored if stored is not None else config
        self.metrics = _recorded_metrics(self.config or {}, self.db_path)
        """The further metrics recorded (columns of the CSV after :data:`COLUMNS`)."""
        self._columns = [
            c
            for c in COLUMNS
            if c in {row[1] for row in self.db.execute("PRAGMA table_info(results)")}
        ]
        if self.read_only:
            return
        with self.db:
            for name, kind in (*_ADDED_IN_2, *_ADDED_IN_3):
                if name not in self._columns:
                    self.db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
            self._columns = list(COLUMNS)
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            if config is not None and stored is None:
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('config', ?)",
                    (json.dumps(config, sort_keys=True),),
                )

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes 0, 1, ... when the dataset gave them (else None)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'class_names'").fetchone()
        try:
            names = json.loads(row[0]) if row else None
        except ValueError:
            return None
        ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
        return names if ok else None

    def set_class_names(self, names: list[str]) -> None:
        """Record the names of the classes (shown by the summary and the report)."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('class_names', ?)", (json.dumps(list(names)),)
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
            *(_nullable(getattr(result.signals, c)) for c in COLUMNS[12:16]),
        )  # fmt: skip
        extra = {k: _nullable(v) for k, v in result.extra.items()}
        missing = [k for k in self.metrics if k not in extra]
        if missing:
            raise ValueError(f"round {result.round} lacks the metrics {', '.join(missing)}")
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}, picks) "
                f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})",
                (*row, json.dumps(result.picks.tolist())),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
                [(strategy, seed, result.round, k, v) for k, v in extra.items()],
            )
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(_format((*row, *(extra[k] for k in self.metrics))))
            fh.flush()
            os.fsync(fh.fileno())

    def rows(self) -> list[dict]:
        """All rows as dicts, ordered by strategy, seed, round."""
        cur = self.db.execute(
            f"SELECT {', '.join(self._columns)} FROM results ORDER BY strategy, seed, round"
        )
        # Columns an older database lacks (read-only, so not added) read as missing.
        rows = [
            {**dict.fromkeys((*COLUMNS, *self.metrics)), **dict(zip(self._columns, r, strict=True))}
            for r in cur.fetchall()
        ]
        if "metrics" in self._tables():
            at = {(r["strategy"], r["seed"], r["round"]): r for r in rows}
            for strategy, seed, k, name, value in self.db.execute("SELECT * FROM metrics"):
                if (strategy, seed, k) in at:
                    at[strategy, seed, k][name] = value
        return rows

    def _tables(self) -> set[str]:
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {name for (name,) in self.db.execute(query)}

    def _rewrite_csv(self) -> None:
        columns = (*COLUMNS, *self.metrics)
        rows = (_format(tuple(r.get(c) for c in columns)) for r in self.rows())
        write_csv(self.csv_path, columns, rows, "results CSV")

    def close(self) -> None:
        self.db.close()
        self._unlock()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_results(folder: str | os.PathLike) -> ResultStore:
    """Open an existing results folder for reading only (nothing in it is changed)."""
    return ResultStore(folder, read_only=True)


def _lock_folder(folder: Path):
    """An exclusive lock on the results folder, held while one process writes into it.

    Two runs into one folder would compute the same rounds twice and append them twice
    to ``results.csv``; the second is refused instead.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks to take
        return None
    with os_error("write into", f"results folder {folder}"):
        fh = open(folder / ".results.lock", "a")  # held (and locked) until close()
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise RalifInputError(
            f"another ralif bench is writing into {folder}; wait for it or use another --out"
        ) from None
    return fh


def _recorded_metrics(config: dict, where: Path) -> tuple[str, ...]:
    """The further metrics a benchmark's configuration asks for, checked."""
    names = config.get("metrics", [])
    if not isinstance(names, list) or not all(
        isinstance(n, str) and n.isidentifier() for n in names
    ):
        raise RalifInputError(
            f"{where}: the stored list of metrics is not valid (corrupt database)"
        )
    return tuple(names)


def changed_fields(stored: dict, now: dict, ignore: tuple[str, ...] = ()) -> str:
    """The fields that differ between two identities, with their values then and now."""
    keys = sorted(k for k in set(stored) | set(now) if k not in ignore)
    return ", ".join(
        f"{k} ({stored.get(k)} then, {now.get(k)} now)" for k in keys if stored.get(k) != now.get(k)
    )


def _nullable(v: float) -> float | None:
    return None if v is None or np.isnan(v) else float(v)


def _format(row: tuple) -> list:
    return ["" if v is None else f"{v:.6g}" if isinstance(v, float) else v for v in row]
