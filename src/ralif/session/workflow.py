"""The labeling workflow behind ``ralif session``: init, next, import-labels, status, export."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from ralif._validation import RalifInputError, check_budget, check_features
from ralif.io import load_features, open_output, read_csv_dicts, read_csv_records, write_csv
from ralif.pools.sources import PoolSource, open_pool, stream_reason
from ralif.pools.streaming import streamed_select
from ralif.session.store import SessionStore, create_session
from ralif.stopping import RULES, round_signals, stop_set
from ralif.strategies import make_strategy

# A batch picked while the session changed is picked again, at most this many times.
_PICK_ATTEMPTS = 5


def read_manifest(path: str | os.PathLike, n_items: int) -> list[tuple[str | None, str | None]]:
    """Rows ``(path, text)`` of an items manifest CSV (columns ``path`` and/or ``text``)."""
    p = Path(path)
    rows = read_csv_dicts(p, "items manifest", ["path", "text"], any_of=True)
    if len(rows) != n_items:
        raise RalifInputError(f"{p} lists {len(rows)} items but the features have {n_items} rows")
    return [((r.get("path") or None), (r.get("text") or None)) for r in rows]


def init_session(
    db: str | os.PathLike,
    features: str | os.PathLike,
    classes: list[str],
    manifest: str | os.PathLike | None = None,
) -> SessionStore:
    """Create a session over a features file (and optionally the items to show).

    A folder or glob of ``.npy`` shards (or a folder of ``.parquet`` files) is a pool
    that is never read whole: its size comes from the shards' headers, and ``next``
    streams it (:mod:`ralif.pools.streaming`).
    """
    if stream_reason(features):
        n_items = open_pool(features).n_rows
    else:
        n_items = check_features(load_features(features), f"features ({features})").shape[0]
    rows = read_manifest(manifest, n_items) if manifest else None
    root = Path(manifest).resolve().parent if manifest else None
    return create_session(db, features, n_items, classes, rows, root)


def next_batch(
    store: SessionStore,
    budget: int,
    strategy: str = "ralif",
    seed: int | None = None,
    force: bool = False,
    **params: object,
) -> tuple[int, list[int]]:
    """Pick the next batch and record it before returning it.

    Held-out items, items of unclosed batches still waiting for a label and items marked
    unsure are left out of the pool. While a batch is open (items waiting, not closed),
    a new one is refused unless ``force``: a second batch would strand the first.

    The batch is picked from one consistent reading of the session and recorded only if
    nothing it depends on changed meanwhile (another batch recorded, one of its items
    labeled); otherwise it is picked again. Two ``next`` at once therefore never record
    the same items twice: without ``force`` the second is refused, with it the batches
    are disjoint.

    Parameters
    ----------
    store : SessionStore
        The open session.
    budget : int
        How many items to pick.
    strategy : str
        A strategy name (see :data:`ralif.strategies.STRATEGIES`).
    seed : int, optional
        Random seed; by default the number of rounds so far.
    force : bool
        Pick a batch even while another is open.
    **params
        Options of the strategy.

    Returns
    -------
    (round id, items in the order picked)
    """
    X, streamed = _session_features(store)
    for _ in range(_PICK_ATTEMPTS):
        picked_from, y, rows, n_rounds = _read_pool(store, force)
        budget = check_budget(budget, int((y[rows] < 0).sum()))
        round_seed = n_rounds if seed is None else seed
        picks, metrics, caught = _pick(X, y, rows, budget, strategy, round_seed, streamed, params)
        rid = store.add_round(
            strategy,
            {**params, "seed": round_seed, "budget": budget},
            picks.tolist(),
            metrics,
            picked_from=picked_from,
            force=force,
        )
        if rid is not None:
            break
    else:
        raise RalifInputError(
            "the session kept changing while the batch was picked; run ralif session next again"
        )
    # The .db file alone now holds the batch: a plain copy of it is complete.
    store.checkpoint()
    for w in caught:
        warnings.warn(str(w.message), w.category, stacklevel=2)
    return rid, picks.tolist()


def _session_features(store: SessionStore) -> tuple[PoolSource | np.ndarray, bool]:
    """The session's features (a streamed pool of shards, or the whole array) and whether
    they are streamed; an error if their rows no longer match the session's items."""
    streamed = stream_reason(store.features_path) is not None
    X: PoolSource | np.ndarray
    if streamed:
        X = open_pool(store.features_path)
    else:
        X = check_features(load_features(store.features_path), f"features ({store.features_path})")
    if X.shape[0] != store.n_items():
        raise RalifInputError(
            f"{store.features_path} now has {X.shape[0]} rows but the session has {store.n_items()} items"
        )
    return X, streamed


