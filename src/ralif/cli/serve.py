"""``ralif serve``: a local web page for labeling the current batch of a session."""

from __future__ import annotations

import argparse

from ralif.cli._common import db_parent, port_arg

NAME = "serve"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``serve``.
    """
    serve = subparsers.add_parser(
        NAME, help="a local web page for labeling the current batch", parents=[db_parent()]
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=port_arg, default=8765, help="0..65535, 0 for any free port (default 8765)"
    )
    return serve


def run(args: argparse.Namespace) -> int:
    """Run ``ralif serve`` until it is stopped.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    from ralif.session.server import serve

    serve(args.db, host=args.host, port=args.port)
    return 0
