"""Objects named ``module:attribute`` on the command line (a strategy, an encoder)."""

from __future__ import annotations

import importlib
import os
import sys

from ralif._validation import RalifInputError


def import_object(spec: str, what: str) -> object:
    """The object ``"module:attr"`` (or ``"module:attr.inner"``) names, imported.

    A module in the current folder is found as ``python -m`` finds it: the current folder
    joins the import path, after everything already on it (an installed package is
    never shadowed by a file of the same name here).

    Parameters
    ----------
    spec : str
        ``module:attribute``.
    what : str
        What is imported, for messages ("strategy", "encoder").

    Returns
    -------
    object

    Raises
    ------
    RalifInputError
        In one line, whatever importing the module does: not found, an exception, or
        a call of ``sys.exit`` in its code; or when the attribute is missing.

    Examples
    --------
    >>> import_object("ralif.strategies:RALIF", "strategy").__name__
    'RALIF'
    """
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise RalifInputError(f"{what} {spec!r} must be written module:attribute")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RalifInputError(
            f"{what} {spec!r}: cannot import {module_name}: {exc} (looked in the installed "
            f"packages and in the current folder {here})"
        ) from None
    except SystemExit as exc:
        raise RalifInputError(
            f"{what} {spec!r}: importing {module_name} called sys.exit({exc.code!r})"
        ) from None
    except Exception as exc:  # an import runs the module's code: anything may fail
        raise RalifInputError(f"{what} {spec!r}: cannot import {module_name}: {exc}") from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise RalifInputError(f"{what} {spec!r}: {module_name} has no attribute {attr}") from None
    return obj
