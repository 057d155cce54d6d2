"""Query strategies, all sharing :class:`~ralif.strategies.base.Strategy`'s interface.

:data:`STRATEGIES` is a convenience, names for ralif's own strategies and presets; a
strategy from elsewhere needs no entry in it: pass the object itself, or name its class
as ``"module:Class"`` (see :func:`make_strategy`).
"""

from __future__ import annotations

from sklearn.base import clone

from ralif._imports import import_object
from ralif._validation import RalifInputError
from ralif.strategies.base import Strategy
from ralif.strategies.baselines import (
    BADGE,
    BALD,
    ISAL,
    ClusterMargin,
    CoreSet,
    Entropy,
    LeastConfidence,
    Margin,
    MarginKMeans,
    Random,
    RandomFallbackWarning,
    TypiClust,
)
from ralif.strategies.composite import ALBL, BudgetSwitch, RandomShare, SubSample
from ralif.strategies.network import MCDropoutBALD, MCDropoutEntropy
from ralif.strategies.ralif import RALIF, DiversityFallbackWarning

_CLASSES: tuple[type[Strategy], ...] = (
    RALIF,
    Random,
    Entropy,
    Margin,
    LeastConfidence,
    BALD,
    CoreSet,
    BADGE,
    ISAL,
    TypiClust,
    MCDropoutBALD,
    MCDropoutEntropy,
    MarginKMeans,
    ClusterMargin,
    RandomShare,
    BudgetSwitch,
    SubSample,
    ALBL,
)

STRATEGIES: dict[str, tuple[type[Strategy], dict[str, object]]] = {
    cls.name: (cls, {}) for cls in _CLASSES
}
"""Every strategy name: its class and the parameters that name presets."""

# The paper's method: the best tenth of the whole pool by the truncated expectation.
# Other configurations are named where they are studied (benchmarks/), as
# ``NAME=BASE:JSON`` (see :func:`strategy_class`).
STRATEGIES["ralif_influence"] = (RALIF, {"candidates": "influence", "n_candidates": 0.1})


def parse_spec(spec: str) -> tuple[str, str, dict[str, object]]:
    """Split a strategy spec into ``(label, base, params)``.

    A spec is ``BASE``, ``BASE:JSON`` or ``NAME=BASE[:JSON]``: ``BASE`` a name of
    :data:`STRATEGIES` or ``module:Class``, ``JSON`` an object of constructor
    parameters, ``NAME`` what a benchmark calls it (its label; by default the spec).

    Parameters
    ----------
    spec : str
        The spec.

    Returns
    -------
    label : str
        What a benchmark stores the strategy under.
    base : str
        The strategy's name or ``module:Class``.
    params : dict
        The constructor parameters the spec gives.

    Examples
    --------
    >>> parse_spec('tenth=ralif:{"n_candidates": 0.1}')
    ('tenth', 'ralif', {'n_candidates': 0.1})
    >>> parse_spec("my_module:Smallest")
    ('my_module:Smallest', 'my_module:Smallest', {})
    """
    import json

    spec = str(spec).strip()
    head, brace, tail = spec.partition("{")
    name, eq, base = head.partition("=")
    label, base = (name.strip(), base) if eq else (spec, head)
    params: dict[str, object] = {}
    if brace:
        if not base.endswith(":"):
            raise RalifInputError(f"strategy {spec!r}: write parameters as BASE:{{...}}")
        base = base[:-1]
        try:
            params = json.loads(brace + tail)
        except ValueError as exc:
            raise RalifInputError(
                f"strategy {spec!r}: its parameters are not JSON ({exc})"
            ) from None
        if not isinstance(params, dict):
            raise RalifInputError(f"strategy {spec!r}: its parameters must be a JSON object")
    if not label or not base.strip():
        raise RalifInputError(f"strategy {spec!r}: empty name or strategy")
    return label, base.strip(), params


def split_specs(text: str) -> tuple[str, ...]:
    """Split comma-separated strategy specs; a comma inside ``{...}`` does not separate.

    A spec's JSON parameters hold commas of their own (:func:`parse_spec`).

    Parameters
    ----------
    text : str
        Specs separated by commas, as ``--strategies`` takes them.

    Returns
    -------
    tuple of str
        The specs, stripped, empty ones left out.

    Examples
    --------
    >>> split_specs('random, tenth=ralif:{"n_candidates": 0.1, "tau": 2}')
    ('random', 'tenth=ralif:{"n_candidates": 0.1, "tau": 2}')
    """
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return tuple(s.strip() for s in out if s.strip())


