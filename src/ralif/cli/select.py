"""``ralif select``: read features and partial labels, print (or write) the items to label
next; a pool too large for memory is streamed."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import numpy as np

from ralif._validation import RalifInputError, check_exclude, check_features, check_labels
from ralif.cli._common import STRATEGY_HELP, add_ralif_options, strategy_params
from ralif.io import check_output, feature_rows, load_features, load_labels, write_csv
from ralif.strategies import make_strategy

if TYPE_CHECKING:
    import distributed

NAME = "select"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``select`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``select``.
    """
    sel = subparsers.add_parser(
        NAME,
        help="choose the next items to label",
        description="Read features and partial labels, print (or write) the items to label next.",
    )
    sel.add_argument(
        "--features",
        required=True,
        help="features: .npy, .npz, .csv or .parquet (one row per item); a folder or a quoted "
        "glob ('shards/*.npy') of .npy shards, or a folder of .parquet files, is streamed",
    )
    sel.add_argument(
        "--labels",
        required=True,
        help="labels: .npy or .csv, one per item; -1 or empty = unlabeled",
    )
    sel.add_argument("--budget", required=True, type=int, help="how many items to pick")
    sel.add_argument(
        "--strategy",
        default="ralif",
        help=STRATEGY_HELP,
    )
    sel.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sel.add_argument(
        "--classes",
        help="class names in order (a,b,c): label cells may then hold names, and "
        "--predictions shows them",
    )
    sel.add_argument(
        "--explain",
        action="store_true",
        help="say on standard error what the score means and which end is picked first",
    )
    sel.add_argument(
        "--predictions",
        action="store_true",
        help="add the model's predicted class and its probability for each pick",
    )
    sel.add_argument(
        "--exclude",
        help="items never to pick nor train on (a held-out set): .npy of indices or a boolean "
        "mask, or .csv of item numbers",
    )
    sel.add_argument("--out", help="write the picks to this CSV file instead of standard output")
    sel.add_argument("--quiet", action="store_true", help="print nothing but errors")
    add_ralif_options(sel)
    _add_stream_options(sel)
    return sel


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "streaming (pools larger than memory; see ralif.pools.streaming)",
        "Any of these streams the pool: it is read in blocks, twice, never whole.",
    )
    g.add_argument(
        "--stream", action="store_true", help="stream a single .npy or .parquet file too"
    )
    g.add_argument(
        "--dask",
        default=None,
        metavar="CLUSTER",
        help="run the passes on a dask cluster: local:N (N worker processes here) or a "
        "scheduler address such as tcp://host:8786 (needs ralif[dask])",
    )
    g.add_argument("--device", default=None, help="cpu or cuda[:N]: where the block products run")
    g.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help="candidate cap of the diversity step (default 20000; see ralif.pools.streaming)",
    )


def _wants_stream(args: argparse.Namespace) -> bool:
    from ralif.pools.sources import is_pool_spec, stream_reason

    if (
        args.stream
        or args.dask
        or args.device not in (None, "cpu")
        or args.max_candidates is not None
        or is_pool_spec(args.features)
    ):
        return True
    reason = stream_reason(args.features)
    if reason and not args.quiet:
        print(f"ralif: {reason}: streaming it in blocks (as --stream)", file=sys.stderr)
    return reason is not None


def _excluded(args: argparse.Namespace) -> np.ndarray | None:
    """The items of ``--exclude``, or None."""
    from ralif.io import load_items

    return None if args.exclude is None else load_items(args.exclude, "--exclude")


def _select_streamed(args: argparse.Namespace, params: dict, classes: list[str] | None):
    """``(picks, scores, strategy, rows of the pool by index, labels)`` of a streamed query."""
    from contextlib import AbstractContextManager, nullcontext

    from ralif.pools.sources import open_pool
    from ralif.pools.streaming import DEFAULT_MAX_CANDIDATES, streamed_select

    pool = open_pool(args.features)
    y = check_labels(load_labels(args.labels, pool.n_rows, classes), pool.n_rows)
    exclude = _excluded(args)
    rows = None if exclude is None else check_exclude(exclude, pool.n_rows, "--exclude")
    cluster: AbstractContextManager[distributed.Client | None]
    if args.dask:
        from ralif.pools.cluster import dask_client

        cluster = dask_client(args.dask)
    else:
        cluster = nullcontext(None)
    with cluster as client:
        q = streamed_select(
            pool,
            y,
            args.budget,
            args.strategy,
            random_state=args.seed,
            max_candidates=args.max_candidates or DEFAULT_MAX_CANDIDATES,
            device=args.device or "cpu",
            client=client,
            rows=rows,
            **params,
        )
    if q.capped and not args.quiet:
        print(
            f"ralif: the candidate cap applied: the diversity step read {q.n_candidates} "
            "candidates (--max-candidates)",
            file=sys.stderr,
        )
    return q.picks, q.scores[np.searchsorted(q.pool_index, q.picks)], q.strategy, pool.take, y


