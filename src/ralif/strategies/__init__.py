"""Query strategies, all sharing :class:`~ralif.strategies.base.Strategy`'s interface."""

from __future__ import annotations

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
)

STRATEGIES: dict[str, tuple[type[Strategy], dict[str, object]]] = {
    cls.name: (cls, {}) for cls in _CLASSES
}
"""Every strategy name: its class and the parameters that name presets."""

# RALIF variants, each one measured change from the default.
STRATEGIES.update(
    {
        "ralif_authors": (RALIF, {"score": "authors"}),
        "ralif_nodiv": (RALIF, {"diversity": False}),
        "ralif_argmax": (RALIF, {"tau": float("inf")}),
        "ralif_damped": (RALIF, {"damping": 0.25}),
        "ralif_influence": (RALIF, {"candidates": "influence"}),
        # Knobs studied on the benchmark suite's tune half.
        "ralif_entropy_target": (RALIF, {"target": "entropy"}),
        "ralif_balanced": (RALIF, {"balanced_target": True}),
        "ralif_cluster": (RALIF, {"diversity": "cluster"}),
        "ralif_m2": (RALIF, {"candidate_multiple": 2.0}),
        "ralif_m1_nodiv": (RALIF, {"candidate_multiple": 1.0, "diversity": "none"}),
        "ralif_ridge10": (RALIF, {"l2_scale": 10.0}),
        "ralif_m2_cluster": (RALIF, {"candidate_multiple": 2.0, "diversity": "cluster"}),
        "ralif_m4": (RALIF, {"candidate_multiple": 4.0}),
    }
)


def make_strategy(name: str, random_state: object = None, **params: object) -> Strategy:
    """Build the strategy registered under ``name``; ``params`` override its presets.

    Raises
    ------
    RalifInputError
        For an unknown name or a parameter the strategy does not take.
    """
    if name not in STRATEGIES:
        raise RalifInputError(
            f"unknown strategy {name!r}; choose from {', '.join(sorted(STRATEGIES))}"
        )
    cls, preset = STRATEGIES[name]
    try:
        return cls(random_state=random_state, **{**preset, **params})
    except TypeError as exc:
        raise RalifInputError(f"strategy {name!r}: {exc}") from None


__all__ = [
    "BADGE",
    "BALD",
    "ISAL",
    "RALIF",
    "STRATEGIES",
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
    "Strategy",
    "TypiClust",
    "make_strategy",
]
