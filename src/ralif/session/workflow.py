"""The labeling workflow behind ``ralif session``: init, next, import-labels, status, export."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError, check_budget, check_features
from ralif.io import load_features, open_output, read_csv_dicts, write_csv
from ralif.session.store import SessionStore, create_session
from ralif.strategies import make_strategy


def read_manifest(path: str | os.PathLike, n_items: int) -> list[tuple[str | None, str | None]]:
    """Rows ``(path, text)`` of an items manifest CSV (columns ``path`` and/or ``text``)."""
    p = Path(path)
    rows = read_csv_dicts(p, "items manifest")
    if not rows or not ({"path", "text"} & set(rows[0])):
        raise RalifInputError(f"{p} needs a header with a 'path' or a 'text' column")
    if len(rows) != n_items:
        raise RalifInputError(f"{p} lists {len(rows)} items but the features have {n_items} rows")
    return [((r.get("path") or None), (r.get("text") or None)) for r in rows]


def init_session(
    db: str | os.PathLike,
    features: str | os.PathLike,
    classes: list[str],
    manifest: str | os.PathLike | None = None,
) -> SessionStore:
    """Create a session over a features file (and optionally the items to show)."""
    X = check_features(load_features(features), f"features ({features})")
    rows = read_manifest(manifest, X.shape[0]) if manifest else None
    root = Path(manifest).resolve().parent if manifest else None
    return create_session(db, features, X.shape[0], classes, rows, root)


def next_batch(
    store: SessionStore,
    budget: int,
    strategy: str = "ralif",
    seed: int | None = None,
    **params: object,
) -> tuple[int, list[int]]:
    """Pick the next batch and record it before returning it.

    Held-out items and items of earlier batches still waiting for a label are left out
    of the pool.
    """
    X = check_features(load_features(store.features_path), f"features ({store.features_path})")
    if X.shape[0] != store.n_items():
        raise RalifInputError(
            f"{store.features_path} now has {X.shape[0]} rows but the session has {store.n_items()} items"
        )
    y, held = store.label_array()
    keep = ~held
    pending = np.zeros(len(y), dtype=bool)
    pending[list(store.pending_items())] = True
    keep &= ~pending
    rows = np.flatnonzero(keep)
    budget = check_budget(budget, int((y[rows] < 0).sum()))
    seed = len(store.rounds()) if seed is None else seed
    strat = make_strategy(strategy, random_state=seed, **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        picks = rows[strat.select(X[rows], y[rows], budget)]
    metrics = {"n_labeled": int((y[rows] >= 0).sum()), "warnings": [str(w.message) for w in caught]}
    head = getattr(strat, "head_", None)
    if head is not None:
        metrics["l2"] = float(head.l2_)
    rid = store.add_round(
        strategy, {**params, "seed": seed, "budget": budget}, picks.tolist(), metrics
    )
    for w in caught:
        warnings.warn(str(w.message), w.category, stacklevel=2)
    return rid, picks.tolist()


def import_labels_csv(
    store: SessionStore, path: str | os.PathLike, who: str, held_out: bool = False
) -> int:
    """Import ``item,label`` rows (a header is required); all or nothing."""
    p = Path(path)
    rows = read_csv_dicts(p, "labels")
    if not rows or not {"item", "label"} <= set(rows[0]):
        raise RalifInputError(f"{p} needs a header with columns item and label")
    pairs = []
    for k, r in enumerate(rows):
        item, label = (r["item"] or "").strip(), (r["label"] or "").strip()
        if not item.isdigit():
            raise RalifInputError(f"{p}: data row {k}: item {item!r} is not an item number")
        pairs.append((int(item), label or None))
    return store.import_labels(pairs, who=who, held_out=held_out)


def status(store: SessionStore) -> dict:
    """Progress, per-class counts and the learning curve from held-out labels."""
    y, held = store.label_array()
    classes = store.classes()
    train = (y >= 0) & ~held
    out = {
        "items": len(y),
        "labeled": int(train.sum()),
        "held_out": int(held.sum()),
        "pending": len(store.pending_items()),
        "rounds": len(store.rounds()),
        "per_class": {c: int((y[train] == k).sum()) for k, c in enumerate(classes)},
        "curve": learning_curve(store) if held.any() else [],
    }
    return out


def learning_curve(store: SessionStore) -> list[dict]:
    """Held-out accuracy of the head fitted on the labels known when each round was picked, and now."""
    from ralif.head import LinearHead

    X = check_features(load_features(store.features_path), "features")
    y_now, held = store.label_array()
    test = np.flatnonzero(held & (y_now >= 0))
    points = [(r["id"], r["created_at"]) for r in store.rounds()] + [("now", None)]
    curve = []
    for name, when in points:
        lab = [(i, c) for i, (c, h) in store.current_labels(as_of=when).items() if not h]
        if len({c for _, c in lab}) < 2:
            continue
        idx = np.array([i for i, _ in lab])
        head = LinearHead().fit(X[idx], np.array([c for _, c in lab]))
        acc = float((head.predict(X[test]) == y_now[test]).mean())
        curve.append({"round": name, "n_labeled": len(lab), "held_out_accuracy": acc})
    return curve


def export(store: SessionStore, out: str | os.PathLike, fmt: str = "csv") -> int:
    """Write ``item, label, class_name, held_out, who, at`` for every labeled item."""
    rows = store.db.execute(
        "SELECT e.item_id, e.class_id, c.name, e.held_out, e.who, e.at FROM label_events e "
        "JOIN classes c ON c.id = e.class_id "
        "WHERE e.id = (SELECT MAX(id) FROM label_events WHERE item_id = e.item_id) ORDER BY e.item_id"
    ).fetchall()
    cols = ["item", "label", "class_name", "held_out", "who", "at"]
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
    else:
        raise RalifInputError(f"--format must be csv or parquet, got {fmt!r}")
    return len(rows)