def _select_in_memory(args: argparse.Namespace, params: dict, classes: list[str] | None):
    """``(picks, scores, strategy, rows of the pool by index, labels)`` of a query over
    features read whole."""
    # The shapes are compared from the files' headers first, so that a file whose rows
    # cannot match is refused before its array is read.
    y = load_labels(args.labels, feature_rows(args.features), classes)
    X = load_features(args.features, n_rows=len(y) if y.ndim else None)
    X = check_features(X, f"features ({args.features})")
    y = check_labels(y, X.shape[0], f"labels ({args.labels})")
    strategy = make_strategy(args.strategy, random_state=args.seed, **params)
    picks = strategy.select(X, y, args.budget, exclude=_excluded(args))
    scores = strategy.scores_[np.searchsorted(strategy.pool_index_, picks)]
    return picks, scores, strategy, X.__getitem__, y


def _select_classes(args: argparse.Namespace) -> list[str] | None:
    if args.classes is None:
        return None
    from ralif.session.store import check_class_names, split_class_names

    return check_class_names(split_class_names([args.classes]))


def _predictions(
    args: argparse.Namespace,
    strategy: object,
    rows_of,
    y: np.ndarray,
    picks: np.ndarray,
    classes: list[str] | None,
) -> list[tuple[str, str]]:
    """``(predicted class, its probability)`` of each pick, by the strategy's model or,
    for a strategy without one, the linear head fitted on the labeled items."""
    model = getattr(strategy, "model_", None)
    if model is None:
        from ralif.head import LinearHead

        labeled = np.flatnonzero(y >= 0)
        if len(np.unique(y[labeled])) < 2:
            raise RalifInputError("--predictions needs labeled items of at least two classes")
        model = LinearHead(l2=args.l2 if args.l2 is not None else "auto")
        model.fit(rows_of(labeled), y[labeled])
    proba = model.predict_proba(rows_of(picks))
    best = proba.argmax(axis=1)
    out = []
    for k, p in zip(best, proba[np.arange(len(best)), best], strict=True):
        c = int(np.asarray(model.classes_)[k])
        out.append((classes[c] if classes and c < len(classes) else str(c), f"{p:.4f}"))
    return out


def _score_note(strategy: object) -> str:
    meaning = getattr(strategy, "score_meaning", "") or "none"
    return (
        f"ralif: rank is the order of picking; score: {meaning}. A strategy that spreads its "
        "picks (k-means++ or core-set over candidates) need not pick in score order"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ralif select``: print (or write with ``--out``) the picks as CSV.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    if args.out:
        check_output(args.out, "picks")  # before the selection, which can take long
    params = strategy_params(args, args.strategy)
    if args.max_candidates is not None and args.max_candidates < 1:
        raise RalifInputError(f"--max-candidates must be at least 1, got {args.max_candidates}")
    classes = _select_classes(args)
    query = _select_streamed if _wants_stream(args) else _select_in_memory
    picks, scores, strategy, rows_of, y = query(args, params, classes)
    rows: list[tuple] = [
        (int(i), rank, f"{s:.6g}")
        for rank, (i, s) in enumerate(zip(picks, scores, strict=True), start=1)
    ]
    header = ["index", "rank", "score"]
    if args.predictions:
        header += ["predicted", "probability"]
        guesses = _predictions(args, strategy, rows_of, y, picks, classes)
        rows = [(*r, *g) for r, g in zip(rows, guesses, strict=True)]
    if args.explain:
        print(_score_note(strategy), file=sys.stderr)
    if args.out:
        write_csv(args.out, header, rows, "picks")
        if not args.quiet:
            print(f"wrote {len(rows)} picks to {args.out}", file=sys.stderr)
    else:
        print(",".join(header))
        for r in rows:
            print(",".join(str(v) for v in r))
    return 0
