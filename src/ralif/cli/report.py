"""``ralif report``: learning curves, AUBC and win/tie/loss from a results folder of
``ralif bench`` (or one report over a suite's folders)."""

from __future__ import annotations

import argparse
import sys

from ralif._validation import RalifInputError
from ralif.metrics import METRICS

NAME = "report"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``report``.
    """
    report = subparsers.add_parser(
        NAME,
        help="learning curves, AUBC and win/tie/loss from a results folder",
        description="Write curves.png and report.md into DIR and print the AUBC table.",
    )
    report.add_argument(
        "dir", help="a folder written by ralif bench (or by ralif bench --suite: one per dataset)"
    )
    report.add_argument(
        "--metric",
        choices=tuple(METRICS),
        default=None,
        help="what the paired differences, rounds below random, win/tie/loss, stopping table and "
        "first plot of a benchmark folder judge by: accuracy (default), macro_f1, or a metric "
        "it recorded with bench --metrics (a suite judges each data set by its own metric)",
    )
    report.add_argument("--quiet", action="store_true", help="print only the paths")
    return report


def run(args: argparse.Namespace) -> int:
    """Run ``ralif report``: write the plots and report.md, print their paths and the table.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    from ralif.bench.report import make_report
    from ralif.bench.suite_report import is_suite_folder, make_suite_report

    suite = is_suite_folder(args.dir)
    if suite and args.metric:
        raise RalifInputError(
            "--metric applies to one benchmark; a suite judges each set by its own"
        )
    try:
        out = (
            make_suite_report(args.dir)
            if suite
            else make_report(args.dir, args.metric or "accuracy")
        )
    except ValueError as exc:
        raise RalifInputError(f"{args.dir}: {exc}") from None
    if suite:
        print(f"plots:  {', '.join(str(p) for p in out['plots'])}")
    else:
        print(f"plot:   {out['plot']}")
        for note in out["curves"].left_out:
            print(f"ralif: note: {note}", file=sys.stderr)
    print(f"report: {out['report']}")
    if not args.quiet:
        print()
        print(out["summary" if suite else "aubc_table"])
    return 0
