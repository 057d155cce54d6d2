"""``ralif session``: a durable labeling session (init, next, import-labels, status, export,
backup, close, reopen, add-class, rename-class, remove-class), one SQLite file.

Each sub-subcommand has a function adding its parser (:data:`_PARSERS`, in the order the help
lists them) and one running it on the open session (:data:`_IN_SESSION`); ``init``, which
creates the session, runs before there is one to open.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ralif._validation import RalifInputError
from ralif.cli._common import (
    DEFAULT_DB,
    DEFAULT_DB_NAME,
    SESSION_ENV,
    STRATEGY_HELP,
    add_ralif_options,
    db_parent,
    strategy_params,
)

NAME = "session"


def _add_init(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_init = ssub.add_parser("init", help="create a session database over a features file")
    s_init.add_argument(
        "--features",
        required=True,
        help="features file (.npy, .npz, .csv, .parquet), or a folder or quoted glob of .npy "
        "shards, which session next streams",
    )
    s_init.add_argument(
        "--items",
        default=None,
        help="manifest CSV with a path (image, relative to it) or text column per item",
    )
    s_init.add_argument(
        "--classes", required=True, help="comma-separated class names (more: session add-class)"
    )
    s_init.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"session database to create (default ${SESSION_ENV} or {DEFAULT_DB_NAME})",
    )


def _add_next(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_next = ssub.add_parser("next", help="pick and record the next batch", parents=[db])
    s_next.add_argument("--budget", type=int, required=True)
    s_next.add_argument("--strategy", default="ralif", help=STRATEGY_HELP)
    s_next.add_argument("--seed", type=int, default=None)
    s_next.add_argument(
        "--force",
        action="store_true",
        help="pick a batch even while another is open (the page serves both)",
    )
    add_ralif_options(s_next)


def _add_import_labels(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_imp = ssub.add_parser(
        "import-labels", help="import labels from a CSV with columns item,label", parents=[db]
    )
    s_imp.add_argument("labels", help="CSV file")
    s_imp.add_argument("--who", default="import", help="who gave these labels")
    s_imp.add_argument(
        "--held-out", action="store_true", help="these labels form the held-out evaluation set"
    )


def _add_status(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    ssub.add_parser(
        "status", help="progress, per-class counts, learning curve on held-out labels", parents=[db]
    )


def _add_export(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_exp = ssub.add_parser("export", help="write the current labels", parents=[db])
    s_exp.add_argument("--format", choices=("csv", "parquet"), default="csv")
    s_exp.add_argument(
        "--with-items", action="store_true", help="add the path and text columns of each item"
    )
    s_exp.add_argument("--out", required=True)


def _add_backup(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_bak = ssub.add_parser(
        "backup", help="a complete copy of the session, safe while it is being served", parents=[db]
    )
    s_bak.add_argument("--out", required=True, help="the copy to create (never overwritten)")


def _round_adder(name: str, text: str) -> Callable[..., None]:
    """The adder of ``close`` or ``reopen``: a command taking a round number."""

    def add(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
        s_round = ssub.add_parser(name, help=text, parents=[db])
        s_round.add_argument("round", type=int, help="the round number (see session status)")

    return add


def _add_add_class(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_cls = ssub.add_parser("add-class", help="add classes to a session", parents=[db])
    s_cls.add_argument(
        "names", nargs="+", help="the new class names (a comma separates names, as in init)"
    )


def _add_rename_class(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_ren = ssub.add_parser(
        "rename-class", help="rename a class; its labels follow the new name", parents=[db]
    )
    s_ren.add_argument("old", help="the class's name or number")
    s_ren.add_argument("new", help="its new name")


def _add_remove_class(ssub: argparse._SubParsersAction, db: argparse.ArgumentParser) -> None:
    s_rem = ssub.add_parser("remove-class", help="remove a class no label has used", parents=[db])
    s_rem.add_argument("name", help="the class's name or number")


_PARSERS = (
    _add_init,
    _add_next,
    _add_import_labels,
    _add_status,
    _add_export,
    _add_backup,
    _round_adder("close", "close a batch: its items still waiting go back to the pool"),
    _round_adder("reopen", "reopen a closed batch"),
    _add_add_class,
    _add_rename_class,
    _add_remove_class,
)
"""The adders of the sub-subcommands' parsers, in the order the help lists them."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``session`` command and its sub-subcommands.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``session``.
    """
    db = db_parent()
    session = subparsers.add_parser(
        NAME,
        help="a durable labeling session (init, next, import-labels, status, export, backup, "
        "close, reopen, add-class, rename-class, remove-class)",
    )
    ssub = session.add_subparsers(dest="session_command", required=True)
    for add in _PARSERS:
        add(ssub, db)
    return session


def _shown(text: str | None, limit: int = 120) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _init(args: argparse.Namespace) -> None:
    from ralif.session import workflow as wf
    from ralif.session.store import split_class_names

    classes = split_class_names([args.classes])
    with wf.init_session(args.db, args.features, classes, args.items) as s:
        print(f"created {args.db}: {s.n_items()} items, classes {', '.join(s.classes())}")


def _next(s, args: argparse.Namespace) -> None:
    import csv

    from ralif.session import workflow as wf

    params = strategy_params(args, args.strategy)
    rid, picks = wf.next_batch(s, args.budget, args.strategy, args.seed, force=args.force, **params)
    entries = [s.item(i) or (None, None) for i in picks]
    cols = [k for k, name in enumerate(("path", "text")) if any(e[k] for e in entries)]
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["item"] + [("path", "text")[k] for k in cols])
    out.writerows([i] + [_shown(e[k]) for k in cols] for i, e in zip(picks, entries, strict=True))
    sys.stdout.flush()
    print(
        f"round {rid}: {len(picks)} items recorded; label them with: ralif serve --db {args.db}",
        file=sys.stderr,
    )


def _import_labels(s, args: argparse.Namespace) -> None:
    from ralif.session import workflow as wf

    n = wf.import_labels_csv(s, args.labels, args.who, args.held_out)
    print(f"imported {n} labels into {args.db}")


def _status(s, args: argparse.Namespace) -> None:
    from ralif.session import workflow as wf

    st = wf.status(s)
    print(
        f"items {st['items']}: labeled {st['labeled']}, held out {st['held_out']}, "
        f"waiting in batches {st['pending']}, unsure {st['unsure']}, rounds {st['rounds']}"
    )
    for b in st["open"]:
        print(f"  open batch: round {b['round']}, {b['waiting']} of {b['size']} waiting")
    for name, count in st["per_class"].items():
        print(f"  {name:<20} {count}")
    if st["curve"]:
        print("learning curve (held-out accuracy):")
        for p in st["curve"]:
            print(
                f"  round {p['round']:>4}  {p['n_labeled']:>6} labels  {p['held_out_accuracy']:.3f}"
            )
    print("stopping rules (ralif.stopping; evidence, not advice):")
    for name, at in st["stopping"].items():
        when = (
            f"would have stopped at round {at['round']} ({at['n_labeled']} labels)"
            if at
            else "not yet"
        )
        print(f"  {name:<24} {when}")


def _export(s, args: argparse.Namespace) -> None:
    from ralif.session import workflow as wf

    n = wf.export(s, args.out, args.format, with_items=args.with_items)
    # With --out - the labels themselves go to standard output.
    print(f"wrote {n} labels to {args.out}", file=sys.stderr if args.out == "-" else None)


def _backup(s, args: argparse.Namespace) -> None:
    s.backup(args.out)
    print(f"copied {args.db} to {args.out}", file=sys.stderr if args.out == "-" else None)


def _close(s, args: argparse.Namespace) -> None:
    n = s.close_round(args.round)
    print(f"closed round {args.round}: {n} waiting items back in the pool")


def _reopen(s, args: argparse.Namespace) -> None:
    n = s.reopen_round(args.round)
    print(f"reopened round {args.round}: {n} items waiting")


def _add_class(s, args: argparse.Namespace) -> None:
    from ralif.session.store import split_class_names

    new = split_class_names(args.names)
    if not new:
        raise RalifInputError("no class names given (names are separated by commas)")
    _print_classes(args, s.add_classes(new))


def _rename_class(s, args: argparse.Namespace) -> None:
    _print_classes(args, s.rename_class(args.old, args.new))


def _remove_class(s, args: argparse.Namespace) -> None:
    _print_classes(args, s.remove_class(args.name))


def _print_classes(args: argparse.Namespace, names: list[str]) -> None:
    print(f"classes of {args.db}: {', '.join(names)}")


_IN_SESSION = {
    "next": _next,
    "import-labels": _import_labels,
    "status": _status,
    "export": _export,
    "backup": _backup,
    "close": _close,
    "reopen": _reopen,
    "add-class": _add_class,
    "rename-class": _rename_class,
    "remove-class": _remove_class,
}
"""What each sub-subcommand but ``init`` does with the open session."""


def _session_command(args: argparse.Namespace) -> int:
    from ralif.session import open_session

    if args.session_command == "init":
        _init(args)
        return 0
    with open_session(args.db) as s:
        _IN_SESSION[args.session_command](s, args)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a ``ralif session`` sub-subcommand.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``args.session_command`` names the sub-subcommand).

    Returns
    -------
    int
        The exit code, 0.

    Raises
    ------
    RalifInputError
        For bad input, a session database found damaged halfway through included.
    """
    import sqlite3

    try:
        return _session_command(args)
    except sqlite3.DatabaseError as exc:
        # Damage found halfway through a command (open_session checks what it can up front).
        raise RalifInputError(f"session database {args.db}: {exc}") from None