def strategy_class(spec: str) -> tuple[type[Strategy], dict[str, object]]:
    """The class and preset parameters a strategy spec stands for.

    ``spec`` is a name of :data:`STRATEGIES`, or ``"module:Class"`` naming a
    :class:`Strategy` subclass importable from here (no preset), either one optionally
    followed by ``:JSON`` parameters and preceded by ``NAME=`` (:func:`parse_spec`).
    A name may end in ``#K`` (``"random#2"``): the same strategy under another name, so
    that a benchmark seeds its draws from another stream (:func:`ralif.loop.round_seed`)
    and measures the strategy against itself, the noise floor of a comparison.

    Parameters
    ----------
    spec : str
        The strategy spec.

    Returns
    -------
    cls : type
        The :class:`Strategy` subclass.
    params : dict
        The parameters the name presets and the spec gives, the spec's winning.

    Raises
    ------
    RalifInputError
        For an unknown name, a module or class that cannot be imported, or a class that
        is not a Strategy.

    Examples
    --------
    >>> cls, params = strategy_class('tenth=ralif:{"n_candidates": 0.1}')
    >>> cls.__name__, params
    ('RALIF', {'n_candidates': 0.1})
    """
    _, spec, params = parse_spec(spec)
    base, mark, stream = spec.rpartition("#")
    if mark and base and stream.isdigit():
        spec = base
    if spec in STRATEGIES:
        cls, preset = STRATEGIES[spec]
        return cls, {**preset, **params}
    _, sep, _ = spec.partition(":")
    if not sep:
        raise RalifInputError(
            f"unknown strategy {spec!r}; choose from {', '.join(sorted(STRATEGIES))}, "
            "or name your own as module:Class"
        )
    obj = import_object(spec, "strategy")
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise RalifInputError(
            f"strategy {spec!r} is {obj!r}, not a subclass of ralif.strategies.Strategy"
        )
    return obj, params


def make_strategy(name: str | Strategy, random_state: object = None, **params: object) -> Strategy:
    """Build the strategy ``name`` stands for; ``params`` override its presets.

    Parameters
    ----------
    name : str or Strategy
        A spec (a name of :data:`STRATEGIES`, ``"module:Class"``, with ``:JSON``
        parameters or a ``NAME=`` label: :func:`strategy_class`), or a strategy object
        (cloned, so the caller's object is left as it was).
    random_state : None, int or Generator
        Seed of the strategy's draws (set on a given object too, unless None).
    **params
        Constructor parameters.

    Returns
    -------
    Strategy
        A new strategy object.

    Raises
    ------
    RalifInputError
        For an unknown name or a parameter the strategy does not take.

    Examples
    --------
    >>> make_strategy("margin", random_state=0, l2=0.1)
    Margin(l2=0.1, random_state=0)
    """
    if isinstance(name, Strategy):
        strategy = clone(name)
        known = strategy.get_params(deep=False)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise RalifInputError(
                f"strategy {type(name).__name__} got unexpected keyword argument {unknown[0]!r}"
            )
        if random_state is not None and "random_state" in known:
            params["random_state"] = random_state
        return strategy.set_params(**params)
    if not isinstance(name, str):
        raise RalifInputError(
            f"strategy must be a name or a ralif Strategy object, got {type(name).__name__}"
        )
    cls, preset = strategy_class(name)
    try:
        return cls(random_state=random_state, **{**preset, **params})
    except TypeError as exc:
        raise RalifInputError(f"strategy {name!r}: {exc}") from None


__all__ = [
    "ALBL",
    "BADGE",
    "BALD",
    "ISAL",
    "RALIF",
    "STRATEGIES",
    "BudgetSwitch",
    "ClusterMargin",
    "CoreSet",
    "DiversityFallbackWarning",
    "Entropy",
    "LeastConfidence",
    "MCDropoutBALD",
    "MCDropoutEntropy",
    "Margin",
    "MarginKMeans",
    "Random",
    "RandomFallbackWarning",
    "RandomShare",
    "Strategy",
    "SubSample",
    "TypiClust",
    "make_strategy",
    "parse_spec",
    "split_specs",
    "strategy_class",
]
