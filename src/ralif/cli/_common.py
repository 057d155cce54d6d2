"""What the ``ralif`` subcommands share: exit codes, argument types, option groups, the
strategy option rule and the handling of errors.

Exit codes: 0 on success, 2 on bad input (one line on stderr naming the problem).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from ralif._validation import RalifInputError
from ralif.strategies import STRATEGIES, strategy_class

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool ended by SIGPIPE
SESSION_ENV = "RALIF_SESSION"
DEFAULT_DB_NAME = "ralif-session.db"
DEFAULT_DB = os.environ.get(SESSION_ENV, DEFAULT_DB_NAME)


def l2_arg(text: str) -> float | str:
    """Parse ``--l2``: a non-negative number or ``"auto"``.

    Parameters
    ----------
    text : str
        The option's value as given.

    Returns
    -------
    float or str
        The ridge strength, or ``"auto"``.

    Raises
    ------
    argparse.ArgumentTypeError
        When the value is neither ``"auto"`` nor a non-negative number.
    """
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto', got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be non-negative, got {text!r}")
    return value


def count_or_share_arg(text: str) -> int | float:
    """Parse a size as ``max_samples`` reads it: ``"50"`` a count, ``"0.1"`` a share.

    Parameters
    ----------
    text : str
        The option's value as given.

    Returns
    -------
    int or float
        An int for an integer literal, else a float (checked by the strategy).

    Raises
    ------
    argparse.ArgumentTypeError
        When the value is not a number.
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a count or a share, got {text!r}") from None


def port_arg(text: str) -> int:
    """Parse a TCP port number, 0 to 65535 (0: any free port).

    Parameters
    ----------
    text : str
        The option's value as given.

    Returns
    -------
    int
        The port number.

    Raises
    ------
    argparse.ArgumentTypeError
        When the value is not an integer from 0 to 65535.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return value


STRATEGY_HELP = (
    f"query strategy: {', '.join(sorted(STRATEGIES))}, or module:Class for one of your own "
    "(default: ralif)"
)
"""The help text of ``--strategy`` (select and session next)."""


RALIF_OPTION_HELP = {
    "l2": "ridge strength of the head, a number or 'auto' (cross-validated)",
    "tau": "truncation of the expected score: keep labels with p > tau/C",
    "n_candidates": "candidates competing in the diversity step: a count (50) or a share of "
    "the pool (0.1); twice the budget when not given",
    "score": "scoring rule",
    "target": "target set of the loss",
    "damping": "damping added to the Hessian",
    "candidates": "candidate rule (influence+margin: the most uncertain items compete on influence)",
    "diversity": "how the batch is drawn from the candidates",
    "weighting": "weight of each pool item in the target loss",
}
"""The RALIF parameters the command line sets, with what each means; the choices and
defaults shown come from :class:`~ralif.RALIF` itself."""

STRATEGY_OPTIONS = tuple(RALIF_OPTION_HELP)
"""Strategy parameters the command line sets (``--n-candidates`` for ``n_candidates``)."""


def _option_choices(name: str) -> tuple[str, ...] | None:
    """The string choices of a RALIF parameter, from its constraint table; None when it
    also takes open values (a number), as ``l2`` takes ``"auto"`` or a ridge."""
    from ralif._params import Either, Options
    from ralif.strategies import RALIF

    constraint = RALIF._parameter_constraints[name]
    parts = constraint.constraints if isinstance(constraint, Either) else (constraint,)
    options = [part for part in parts if isinstance(part, Options)]
    if len(options) != len(parts):
        return None
    return tuple(c for part in options for c in part.choices if isinstance(c, str)) or None


def add_ralif_options(p: argparse.ArgumentParser) -> None:
    """Add the group "RALIF options" (``--l2``, ``--tau``, ...) to a parser.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The parser of a command that runs a strategy.
    """
    from ralif.strategies import RALIF

    defaults = {k: v.default for k, v in inspect.signature(RALIF).parameters.items()}
    g = p.add_argument_group("RALIF options")
    parse: dict[str, Callable[[str], Any]] = {"l2": l2_arg, "n_candidates": count_or_share_arg}
    for name, text in RALIF_OPTION_HELP.items():
        choices = _option_choices(name)
        kind = parse.get(name) or (None if choices else float)
        g.add_argument(
            "--" + name.replace("_", "-"),
            # typeshed's add_argument leaves out type=None, argparse's own default.
            type=kind,  # type: ignore[arg-type]
            choices=choices,
            default=None,
            help=f"{text} (default: {defaults[name]})",
        )


def db_parent() -> argparse.ArgumentParser:
    """A parent parser with ``--db``, the session database (session commands and serve).

    Returns
    -------
    argparse.ArgumentParser
        A parser without help, to give as ``parents=[...]``.
    """
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"session database (default ${SESSION_ENV} or {DEFAULT_DB_NAME})",
    )
    return db


def strategy_params(args: argparse.Namespace, strategy: str = "ralif") -> dict[str, object]:
    """The strategy options given, refused when the strategy does not take them.

    The same rule for every command: an option applies to the strategies that have that
    parameter (``--l2`` to every model-based one, ``--tau`` to RALIF's), never silently
    dropped.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.
    strategy : str, default "ralif"
        The strategy the options go to: a name or ``module:Class``.

    Returns
    -------
    dict
        The given options by parameter name, ready as keyword arguments.

    Raises
    ------
    RalifInputError
        When an option given does not apply to the strategy.
    """
    given = {k: getattr(args, k) for k in STRATEGY_OPTIONS if getattr(args, k, None) is not None}
    takes = set(inspect.signature(strategy_class(strategy)[0]).parameters)
    foreign = sorted(set(given) - takes)
    if foreign:
        shown = ", ".join("--" + k.replace("_", "-") for k in foreign)
        verb = "does" if len(foreign) == 1 else "do"
        raise RalifInputError(f"{shown} {verb} not apply to strategy {strategy}")
    return given


def warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Show a warning as one line on standard error (a ``warnings.showwarning``)."""
    print(f"ralif: warning: {message}", file=sys.stderr)


def run_guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command, turning bad input and a closed pipe into exit codes.

    Parameters
    ----------
    run : callable
        The command's ``run(args) -> int``.
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The command's exit code; :data:`EXIT_BAD_INPUT` after one line on standard error
        for bad input or a numerical failure; :data:`EXIT_BROKEN_PIPE` when the reader of
        standard output went away.
    """
    try:
        code = run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except RalifInputError as exc:
        print(f"ralif: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except np.linalg.LinAlgError as exc:
        print(
            f"ralif: error: the computation failed numerically ({exc}); features on very "
            "different scales cause this: standardize them, or give a larger --l2",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`ralif ... | head`): stop quietly, as Unix tools do. Standard
        # output is pointed at /dev/null so that Python's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
