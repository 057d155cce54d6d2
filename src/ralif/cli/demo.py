"""``ralif demo``: a demonstration selection on scikit-learn's digits."""

from __future__ import annotations

import argparse

from ralif.cli._common import add_ralif_options, strategy_params

NAME = "demo"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``demo``.
    """
    demo = subparsers.add_parser(
        NAME,
        help="a demonstration selection on scikit-learn's digits",
        description="Label a few digits, let RALIF choose the next ones, and show why.",
    )
    demo.add_argument(
        "--labeled", type=int, default=30, help="initially labeled items (default 30)"
    )
    demo.add_argument("--budget", type=int, default=10, help="items to pick (default 10)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_ralif_options(demo)
    return demo


def run(args: argparse.Namespace) -> int:
    """Run ``ralif demo``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    from ralif.demo import run_demo

    run_demo(n_labeled=args.labeled, budget=args.budget, seed=args.seed, **strategy_params(args))
    return 0
