"""Declarative checks of estimator hyper-parameters.

An estimator lists, in ``_parameter_constraints``, one check per constructor argument;
:func:`validate_params` runs them all before any work, so that a bad value is named
before a head is fitted or a pool is read. A check is a :class:`Constraint`: it says
what it accepts (``describe``) and whether a value is accepted (``accepts``).
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast, overload

import numpy as np

from ralif._validation import RalifInputError


class Constraint:
    """What one parameter accepts."""

    def accepts(self, value: object) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Real(Constraint):
    """A real number in ``[low, high]`` (``(low, high]`` with ``low_open``); ``inf``
    also admits positive infinity."""

    low: float
    high: float = np.inf
    low_open: bool = False
    inf: bool = False

    def accepts(self, value: object) -> bool:
        if not isinstance(value, numbers.Real) or _is_bool(value):
            return False
        v = float(value)
        if v == np.inf:
            return self.inf
        return bool(np.isfinite(v) and (v > self.low if self.low_open else v >= self.low)) and (
            v <= self.high
        )

    def describe(self) -> str:
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}]"


@dataclass(frozen=True)
class Integer(Constraint):
    """An integer in ``[low, high]`` (bool refused)."""

    low: int
    high: float = np.inf

    def accepts(self, value: object) -> bool:
        return (
            isinstance(value, numbers.Integral)
            and not _is_bool(value)
            and self.low <= int(value) <= self.high
        )

    def describe(self) -> str:
        if self.low == 1 and self.high == np.inf:
            return "a positive integer"
        return f"an integer in [{self.low}, {self.high}]"


class Options(Constraint):
    """One of a few values; booleans match booleans only (``1`` is not ``True``)."""

    def __init__(self, *choices: object) -> None:
        self.choices = choices

    def accepts(self, value: object) -> bool:
        for c in self.choices:
            if c is None or _is_bool(c):
                if value is c or (_is_bool(value) and c is not None and bool(value) == c):
                    return True
            elif isinstance(value, str) and value == c:
                return True
        return False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


class Either(Constraint):
    """Any of several constraints."""

    def __init__(self, *constraints: Constraint) -> None:
        self.constraints = constraints

    def accepts(self, value: object) -> bool:
        return any(c.accepts(value) for c in self.constraints)

    def describe(self) -> str:
        return " or ".join(c.describe() for c in self.constraints)


class Anything(Constraint):
    """No constraint here: the object is checked where it is used (a model, a callable)."""

    def accepts(self, value: object) -> bool:
        return True

    def describe(self) -> str:
        return "anything"


class CallableOrNone(Constraint):
    def accepts(self, value: object) -> bool:
        return value is None or callable(value)

    def describe(self) -> str:
        return "a callable or None"


class RandomState(Constraint):
    """What :func:`~ralif._validation.check_random_state` accepts."""

    def accepts(self, value: object) -> bool:
        kinds = (
            numbers.Integral,
            np.random.Generator,
            np.random.RandomState,
            np.random.SeedSequence,
        )
        return value is None or (isinstance(value, kinds) and not _is_bool(value))

    def describe(self) -> str:
        return "None, an int or a Generator"


class _Ridge(Either):
    def describe(self) -> str:
        return "a non-negative number or 'auto'"


L2 = _Ridge(Options("auto"), Real(0.0))
"""A ridge strength: a non-negative number, or ``"auto"`` (cross-validated)."""

BOOLEAN = Options(True, False)

POSITIVE_INT = Integer(1)

CANDIDATE_SIZE = Either(POSITIVE_INT, Real(0.0, 1.0, low_open=True))
"""A candidate-set size as ``max_samples`` reads it: a count, or a share of the pool."""


def check_param(value: object, name: str, constraint: Constraint) -> None:
    """Raise :class:`RalifInputError` naming ``name`` and ``value`` unless accepted."""
    if not constraint.accepts(value):
        raise RalifInputError(f"{name} must be {constraint.describe()}, got {value!r}")


class Constrained(Protocol):
    """An estimator whose class lists a :class:`Constraint` per parameter."""

    _parameter_constraints: ClassVar[dict[str, Constraint]]


_F = TypeVar("_F", bound=Callable[..., Any])


@overload
def validate_params(estimator: dict[str, Constraint]) -> Callable[[_F], _F]: ...


@overload
def validate_params(estimator: Constrained) -> None: ...


def validate_params(estimator: dict[str, Constraint] | Constrained) -> Callable[[_F], _F] | None:
    """Run the estimator's ``_parameter_constraints`` on its current parameters; or,
    given a dict of constraints, a decorator that checks a function's arguments.

    Parameters
    ----------
    estimator : object or dict
        An estimator with ``_parameter_constraints``, checked now; or a dict from
        parameter names of a function to their :class:`Constraint`, checked at every
        call of the function it decorates (defaults included), before its body runs.

    Returns
    -------
    None or callable
        The decorator, given a dict.

    Raises
    ------
    RalifInputError
        Naming the estimator (for an estimator), the parameter and the bad value.

    Examples
    --------
    >>> @validate_params({"n": POSITIVE_INT})
    ... def twice(n):
    ...     return 2 * n
    >>> twice(3)
    6
    >>> twice(0)
    Traceback (most recent call last):
    ralif._validation.RalifInputError: n must be a positive integer, got 0
    """
    if isinstance(estimator, dict):
        return _checking_arguments(estimator)
    cls = type(estimator)
    for name, constraint in cls._parameter_constraints.items():
        if not hasattr(estimator, name):  # a subclass whose constructor drops it
            continue
        try:
            check_param(getattr(estimator, name), name, constraint)
        except RalifInputError as exc:
            raise RalifInputError(f"{cls.__name__}: {exc}") from None
    # Parameters that are each valid may still contradict one another.
    combination = getattr(estimator, "_check_param_combination", None)
    if combination is not None:
        combination()
    return None


def _checking_arguments(constraints: dict[str, Constraint]) -> Callable[[_F], _F]:
    """A decorator checking the arguments named in ``constraints`` at every call."""

    def decorate(fn: _F) -> _F:
        signature = inspect.signature(fn)
        unknown = set(constraints) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{fn.__qualname__} has no parameters {', '.join(sorted(unknown))}")

        @functools.wraps(fn)
        def checked(*args: object, **kwargs: object) -> object:
            given = signature.bind(*args, **kwargs).arguments
            for name, constraint in constraints.items():
                check_param(given.get(name, signature.parameters[name].default), name, constraint)
            return fn(*args, **kwargs)

        cast(Any, checked)._parameter_constraints = constraints  # what --help and docs can read
        return cast(_F, checked)

    return decorate
