"""The ``ralif`` command line: select, demo, bench, report, embed-text, extract, session, serve.

Each subcommand is a module of this package with ``add_parser(subparsers)``, which adds its
parser, and ``run(args) -> int``, which runs it; :func:`make_parser` assembles the parser from
them and :func:`main` runs the command line.

Exit codes: 0 on success, 2 on bad input (one line on stderr naming the problem).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence

from ralif import __version__
from ralif.cli import bench, demo, embed_text, extract, report, select, serve, session
from ralif.cli._common import (
    DEFAULT_DB,
    DEFAULT_DB_NAME,
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    SESSION_ENV,
    run_guarded,
    warning_line,
)

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_DB_NAME",
    "EXIT_BAD_INPUT",
    "EXIT_BROKEN_PIPE",
    "SESSION_ENV",
    "main",
    "make_parser",
]

COMMANDS = {m.NAME: m for m in (select, demo, bench, embed_text, extract, session, serve, report)}
"""The subcommand modules by command name, in the order ``ralif --help`` lists them."""


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ralif`` command, assembled from the subcommand modules.

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``args.command`` names the subcommand given.
    """
    parser = argparse.ArgumentParser(
        prog="ralif",
        description="Deep active learning with influence functions: which items should a person label next?",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success, :data:`EXIT_BAD_INPUT` on bad input, :data:`EXIT_BROKEN_PIPE` when the
        reader of standard output went away.
    """
    args = make_parser().parse_args(argv)
    warnings.showwarning = warning_line
    return run_guarded(COMMANDS[args.command].run, args)