def _read_pool(
    store: SessionStore, force: bool
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, int]:
    """One consistent reading of the session for a pick: the snapshot it is taken from,
    the labels, the rows that may be picked from, and how many rounds there are.

    Held-out items, items of unclosed batches still waiting and items marked unsure are
    left out of the rows; without ``force``, an open batch is refused.
    """
    with store.reading():
        if not force:
            store.refuse_if_open()
        picked_from = store.snapshot()
        y, held = store.label_array()
        excluded = store.pending_items() | store.unsure_items()
        n_rounds = len(store.rounds())
    keep = ~held
    keep[sorted(excluded)] = False
    return picked_from, y, np.flatnonzero(keep), n_rounds


def _pick(
    X: PoolSource | np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    budget: int,
    strategy: str,
    round_seed: int,
    streamed: bool,
    params: dict,
) -> tuple[np.ndarray, dict, list]:
    """``(picks, metrics, warnings caught)`` of one pick of ``budget`` items among ``rows``."""
    strat = make_strategy(strategy, random_state=round_seed, **params)
    if getattr(strat, "stateful", False):
        raise RalifInputError(
            f"{strategy} learns from one batch to the next on one object, while a session "
            "picks each batch afresh; use it in ralif bench or from Python"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if streamed:
            query = streamed_select(X, y, budget, strat, rows=rows)
            picks, strat = query.picks, query.strategy
        else:
            picks = rows[strat.select(cast(np.ndarray, X)[rows], y[rows], budget)]
    metrics = {
        "n_labeled": int((y[rows] >= 0).sum()),
        "warnings": [str(w.message) for w in caught],
    }
    head = getattr(strat, "head_", None)
    if head is not None:
        metrics["l2"] = float(head.l2_)
    return picks, metrics, caught


def import_labels_csv(
    store: SessionStore, path: str | os.PathLike, who: str, held_out: bool = False
) -> int:
    """Import ``item,label`` rows (a header is required); all or nothing.

    Every row needs an item and a label: an empty label cell is an error (an import
    never takes a label back), and so is an item listed twice in the file.
    """
    p = Path(path)
    records = read_csv_records(p, "labels", ["item", "label"])
    if not records:
        raise RalifInputError(f"labels file {p} has a header but no labels below it")
    pairs: list[tuple[int, str]] = []
    first_line: dict[int, int] = {}
    repeats: dict[int, list[int]] = {}
    for line, r in records:
        item, label = (r.get("item") or "").strip(), (r.get("label") or "").strip()
        if not (item.isascii() and item.isdigit()):
            raise RalifInputError(f"{p}: line {line}: item {item!r} is not an item number")
        if not label:
            raise RalifInputError(f"{p}: line {line}: item {item} has an empty label")
        i = int(item)
        if i in first_line:
            repeats.setdefault(i, [first_line[i]]).append(line)
        first_line.setdefault(i, line)
        pairs.append((i, label))
    if repeats:
        listed = "; ".join(
            f"item {i} on lines {', '.join(map(str, lines))}"
            for i, lines in list(repeats.items())[:10]
        )
        more = f" and {len(repeats) - 10} more items" if len(repeats) > 10 else ""
        raise RalifInputError(
            f"{p}: items listed more than once ({listed}{more}); keep one label per item"
        )
    return store.import_labels(pairs, who=who, held_out=held_out)


def status(store: SessionStore) -> dict:
    """Progress, open batches, per-class counts and the learning curve from held-out labels."""
    with store.reading():
        y, held = store.label_array()
        classes = store.classes()
        waiting = store.waiting_by_round()
        sizes = {r["id"]: len(store.round_items(r["id"])) for r in store.rounds()}
        unsure = len(store.unsure_items())
    train = (y >= 0) & ~held
    out = {
        "items": len(y),
        "labeled": int(train.sum()),
        "held_out": int(held.sum()),
        "pending": sum(len(v) for v in waiting.values()),
        "unsure": unsure,
        "rounds": len(sizes),
        "open": [
            {"round": rid, "waiting": len(items), "size": sizes[rid]}
            for rid, items in waiting.items()
        ],
        "per_class": {c: int((y[train] == k).sum()) for k, c in enumerate(classes)},
    }
    curve = learning_curve(store)
    out["curve"] = [p for p in curve if p["held_out_accuracy"] is not None]
    signals = [p["signals"] for p in curve]
    out["stopping"] = {name: _fired(rule.fires(signals), curve) for name, rule in RULES.items()}
    return out


def _fired(at: int | None, curve: list[dict]) -> dict | None:
    """Where a stopping rule fired in the session's curve: the round and its labels."""
    if at is None:
        return None
    return {"round": curve[at]["round"], "n_labeled": curve[at]["n_labeled"]}


def learning_curve(store: SessionStore) -> list[dict]:
    """The head fitted on the labels known when each round was picked, and now: its
    held-out accuracy (None without held-out labels) and its stopping signals
    (:mod:`ralif.stopping`, on a stop set of items not held out, drawn once)."""
    from ralif.head import LinearHead

    X: PoolSource | np.ndarray
    rows_of: Callable[[Any], np.ndarray]  # the features of the rows given
    if stream_reason(store.features_path):
        X = open_pool(store.features_path)
        rows_of = X.take
    else:
        X = check_features(load_features(store.features_path), "features")
        rows_of = X.__getitem__
    y_now, held = store.label_array()
    test = np.flatnonzero(held & (y_now >= 0))
    X_stop = rows_of(stop_set(np.flatnonzero(~held), seed=0))
    points = [(r["id"], r["created_at"]) for r in store.rounds()] + [("now", None)]
    curve, predicted = [], None
    for name, when in points:
        lab = [(i, c) for i, (c, h) in store.current_labels(as_of=when).items() if not h]
        if len({c for _, c in lab}) < 2:
            continue
        idx = np.array([i for i, _ in lab])
        head = LinearHead().fit(rows_of(idx), np.array([c for _, c in lab]))
        acc = float((head.predict(rows_of(test)) == y_now[test]).mean()) if len(test) else None
        signals, predicted = round_signals(head.predict_proba(X_stop), head.classes_, predicted)
        curve.append(
            {"round": name, "n_labeled": len(lab), "held_out_accuracy": acc, "signals": signals}
        )
    return curve


def export(
    store: SessionStore, out: str | os.PathLike, fmt: str = "csv", with_items: bool = False
) -> int:
    """Write ``item, label, class_name, held_out, who, at`` for every labeled item.

    With ``with_items``, also each item's ``path`` and ``text`` from the manifest (see
    :meth:`SessionStore.labels_for_export`: one moment's complete picture).
    """
    if fmt not in ("csv", "parquet"):
        raise RalifInputError(f"--format must be csv or parquet, got {fmt!r}")
    cols, rows = store.labels_for_export(with_items)
    if fmt == "csv":
        write_csv(out, cols, rows, "labels export")
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise RalifInputError(
                "parquet export needs pyarrow: pip install 'ralif[parquet]'"
            ) from None
        table = pa.table({c: [r[k] for r in rows] for k, c in enumerate(cols)})
        with open_output(out, "labels export", binary=True) as fh:
            pq.write_table(table, fh)
    return len(rows)
