"""Query strategies, all sharing :class:`~ralif.strategies.base.Strategy`'s interface."""

from __future__ import annotations

from ralif._validation import RalifInputError
from ralif.strategies.base import Strategy
from ralif.strategies.ralif import RALIF, DiversityFallbackWarning

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (RALIF,)}


def make_strategy(name: str, random_state: object = None, **params: object) -> Strategy:
    """Build the strategy registered under ``name`` with ``params``.

    Raises
    ------
    RalifInputError
        For an unknown name or a parameter the strategy does not take.
    """
    if name not in STRATEGIES:
        raise RalifInputError(
            f"unknown strategy {name!r}; choose from {', '.join(sorted(STRATEGIES))}"
        )
    cls = STRATEGIES[name]
    try:
        return cls(random_state=random_state, **params)
    except TypeError as exc:
        raise RalifInputError(f"strategy {name!r}: {exc}") from None


__all__ = ["RALIF", "STRATEGIES", "DiversityFallbackWarning", "Strategy", "make_strategy"]
